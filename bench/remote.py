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

The Debian part (``--debs PKG...``, default a small closure) downloads
``.deb``\\ s with ``apt-get download``, adds them with ``cpk store add``
(the "fetched from the archive" path: download plus unpack and patch),
pushes them, and times pulling the same entries into a fresh home.

Times are medians of ``--runs`` runs. Needs network (PyPI, Debian's
archive), ``uv`` and ``docker-registry`` on PATH.

    python bench/remote.py [--runs 3] [--debs jq libjq1 libonig5 ...]
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

DEFAULT_DEBS = [
    "jq", "libjq1", "libonig5", "curl", "libcurl4", "libnghttp2-14", "librtmp1", "libssh2-1",
    "libpsl5", "libbrotli1", "libldap-2.5-0", "libsasl2-2", "libsasl2-modules-db",
    "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1",
    "libcom-err2", "libzstd1", "zlib1g", "libidn2-0", "libunistring2", "libgnutls30",
    "libhogweed6", "libnettle8", "libgmp10", "libp11-kit0", "libffi8", "libtasn1-6",
]  # fmt: skip


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
    print(f"  {'':<12} {'wall':>8} {'cpu':>8}")
    for k, v in med.items():
        print(f"  {k:<12} {v:>7.2f}s {cpu[k]:>7.2f}s")
    print(f"  registry / index cold = {med['registry'] / med['index cold']:.2f}x (goal <= 0.3x)")
    print(f"  registry / uv warm    = {med['registry'] / med['uv warm']:.2f}x (goal <= 1x)")
    print(f"  cpu: registry / index cold = {cpu['registry'] / cpu['index cold']:.2f}x,"
          f" registry / uv warm = {cpu['registry'] / cpu['uv warm']:.2f}x")  # fmt: skip
    print(f"  (load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def debian_part(work: Path, env: dict[str, str], url: str, key: Path, runs: int,
                debs: list[str]) -> None:  # fmt: skip
    cpk = [sys.executable, "-m", "contentpkg"]
    times: dict[str, list[float]] = {"download": [], "store add": [], "pull": []}
    deb_dir = work / "debs"
    for n in range(runs):
        shutil.rmtree(deb_dir, ignore_errors=True)
        deb_dir.mkdir()
        times["download"].append(run(["apt-get", "download", "-qq", *debs], deb_dir, env))
        files = sorted(str(p) for p in deb_dir.glob("*.deb"))
        added = fresh(env, work, "debs")
        start = time.perf_counter()
        refused = []
        for path in files:
            try:
                run([*cpk, "store", "add", path], deb_dir, added)
            except subprocess.CalledProcessError as exc:
                refused.append(f"{Path(path).name}: {exc.stderr.strip()[:100]}")
        times["store add"].append(time.perf_counter() - start)
        for line in refused if n == 0 else []:
            print(f"  (not added: {line})")
        if n == 0:
            run([*cpk, "store", "push", url, "--all", "--sign-key", str(key)], deb_dir, added)
        pulled = fresh(env, work, "debpull")
        run([*cpk, "key", "trust", f"{key}.pub"], deb_dir, pulled)
        stored = os.listdir(work / "debs-home" / "store")
        names = sorted({e.split(",")[0] for e in stored if "," in e})
        times["pull"].append(run([*cpk, "store", "pull", url, *names], deb_dir, pulled))
    med = {k: statistics.median(v) for k, v in times.items()}
    archive = med["download"] + med["store add"]
    print(f"Debian set of {len(debs)} packages ({len(names)} entries) into a fresh CPK_HOME:")
    print(f"  archive (apt-get download {med['download']:.2f}s + cpk store add "
          f"{med['store add']:.2f}s) {archive:>7.2f}s")  # fmt: skip
    print(f"  registry pull  {med['pull']:>7.2f}s")
    print(f"  registry / archive = {med['pull'] / archive:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--debs", nargs="*", default=DEFAULT_DEBS)
    parser.add_argument("--debs-from", metavar="FILE", help="package names, one a line")
    parser.add_argument("--skip-python", action="store_true")
    args = parser.parse_args()
    if args.debs_from:
        args.debs = Path(args.debs_from).read_text().split()
    with tempfile.TemporaryDirectory(prefix="cpk-bench-remote-") as tmp:
        work = Path(tmp)
        proc, port = start_registry(work)
        try:
            env = {**os.environ, "CPK_REMOTES": ""}
            key = work / "bench.key"
            subprocess.run([sys.executable, "-m", "contentpkg", "key", "generate", str(key)],
                           check=True, stderr=subprocess.DEVNULL)  # fmt: skip
            url = f"oci://127.0.0.1:{port}/bench"
            if not args.skip_python:
                python_part(work, env, url, key, args.runs)
            if args.debs:
                debian_part(work, env, url, key, args.runs, args.debs)
            print(f"medians of {args.runs} runs")
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
            for path in work.glob("*-home"):
                remove_tree(path)


if __name__ == "__main__":
    main()
