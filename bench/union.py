"""Benchmark: unions (``cpk enter``) against a plain exec and ``bwrap``.

Rows, each a median over rounds interleaved in the same run, printed with
its ratio (the machines are noisy: read the ratios and differences):

* start-up of ``/bin/true`` in a union of 10 and of 300 entries (farm
  cached), measured from fork to exit: a plain exec, the union's namespace
  and mounts (``exec_in_union``), and ``bwrap`` overlaying the same farm
  and binding the same store; plus the whole ``cpk enter`` command, whose
  interpreter start-up is the larger part;
* 2,000 cold lookups of missing names under the union's ``/usr/share`` (a
  new mount each round) against the host's ``/usr/share`` and against a
  plain directory holding the same names as the union's (fresh names each
  round, so no negative dentry helps any side); with the floor no
  composition can beat: an overlay on ``/usr/share`` whose only layers are
  an EMPTY directory and the host's ``/usr/share`` (two layers, as the
  union has there, with nothing of the entries'); and for scale an overlay
  of ``/usr`` whose top layer has no ``share/`` (so ``/usr/share`` comes
  from one layer), and a new namespace with no overlay at all;
* importing every package of a project of 50 and of 200 small wheels (served
  by a static index on loopback), timed inside the command: ``cpk run``
  (a view of links) against ``cpk run --union`` (one overlaid site-packages:
  a merged lower of hard links into the store, cached).

    python bench/union.py [--rounds 21] [--skip-python | --python-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contentpkg.context import Context
from contentpkg.env.union.compose import STORE_MOUNT, compose
from contentpkg.env.union.launch import Union, exec_in_union
from contentpkg.env.union.namespace import mount_overlay, privileged, unshare_user_mount
from contentpkg.fs import remove_tree
from contentpkg.store.add import add_built
from contentpkg.store.layers import Store

LOOKUPS = 2000
LOOKUP_CODE = (
    "import os, sys, time\n"
    "tag, where = sys.argv[1], sys.argv[2]\n"
    "names = [f'{where}/cpk-bench-missing-{tag}-{i}' for i in range(" + str(LOOKUPS) + ")]\n"
    "t = time.perf_counter()\n"
    "for n in names:\n"
    "    try: os.stat(n)\n"
    "    except FileNotFoundError: pass\n"
    "print(time.perf_counter() - t)\n"
)


def make_entries(ctx: Context, count: int) -> list:
    store = Store.open(ctx=ctx)
    out = []
    for i in range(count):

        def populate(dest: Path, i: int = i) -> None:
            (dest / "bin").mkdir()
            tool = dest / "bin" / f"tool{i}"
            tool.write_text(f"#!/bin/sh\necho tool {i}\n")
            tool.chmod(0o755)
            share = dest / "share" / f"pkg{i}"
            share.mkdir(parents=True)
            for j in range(5):
                (share / f"data{j}.txt").write_text(f"{i} {j}\n")
            lib = dest / "lib" / "x86_64-linux-gnu" / f"pkg{i}"
            lib.mkdir(parents=True)
            (lib / "plugin.txt").write_text(str(i))

        result = add_built(store, f"pkg{i}", "1.0", "generic", populate,
                           extra={"unmodified": True})  # fmt: skip
        out.append(result.entry)
    return out


def timed_fork(target) -> float:
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            target()
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed with {status}")
    return elapsed


# Every start-up row is timed the same way, fork of this process to the
# child's exit, so their differences are the tools' own.
def plain_exec() -> None:
    os.execv("/bin/true", ["/bin/true"])


def union_exec(union: Union) -> None:
    exec_in_union(union, ["/bin/true"], dict(os.environ))


def bwrap_overlays() -> bool:
    """bwrap 0.9 added overlays; older ones can only bind."""
    run = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, check=False)
    return "--overlay-src" in run.stdout + run.stderr


def bwrap_argv(union: Union, store: Path, command: list[str], overlays: bool) -> list[str]:
    if not overlays:
        # The same store bound read-only (at its own path: bwrap would create
        # a missing mount point on the host); no overlay of /usr.
        return ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(store), str(store), *command]
    return [
        "bwrap", "--dev-bind", "/", "/",
        "--overlay-src", str(union.farm.lower("usr")), "--overlay-src", "/usr",
        "--ro-overlay", "/usr", "--ro-bind", str(store), STORE_MOUNT, *command,
    ]  # fmt: skip


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def spread(values: list[float]) -> str:
    """min-max in ms, to read beside the median on a noisy machine."""
    return f"{min(values) * 1000:.2f}-{max(values) * 1000:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--python-only", action="store_true")
    args = ap.parse_args()
    if args.python_only:
        work = Path(tempfile.mkdtemp(prefix="cpk-bench-union-"))
        try:
            python_rows(work, args.rounds)
        finally:
            remove_tree(work)
        return
    bwrap = shutil.which("bwrap")
    overlays = bool(bwrap) and bwrap_overlays()
    work = Path(tempfile.mkdtemp(prefix="cpk-bench-union-"))
    # Every side's files (store, farm, the plain directories) are under work.
    print(
        f"files under {work.parent} (uid {os.getuid()}, "
        f"{'privileged: kernel mounts, no user namespace' if privileged() else 'unprivileged'})"
    )
    try:
        ctx = Context.from_environ(
            {**os.environ, "CPK_HOME": str(work / "home"), "CPK_CACHE_DIR": str(work / "cache")}
        )
        entries = make_entries(ctx, 300)
        store_dir = ctx.store_dir
        env = dict(os.environ, CPK_HOME=str(work / "home"), CPK_CACHE_DIR=str(work / "cache"))
        print(f"start-up of /bin/true, medians of {args.rounds} rounds (ms)")
        if bwrap and not overlays:
            print("(this bwrap has no --overlay-src: it binds the store read-only, no overlay)")
        ns_argv = ["unshare", "-m" if privileged() else "-Urm", "/bin/true"]
        print(
            "(union: the namespace, mounts and exec of exec_in_union, farm cached; "
            f"unshare: util-linux's {' '.join(ns_argv[:2])}, a namespace and no mount, for "
            "scale; cpk enter: the whole command, beside python3 -I -S -c pass, its floor)"
        )
        print(f"{'entries':>8} {'plain':>8} {'union':>8} {'+ms':>6} {'unshare':>8} {'+ms':>6} "
              f"{'bwrap':>8} {'+ms':>6} {'cpk enter':>10} {'python':>7}")  # fmt: skip
        for n in (10, 300):
            farm = compose(ctx, entries[:n])
            union = Union(entries[:n], farm)
            specs = [e.dirname for e in entries[:n]]
            rows: dict[str, list[float]] = {
                "plain": [], "union": [], "unshare": [], "bwrap": [], "cli": [], "python": []
            }  # fmt: skip
            for _ in range(args.rounds):
                rows["plain"].append(timed_fork(plain_exec))
                rows["union"].append(timed_fork(lambda u=union: union_exec(u)))
                for key, argv in (
                    ("unshare", ns_argv if shutil.which("unshare") else None),
                    ("bwrap", bwrap_argv(union, store_dir, ["/bin/true"], overlays) if bwrap
                     else None),
                    ("cli", [sys.executable, "-m", "contentpkg", "enter", *specs, "--",
                             "/bin/true"]),
                    ("python", [sys.executable, "-I", "-S", "-c", "pass"]),
                ):  # fmt: skip
                    if argv is not None:
                        rows[key].append(timed_fork(lambda a=argv: os.execvpe(a[0], a, env)))
            p, u = median_ms(rows["plain"]), median_ms(rows["union"])
            s_, b = (median_ms(rows[k]) if rows[k] else float("nan") for k in ("unshare", "bwrap"))
            print(f"{n:>8} {p:>8.2f} {u:>8.2f} {u - p:>6.2f} {s_:>8.2f} {s_ - p:>6.2f} "
                  f"{b:>8.2f} {b - p:>6.2f} {median_ms(rows['cli']):>10.1f} "
                  f"{median_ms(rows['python']):>7.1f}")  # fmt: skip
            print(f"{'':>8} min-max: plain {spread(rows['plain'])}, union {spread(rows['union'])}, "
                  f"bwrap {spread(rows['bwrap']) if rows['bwrap'] else '-'}, "
                  f"cpk enter {spread(rows['cli'])}")  # fmt: skip

        union = Union(entries, compose(ctx, entries))
        # A plain directory holding the names the union's /usr/share shows
        # (the host's and the farm's): what a merged /usr/share would cost
        # without an overlay. A bigger directory costs more per miss by
        # itself (ext4 indexes a directory past one block), so this row
        # separates the overlay's cost from the cost of more names.
        same = work / "same-names" / "share"
        same.mkdir(parents=True)
        for name in {*os.listdir("/usr/share"), *os.listdir(union.farm.lower("usr") / "share")}:
            (same / name).mkdir()
        # The floor: the overlay alone, its top layer an empty directory.
        empty = work / "empty"
        empty.mkdir()
        times: dict[str, list[float]] = {
            "host": [], "same": [], "ns": [], "one": [], "floor": [], "union": [],
            "local": [], "union-local": [],
        }  # fmt: skip
        for r in range(args.rounds):
            tag = f"{os.getpid()}-{r}"
            for key, where in (("host", "/usr/share"), ("same", str(same)),
                               ("local", "/usr/local/bin")):  # fmt: skip
                run = subprocess.run([sys.executable, "-c", LOOKUP_CODE, f"{key}{tag}", where],
                                     capture_output=True, text=True, check=True)  # fmt: skip
                times[key].append(float(run.stdout))
            for key in ("ns", "one", "floor", "union"):
                times[key].append(lookups_inside(key, union, empty, f"{key}{tag}"))
            times["union-local"].append(
                lookups_inside("union", union, empty, f"l{tag}", "/usr/local/bin")
            )
        h, m, f_, i = (median_ms(times[k]) for k in ("host", "same", "floor", "union"))
        print(f"\n{LOOKUPS} cold lookups of missing names (ms, medians of {args.rounds}, min-max)")
        for key, label in (("host", "host /usr/share"),
                           ("same", "plain dir, the union's names"),
                           ("ns", "new namespace, no overlay"),
                           ("one", "overlay on /usr, share from /usr only"),
                           ("floor", "floor: overlay [EMPTY dir, /usr/share]"),
                           ("union", "union /usr/share (300 entries, one farm)")):  # fmt: skip
            v = times[key]
            print(f"  {label:42} {median_ms(v):7.2f}  ({spread(v)})")
        print(f"  ratio union/host {i / h:.2f}x   union/plain dir of the same names {i / m:.2f}x")
        print(f"  floor/host {f_ / h:.2f}x   floor/plain dir of the same names {f_ / m:.2f}x   "
              f"union/floor {i / f_:.2f}x")  # fmt: skip
        lh, lu = median_ms(times["local"]), median_ms(times["union-local"])
        print(f"  in /usr/local/bin, a directory the farm leaves to the host: host {lh:.2f} "
              f"({spread(times['local'])}), union {lu:.2f} ({spread(times['union-local'])}), "
              f"{lu / lh:.2f}x")  # fmt: skip
        if not args.skip_python:
            python_rows(work, args.rounds)
    finally:
        remove_tree(work)


def lookups_inside(
    kind: str, union: Union, empty: Path, tag: str, where: str = "/usr/share"
) -> float:
    """LOOKUP_CODE's time in a fresh namespace: no overlay, the floor, or the union."""
    read, write = os.pipe()
    argv = [sys.executable, "-c", LOOKUP_CODE, tag, where]

    def child() -> None:
        os.dup2(write, 1)
        if kind == "union":
            exec_in_union(union, argv, dict(os.environ))
        unshare_user_mount()
        if kind == "one":  # the farm's place, but no share/ in its top layer
            mount_overlay("/usr", [str(empty), "/usr"])
        elif kind == "floor":  # two layers at the directory looked in, one empty
            mount_overlay("/usr/share", [str(empty), "/usr/share"])
        os.execv(argv[0], argv)

    timed_fork(child)
    os.close(write)
    with os.fdopen(read) as f:
        return float(f.read())


def write_wheel(dest: Path, name: str) -> None:
    """A minimal pure wheel holding one package (written here: bench needs no test code)."""
    import base64
    import hashlib
    import zipfile

    files = {
        f"{name}/__init__.py": f"VALUE = {name!r}\n".encode(),
        f"{name}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        ).encode(),
        f"{name}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{name}-1.0.dist-info/RECORD,,")
    files[f"{name}-1.0.dist-info/RECORD"] = ("\n".join(rows) + "\n").encode()
    with zipfile.ZipFile(dest / f"{name}-1.0-py3-none-any.whl", "w") as z:
        for path, data in files.items():
            z.writestr(path, data)


def static_index(root: Path, names: list[str]) -> None:
    """PEP 503 pages for the wheels in root/files, with their sha256, as static files."""
    import hashlib

    for name in names:
        page = root / "simple" / name
        page.mkdir(parents=True)
        whl = f"{name}-1.0-py3-none-any.whl"
        sha = hashlib.sha256((root / "files" / whl).read_bytes()).hexdigest()
        (page / "index.html").write_text(f'<a href="../../files/{whl}#sha256={sha}">{whl}</a>\n')


def python_rows(work: Path, rounds: int) -> None:
    import socket

    print(f"\nimporting every package, inside the command (ms, medians of {rounds})")
    print(f"{'packages':>9} {'view':>8} {'--union':>8} {'ratio':>6}")
    for count in (50, 200):
        base = work / f"py{count}"
        names = [f"pkg{count}x{i}" for i in range(count)]
        (base / "index" / "files").mkdir(parents=True)
        for n in names:
            write_wheel(base / "index" / "files", n)
        static_index(base / "index", names)
        proj = base / "proj"
        proj.mkdir()
        deps = ", ".join(f'"{n}"' for n in names)
        (proj / "pyproject.toml").write_text(
            f'[project]\nname = "proj"\nversion = "0"\ndependencies = [{deps}]\n'
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "--directory", str(base / "index")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            env = dict(os.environ, CPK_HOME=str(base / "home"), CPK_CACHE_DIR=str(base / "cache"),
                       CPK_INDEX_URL=f"http://127.0.0.1:{port}/simple")  # fmt: skip
            code = ("import time\nt = time.perf_counter()\n"
                    + "".join(f"import {n}\n" for n in names)
                    + "print(time.perf_counter() - t)\n")  # fmt: skip
            for _ in range(50):  # the server starts
                probe = subprocess.run([sys.executable, "-m", "contentpkg", "lock"], cwd=proj,
                                       env=env, capture_output=True)  # fmt: skip
                if probe.returncode == 0:
                    break
                time.sleep(0.1)
            times: dict[str, list[float]] = {"view": [], "union": []}
            for _ in range(rounds):
                for mode, extra in (("view", []), ("union", ["--union"])):
                    run = subprocess.run(
                        [sys.executable, "-m", "contentpkg", "run", *extra, "python", "-c", code],
                        cwd=proj, env=env, capture_output=True, text=True,
                    )  # fmt: skip
                    if run.returncode != 0:
                        raise SystemExit(f"cpk run {' '.join(extra)}: {run.stderr.strip()}")
                    times[mode].append(float(run.stdout.strip().splitlines()[-1]))
        finally:
            server.terminate()
            server.wait()
        v, u = median_ms(times["view"]), median_ms(times["union"])
        print(f"{count:>9} {v:>8.2f} {u:>8.2f} {u / v:>5.2f}x   "
              f"(view {spread(times['view'])}, --union {spread(times['union'])})")  # fmt: skip


if __name__ == "__main__":
    main()
