"""Compare the loader emulation with the real loader on this machine's files.

    python3 tests/elf/system_compare.py [--limit N] [--jobs N] [DIRS...]

For every ELF program and shared library under DIRS (default: /usr/bin and
the multiarch library directory, /usr/lib/x86_64-linux-gnu here), ask
``contentpkg.elf.loader.resolve`` what ld.so maps, and ask ld.so itself:

- a program (an executable file with the system loader as its interpreter)
  is executed directly with LD_TRACE_LOADED_OBJECTS=1: the kernel starts
  the real file, so $ORIGIN is real, and the loader lists what it mapped and
  exits before the program's own code runs;
- anything else loadable is handed to the loader as ldd does,
  ``LD_TRACE_LOADED_OBJECTS=1 ld.so FILE``, which is right for libraries
  (their $ORIGIN is the path given). ``ld.so --list FILE`` is the same
  listing except that it stops at the first missing library, so it cannot
  show all of them.
- setuid, setgid and file-capability programs go through the loader too:
  for them the kernel asks for secure mode, in which the loader ignores
  LD_TRACE_LOADED_OBJECTS and would run the program.

Both answers are lists of (requested name, path) in the loader's order;
``linux-vdso.so.1`` is left out (no file). Static programs, files of another
architecture or interpreter, and files the loader refuses are skipped and
counted. Prints the counts and every disagreement with both answers; exits 1
when there is any.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    from contentpkg.elf import loader
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from contentpkg.elf import loader

from contentpkg.elf.reader import ET_DYN, ElfError, NotElf, read_elf

Listing = list[tuple[str, str | None]]

_LINE = re.compile(r"^\t(\S+)(?: => (?:(not found)|(\S+)))?(?: \(0x[0-9a-f]+\))?$")


@dataclass
class Disagreement:
    file: str
    how: str
    predicted: str
    real: str


@dataclass
class Summary:
    compared: int = 0
    executed: int = 0
    listed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    disagreements: list[Disagreement] = field(default_factory=list)


def default_dirs() -> list[str]:
    """/usr/bin and the multiarch library directory of this machine."""
    triplet = getattr(sys.implementation, "_multiarch", None)
    libdir = f"/usr/lib/{triplet}" if triplet else None
    if not libdir or not os.path.isdir(libdir):
        libdir = next(
            (d for d in loader.system_config().system_dirs if d.startswith("/usr/")), "/usr/lib"
        )
    return ["/usr/bin", libdir]


def walk(dirs: Iterable[str]) -> Iterator[str]:
    """Regular files under dirs (symlinks are other names of files seen here)."""
    seen: set[tuple[int, int]] = set()
    for top in dirs:
        if os.path.isfile(top):
            yield top
            continue
        for root, subdirs, files in os.walk(top):
            subdirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                yield path


def parse_listing(text: str) -> tuple[Listing, bool]:
    """The (name, path) lines of a loader listing, and whether it said "statically linked"."""
    out: Listing = []
    static = False
    for line in text.splitlines():
        if line.strip() == "statically linked":
            static = True
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name, missing, path = m.groups()
        if path is None and missing is None:
            if "/" not in name:
                continue  # the vDSO: no file behind it
            path = name
        out.append((name, None if missing else path))
    return out, static


def predicted_listing(report: loader.LoadReport) -> Listing:
    # ld.so stays unlisted when no DT_NEEDED names it.
    return [(o.name, o.path) for o in report.objects if o.requested_by is not None]


def classify(path: str, config: loader.LoaderConfig) -> str:
    """exec, list, or why the file is skipped."""
    try:
        info = read_elf(path)
    except NotElf:
        return "not ELF"
    except ElfError:
        return "malformed ELF"
    if (info.elf_class, info.machine) != (config.elf_class, config.machine):
        return "other architecture"
    if info.interpreter:
        if not _same_file(info.interpreter, config.interpreter):
            return "other interpreter"  # never executed: it might not honour the trace
        if os.access(path, os.X_OK) and not _secure_exec(path):
            return "exec"
        return "list"
    if info.type != ET_DYN:
        return "static executable"
    if info.flags_1 & 0x08000000 or not info.has_dynamic:
        return "static-pie or no dynamic section"
    return "list"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _secure_exec(path: str) -> bool:
    """Whether the kernel starts path in secure mode (AT_SECURE) for some user."""
    if os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID):
        return True
    try:
        os.getxattr(path, "security.capability")
    except OSError:
        return False
    return True


def real_listing(
    path: str, how: str, config: loader.LoaderConfig, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The real loader's listing of path (nothing else from this environment)."""
    env = {**extra, "LD_TRACE_LOADED_OBJECTS": "1"}
    cmd = [path] if how == "exec" else [config.interpreter, path]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def compare(
    dirs: Iterable[str],
    *,
    limit: int | None = None,
    jobs: int | None = None,
    env: dict[str, str] | None = None,
) -> Summary:
    """Compare every loadable file under dirs; env adds LD_LIBRARY_PATH/LD_PRELOAD."""
    env = env or {}
    config = loader.system_config()
    summary = Summary()
    todo: list[tuple[str, str]] = []
    for path in walk(dirs):
        how = classify(path, config)
        if how in ("exec", "list"):
            todo.append((path, how))
            if limit is not None and len(todo) >= limit:
                break
        else:
            summary.skipped[how] += 1
    probe = loader.Probe()
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        reals = pool.map(lambda item: real_listing(item[0], item[1], config, env), todo)
        for (path, how), real in zip(todo, reals, strict=True):
            _compare_one(path, how, real, probe, summary, env)
    return summary


def _compare_one(
    path: str,
    how: str,
    real: subprocess.CompletedProcess[str],
    probe: loader.Probe,
    summary: Summary,
    env: dict[str, str],
) -> None:
    listing, static = parse_listing(real.stdout)
    try:
        report: loader.LoadReport | None = loader.resolve(path, env, mode=how, probe=probe)  # type: ignore[arg-type]
        problem = None
    except loader.LoaderError as exc:
        report, problem = None, str(exc)
    refused = real.returncode != 0 and not listing and not static
    if refused:
        # The loader refuses the file: skipped, but our prediction must say so.
        summary.skipped["refused by the loader"] += 1
        if report is None:
            return  # we refuse it too (not loadable at all)
        if report.error is None:
            summary.disagreements.append(
                Disagreement(path, how, format_listing(predicted_listing(report)), real.stderr)
            )
        elif report.error.split(": ", 1)[0] not in real.stderr:
            # Both give up, but not on the same file.
            summary.disagreements.append(
                Disagreement(path, how, f"error: {report.error}", real.stderr)
            )
        return
    summary.compared += 1
    if how == "exec":
        summary.executed += 1
    else:
        summary.listed += 1
    if report is None:
        summary.disagreements.append(Disagreement(path, how, problem or "", real.stdout))
        return
    if report.error is not None:
        summary.disagreements.append(
            Disagreement(path, how, f"error: {report.error}", real.stdout + real.stderr)
        )
        return
    if static or report.static:
        if static != report.static:
            summary.disagreements.append(
                Disagreement(path, how, f"static: {report.static}", real.stdout)
            )
        return
    mine = predicted_listing(report)
    if mine != listing:
        summary.disagreements.append(
            Disagreement(path, how, format_listing(mine), format_listing(listing))
        )


def format_listing(listing: Listing) -> str:
    return "\n".join(f"    {n} => {p or 'not found'}" for n, p in listing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="directories or files")
    parser.add_argument("--limit", type=int, help="compare at most N files")
    parser.add_argument("--jobs", type=int, help="real loader runs in parallel")
    parser.add_argument(
        "--library-path", metavar="PATH", help="LD_LIBRARY_PATH for both sides (default: none)"
    )
    parser.add_argument("--preload", metavar="LIST", help="LD_PRELOAD for both sides")
    args = parser.parse_args(argv)
    dirs = args.dirs or default_dirs()
    env = {}
    if args.library_path is not None:
        env["LD_LIBRARY_PATH"] = args.library_path
    if args.preload is not None:
        env["LD_PRELOAD"] = args.preload
    summary = compare(dirs, limit=args.limit, jobs=args.jobs, env=env)
    for d in summary.disagreements:
        print(f"DISAGREE {d.file} ({'executed' if d.how == 'exec' else 'through ld.so'})")
        print(f"  predicted:\n{d.predicted}\n  real loader:\n{d.real}")
    print(f"directories: {' '.join(dirs)}")
    print(
        f"compared {summary.compared} files ({summary.executed} programs executed with "
        f"LD_TRACE_LOADED_OBJECTS, {summary.listed} files listed through ld.so)"
    )
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(summary.skipped.items()))
    print(f"skipped: {skipped or 'none'}")
    print(f"disagreements: {len(summary.disagreements)}")
    return 1 if summary.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
