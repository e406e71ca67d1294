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

The Debian part (``--deb PROGRAM``, default ``ffmpeg``: some 200
packages) times ``cpk fetch --deb PROGRAM`` into a fresh home and cache
(resolve, download every ``.deb``, unpack and patch), pushes the entries
once, and times ``cpk store pull`` of the same packages into a fresh home.

Times are medians of ``--runs`` runs. Needs network (PyPI, Debian's
archive), ``uv`` and ``docker-registry`` on PATH.

    python bench/remote.py [--runs 3] [--deb ffmpeg] [--skip-python] [--skip-debian]
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


def python_part(work: Path, env: dict[str, str], url: str, key: Path, runs: int) -> None:
    cpk = [sys.executable, "-m", "contentpkg"]
    uv = shutil.which("uv") or sys.exit("needs uv on PATH")
    proj = work / "proj"
    write_project(proj)
    seed = fresh(env, work, "seed")
    run([*cpk, "sync"], proj, seed)
    run([*cpk, "store", "push", url, "--lock", str(proj / "pylock.toml"), "--sign-key", str(key)],
        proj, seed)  # fmt: skip
    uv_proj = work / "uv-proj"
    write_project(uv_proj)
    uv_env = {**env, "UV_CACHE_DIR": str(work / "uv-cache"), "UV_PYTHON": sys.executable,
              "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}  # fmt: skip
    run([uv, "sync"], uv_proj, uv_env)  # warms uv's cache and writes uv.lock

    times: dict[str, list[float]] = {"registry": [], "index cold": [], "uv warm": []}
    for _ in range(runs):
        pulled = {**fresh(env, work, "pull"), "CPK_REMOTES": url}
        run([*cpk, "key", "trust", f"{key}.pub"], proj, pulled)
        times["registry"].append(run([*cpk, "sync", "--frozen"], proj, pulled, "registry"))
        cold = fresh(env, work, "cold")
        times["index cold"].append(run([*cpk, "sync", "--frozen"], proj, cold, "index cold"))
        shutil.rmtree(uv_proj / ".venv", ignore_errors=True)
        times["uv warm"].append(run([uv, "sync", "--frozen"], uv_proj, uv_env, "uv warm"))
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(CPU[k]) for k in times}
    print("14-dependency project into a fresh CPK_HOME (lock present):")
    print(f"  {'':<12} {'wall':>8} {'(min-max)':>14} {'cpu':>8}")
    for k, v in med.items():
        span = f"{min(times[k]):.2f}-{max(times[k]):.2f}"
        print(f"  {k:<12} {v:>7.2f}s {span:>14} {cpu[k]:>7.2f}s")
    print(f"  registry / index cold = {med['registry'] / med['index cold']:.2f}x (goal <= 0.3x)")
    print(f"  registry / uv warm    = {med['registry'] / med['uv warm']:.2f}x (goal <= 1x)")
    print(f"  cpu: registry / index cold = {cpu['registry'] / cpu['index cold']:.2f}x,"
          f" registry / uv warm = {cpu['registry'] / cpu['uv warm']:.2f}x")  # fmt: skip
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deb", default="ffmpeg", help="a program with a large closure")
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--skip-debian", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpk-bench-remote-") as tmp:
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
                python_part(work, env, url, key, args.runs)
            if not args.skip_debian:
                debian_part(work, env, url, key, args.runs, args.deb)
            print(f"medians of {args.runs} runs")
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
            for path in work.glob("*-home"):
                remove_tree(path)


if __name__ == "__main__":
    main()
