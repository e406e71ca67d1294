"""Benchmark: a fresh machine filled from a warm registry, against the index and uv.

The Python part takes ``bench/python_fetch.py``'s 14-dependency project,
locks and syncs it once, and pushes its entries (signed, with their
bytecode) to a local ``docker-registry``. Then, each in a fresh
``CPK_HOME`` and cache, with the lock file in place as a team's project has it:

* registry: ``cpk sync`` with the registry as a remote (pulls every entry);
* index cold: ``cpk sync`` from PyPI with empty caches (download, unpack,
  compile bytecode);
* uv warm: ``uv sync`` from a warm uv cache into a fresh ``.venv``.

Goals: registry <= 0.3x the cold index and <= 1x uv's warm sync.

Beside them, in the same rounds and under the same parent directory, the
floor any puller into an empty home must pay: ``cp -a`` of the pulled
entries (already decompressed, in the page cache) into an empty directory,
and that plus ``sync -f`` (cpk makes a pull durable before reporting it);
``tar --zstd -x`` of the layers as the registry stores them (decompressing
too, but neither hashing nor checking anything); and ``python3 -I -S -c
pass``, the interpreter's own start; and, for a pull that would create
one file per entry instead of thousands, ``cp`` of the entries as squashfs
images (made once with ``mksquashfs``) plus ``sync -f``. uv's warm sync
sits below that floor because it hard-links files from its cache: a fresh
home has no such cache to link from.

The Debian part (``--deb PROGRAM``, default ``ffmpeg``: some 200
packages) times ``cpk fetch --deb PROGRAM`` into a fresh home and cache
(resolve, download every ``.deb``, unpack and patch), pushes the entries
once, and times ``cpk store pull`` of the same packages into a fresh home.

Every timed step starts after ``sync`` (no step pays for another's
writeback), each round in fresh directories, the order of the sides turned
every round; the registry process's own CPU is printed apart. Beside the
medians, each row's spread ((max - min) / median) shows which side drifts,
and the ratios are also taken round by round, against the other side
measured in the same round. Times are medians of ``--runs`` runs. Needs
network (PyPI, Debian's archive), ``uv`` and ``docker-registry`` on PATH
(and ``mksquashfs`` for the images row).

    python bench/remote.py [--runs 5] [--dir PARENT] [--deb ffmpeg] [--skip-python]
                           [--skip-debian] [--baseline-src OTHER/src]

``--dir`` chooses the parent of the work directory (default: the system's
temporary directory). File creation costs differ by directory on one disk
by 10x and more, so the parent is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from python_fetch import write_project

from contentpkg.fs import remove_tree


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = work / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    registry = shutil.which("docker-registry") or sys.exit("needs docker-registry on PATH")
    proc = subprocess.Popen([registry, "serve", str(config)], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    sys.exit("docker-registry did not start")


#: CPU seconds (user + system) of each measured command, by label: on a
#: shared machine wall times swing with the load, CPU time much less.
CPU: dict[str, list[float]] = {}


def run(cmd: list[str], cwd: Path, env: dict[str, str], label: str = "") -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise subprocess.CalledProcessError(done.returncode, cmd, stderr=done.stderr)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(label, []).append(used)
    return wall


def fresh(env: dict[str, str], work: Path, tag: str) -> dict[str, str]:
    for name in ("home", "cache"):
        path = work / f"{tag}-{name}"
        if path.exists():
            remove_tree(path)
    home, cache = work / f"{tag}-home", work / f"{tag}-cache"
    return {**env, "CPK_HOME": str(home), "CPK_CACHE_DIR": str(cache)}


def settle() -> None:
    """Write back what the previous step left dirty before the next is timed.

    Without it, a step can pay for its predecessor's writeback (the cold
    index and a pull each leave some 200 MB dirty), and which step pays
    depends on the order and on when the kernel's flusher wakes.
    """
    os.sync()


def server_cpu(pid: int) -> float:
    """CPU seconds the registry process has used (it is not our waited-for
    child, so getrusage does not count it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_images(store: Path, dest: Path) -> list[Path]:
    """Each entry of store as one squashfs image (as the union keeps them):
    what a pull that creates one file per entry, not one per file, would write."""
    tool = shutil.which("mksquashfs")
    if tool is None:
        return []
    dest.mkdir()
    images = []
    for entry in sorted(p for p in store.iterdir() if "," in p.name):
        out = dest / f"{entry.name}.squashfs"
        flags = ["-noappend", "-quiet", "-no-progress", "-all-root", "-no-xattrs"]
        subprocess.run([tool, str(entry), str(out), *flags], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        images.append(out)
    return images


def python_part(work: Path, env: dict[str, str], url: str, key: Path, runs: int,
                server: int, baseline: str | None) -> None:  # fmt: skip
    cpk = [sys.executable, "-m", "contentpkg"]
    uv = shutil.which("uv") or sys.exit("needs uv on PATH")
    proj = work / "proj"
    write_project(proj)
    seed = fresh(env, work, "seed")
    run([*cpk, "sync"], proj, seed)
    run([*cpk, "store", "push", url, "--lock", str(proj / "pylock.toml"), "--sign-key", str(key)],
        proj, seed)  # fmt: skip
    images = make_images(Path(seed["CPK_HOME"]) / "store", work / "images")
    uv_proj = work / "uv-proj"
    write_project(uv_proj)
    uv_env = {**env, "UV_CACHE_DIR": str(work / "uv-cache"), "UV_PYTHON": sys.executable,
              "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}  # fmt: skip
    run([uv, "sync"], uv_proj, uv_env)  # warms uv's cache and writes uv.lock

    rows = ["registry", "registry base", "index cold", "uv warm", "floor cp -a", "floor cp+sync",
            "floor tar -x", "images cp+sync", "python -S"]  # fmt: skip
    layers = zstd_blobs(work / "registry")
    times: dict[str, list[float]] = {k: [] for k in rows}
    served: list[float] = []
    counts = ""

    seed_store = Path(seed["CPK_HOME"]) / "store"

    def registry_side(n: int) -> None:
        nonlocal counts
        pulled = {**fresh(env, work, f"r{n}-pull"), "CPK_REMOTES": url}
        run([*cpk, "key", "trust", f"{key}.pub"], proj, pulled)
        settle()
        before = server_cpu(server)
        times["registry"].append(run([*cpk, "sync", "--frozen"], proj, pulled, "registry"))
        served.append(server_cpu(server) - before)
        store = Path(pulled["CPK_HOME"]) / "store"
        entries = [p for p in store.iterdir() if "," in p.name]
        counts = f"{len(entries)} entries, {count_files(store)} files and directories"

    def copy_side(n: int) -> None:
        # The floor: the same entries (the seed's, bit-identical to a pull's),
        # already decompressed and in the page cache, copied into an empty
        # directory beside the others; then made durable, as cpk makes a
        # pull before it says it is done. A side of its own: in two runs with
        # the pulls' roles swapped, the pull right after it came out some 10%
        # dearer than the one before it.
        entries = sorted(str(p) for p in seed_store.iterdir() if "," in p.name)
        floor = work / f"r{n}-floor"
        floor.mkdir()
        settle()
        copy = run(["cp", "-a", *entries, str(floor)], work, env, "floor cp -a")
        times["floor cp -a"].append(copy)
        flush = run(["sync", "-f", str(floor)], work, env, "floor cp+sync")
        CPU["floor cp+sync"][-1] += CPU["floor cp -a"][-1]
        times["floor cp+sync"].append(copy + flush)

    def baseline_side(n: int) -> None:
        # Another checkout's cpk (--baseline-src), pulling in the same round:
        # a change measured against what it changed, under the same load.
        if baseline is None:
            return
        pulled = {**fresh(env, work, f"r{n}-base"), "CPK_REMOTES": url, "PYTHONPATH": baseline}
        run([*cpk, "key", "trust", f"{key}.pub"], proj, pulled)
        settle()
        times["registry base"].append(
            run([*cpk, "sync", "--frozen"], proj, pulled, "registry base")
        )

    def tar_side(n: int) -> None:
        # The layers as served, decompressed and unpacked by tar and zstd
        # (one shell for all, so not 44 starts of python's size).
        untar = work / f"r{n}-floor-tar"
        untar.mkdir()
        script = 'i=0; for f; do i=$((i+1)); mkdir "$i"; tar --zstd -xf "$f" -C "$i"; done'
        settle()
        times["floor tar -x"].append(
            run(["sh", "-c", script, "sh", *map(str, layers)], untar, env, "floor tar -x")
        )

    def images_side(n: int) -> None:
        # A pull that keeps each entry as one image file creates 44 files,
        # not thousands: their copy, made durable, is that pull's floor.
        if not images:
            return
        dest = work / f"r{n}-floor-images"
        dest.mkdir()
        settle()
        copy = run(["cp", *map(str, images), str(dest)], work, env, "images cp+sync")
        flush = run(["sync", "-f", str(dest)], work, env, "flush")
        CPU["images cp+sync"][-1] += CPU["flush"].pop()
        times["images cp+sync"].append(copy + flush)

    def uv_side(n: int) -> None:
        venv = {**uv_env, "UV_PROJECT_ENVIRONMENT": str(work / f"r{n}-uv-venv")}
        settle()
        times["uv warm"].append(run([uv, "sync", "--frozen"], uv_proj, venv, "uv warm"))
        times["python -S"].append(
            run([sys.executable, "-I", "-S", "-c", "pass"], work, env, "python -S")
        )

    def cold_side(n: int) -> None:
        cold = fresh(env, work, f"r{n}-cold")
        settle()
        times["index cold"].append(run([*cpk, "sync", "--frozen"], proj, cold, "index cold"))

    for n in range(runs):
        # The two pulls swap places every round: whichever runs second in a
        # pair was seen to pay more, so neither may always be second.
        pulls = [registry_side, baseline_side][:: 1 if n % 2 == 0 else -1]
        sides = [*pulls, copy_side, tar_side, images_side, uv_side, cold_side]
        # Every round writes into directories never used before, deleted only
        # at the end: measured here, creating files just after a tree of the
        # same size was deleted nearby cost 2-5x the system time (ext4
        # skipping recently freed inodes), which no fresh machine pays.
        # The order turns each round, so no side always follows the cold
        # index's writes or always runs first on a quiet disk.
        for side in sides[n % len(sides) :] + sides[: n % len(sides)]:
            side(n)
    rows = [k for k in rows if times[k]]
    med = {k: statistics.median(v) for k, v in times.items() if v}
    cpu = {k: statistics.median(CPU[k]) for k in rows}
    print(f"14-dependency project into a fresh CPK_HOME (lock present), under {work}:")
    print(f"  ({counts} pulled)")
    print(f"  {'':<15} {'wall':>8} {'(min-max)':>14} {'spread':>7} {'cpu':>8} {'(min-max)':>14}")
    for k in rows:
        span = f"{min(times[k]):.2f}-{max(times[k]):.2f}"
        cspan = f"{min(CPU[k]):.2f}-{max(CPU[k]):.2f}"
        spread = (max(times[k]) - min(times[k])) / med[k]
        print(f"  {k:<15} {med[k]:>7.2f}s {span:>14} {spread:>6.0%} {cpu[k]:>7.2f}s {cspan:>14}")
    print(f"  (the registry process itself used {statistics.median(served):.2f}s cpu per pull,"
          f" {min(served):.2f}-{max(served):.2f}, counted in no row)")  # fmt: skip
    size = sum(p.stat().st_size for p in layers) / 1e6
    print(f"  ({len(layers)} layers, {size:.0f} MB, for tar -x", end="")
    if images:
        print(f"; {len(images)} images, {sum(p.stat().st_size for p in images) / 1e6:.0f} MB)")
    else:
        print("; no mksquashfs: no images row)")
    for other, goal in (("index cold", " (goal <= 0.3x)"), ("uv warm", " (goal <= 1x)"),
                        ("floor cp -a", ""), ("floor cp+sync", ""),
                        ("floor tar -x", "")):  # fmt: skip
        print(f"  registry / {other:<13} = {med['registry'] / med[other]:5.2f}x wall,"
              f" {cpu['registry'] / cpu[other]:5.2f}x cpu{goal}")  # fmt: skip
    # Round by round, against the other side measured in the same round: what
    # the load and the disk did to both in that round cancels out.
    for other in ("registry base", "index cold", "uv warm", "floor cp -a", "floor cp+sync",
                  "floor tar -x"):  # fmt: skip
        if not times[other]:
            continue
        ratios = [a / b for a, b in zip(times["registry"], times[other], strict=True)]
        cpu_ratios = [a / b for a, b in zip(CPU["registry"], CPU[other], strict=True)]
        print(f"  per round, registry / {other:<13}: {statistics.median(ratios):5.2f}x wall"
              f" ({min(ratios):.2f}-{max(ratios):.2f}), {statistics.median(cpu_ratios):5.2f}x"
              f" cpu ({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})")  # fmt: skip
    print(f"  uv warm / floor cp -a  = {med['uv warm'] / med['floor cp -a']:5.2f}x wall"
          " (uv hard-links from its cache: it creates no file's data)")  # fmt: skip
    if images:
        print(f"  images cp+sync / uv warm = {med['images cp+sync'] / med['uv warm']:5.2f}x wall"
              " (a pull creating one file per entry, before any mount)")  # fmt: skip
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def zstd_blobs(storage: Path) -> list[Path]:
    """The zstd-compressed blobs in the registry's storage: the entries' layers."""
    found = []
    for path in sorted(storage.rglob("blobs/sha256/*/*/data")):
        with open(path, "rb") as f:
            if f.read(4) == b"\x28\xb5\x2f\xfd":
                found.append(path)
    return found


def count_files(root: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))


def debian_part(work: Path, env: dict[str, str], url: str, key: Path, runs: int,
                program: str) -> None:  # fmt: skip
    """program's closure fetched from the archive vs pulled from the registry."""
    cpk = [sys.executable, "-m", "contentpkg"]
    times: dict[str, list[float]] = {"archive": [], "registry": []}
    names: list[str] = []
    for n in range(runs):
        # From the archive: resolve, download every .deb, unpack and patch.
        fetched = fresh(env, work, "debs")
        times["archive"].append(run([*cpk, "fetch", "--deb", program], work, fetched, "archive"))
        if n == 0:
            run([*cpk, "store", "push", url, "--all", "--sign-key", str(key)], work, fetched)
            stored = os.listdir(work / "debs-home" / "store")
            names = sorted({e.split(",")[0] for e in stored if "," in e})
        # From the registry: the same entries, by name, into an empty home.
        pulled = fresh(env, work, "debpull")
        run([*cpk, "key", "trust", f"{key}.pub"], work, pulled)
        times["registry"].append(
            run([*cpk, "store", "pull", url, *names], work, pulled, "registry")
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(CPU[k]) for k in times}
    print(f"Debian: {program}'s closure, {len(names)} packages, into a fresh CPK_HOME:")
    for k, v in times.items():
        print(f"  {k:<9} {med[k]:>7.2f}s wall (min {min(v):.2f} max {max(v):.2f})"
              f" {cpu[k]:>6.2f}s cpu")  # fmt: skip
    print(f"  registry / archive = {med['registry'] / med['archive']:.2f}x wall,"
          f" {cpu['registry'] / cpu['archive']:.2f}x cpu")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deb", default="ffmpeg", help="a program with a large closure")
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--skip-debian", action="store_true")
    parser.add_argument("--dir", help="parent of the work directory (default: the system's)")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also pull with the cpk whose package is under DIR (a checkout's"
                        " src/), in the same rounds: a before/after under one load")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpk-bench-remote-", dir=args.dir) as tmp:
        work = Path(tmp)
        proc, port = start_registry(work)
        try:
            env = {**os.environ, "CPK_REMOTES": ""}
            # cpk as installed, with its own modules' bytecode written once,
            # not compiled afresh in every measured command.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            key = work / "bench.key"
            subprocess.run([sys.executable, "-m", "contentpkg", "key", "generate", str(key)],
                           check=True, stderr=subprocess.DEVNULL)  # fmt: skip
            url = f"oci://127.0.0.1:{port}/bench"
            if not args.skip_python:
                python_part(work, env, url, key, args.runs, proc.pid, args.baseline_src)
            if not args.skip_debian:
                debian_part(work, env, url, key, args.runs, args.deb)
            print(f"medians of {args.runs} runs")
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
            for path in [*work.glob("*-home"), *work.glob("r*-floor*"), *work.glob("images")]:
                remove_tree(path)


if __name__ == "__main__":
    main()
