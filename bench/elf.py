"""Benchmark: ELF packages: ``cpk install``, patched start-up, ``cpk ldd``.

One run, with a private CPK_HOME in a temporary directory (never the
user's store), measures three things against the tool a user would reach
for instead:

1. ``cpk install`` of a real program with its library closure from a warm
   store, against ``cp -r`` of the same files. The program is the one in
   /usr/bin with the largest closure of non-glibc libraries (by ``ldd``)
   whose ``--version`` works (``--program`` picks another; at least 10
   libraries are needed). Its prefix tree (``bin/<prog>``, and in ``lib/``
   each library's real file with its soname symlink) is built once and
   added with ``cpk store add``; then each round times ``cpk install
   <prog> WHERE`` into a fresh WHERE, the same install in process
   (``contentpkg.elf.envdir.install``), and ``cp -r`` of the tree into a
   fresh directory. The difference between the first two is the command's
   own start-up (interpreter and imports).
2. The start-up of the patched executable (the real file
   ``WHERE/bin/<prog>-<version>``, RUNPATH into WHERE) against the
   unpatched original in /usr/bin: ``<prog> --version``, and the loader's
   work alone (``LD_TRACE_LOADED_OBJECTS=1``: every library searched for
   and mapped, nothing run). Processes are started with ``os.posix_spawn``
   and reaped with ``wait4``, the variants alternating, so Python's own
   overhead is small and equal on both sides.
3. ``cpk ldd FILE`` against ``ldd FILE`` on 24 ELF files (the program, and
   executables and libraries spread over /usr/bin and the directory the
   system's libc is in), with the in-process ``contentpkg.elf.loader``
   resolution beside them.

Times are medians of ``--repeat`` rounds (start-up: ten times as many
samples), page cache warm for every side. cpk runs as an installed tool
would (its own virtualenv with a byte-compiled copy of this checkout, as
in bench/python_run.py). The machines are noisy: read the ratios.

    python bench/elf.py [--repeat 15] [--quick] [--program NAME] [--ldd-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, bench/ is on sys.path: the tool install and helpers are shared.
from python_run import LAST_CPU, BenchError, install_cpk, log, run, timed

from contentpkg.elf.envdir import is_glibc
from contentpkg.fs import remove_tree  # entries are read-only

SYSTEM_BIN = Path("/usr/bin")
MIN_LIBS = 10
LDD_FILES = 24  # half executables, half libraries
VERSION = "0"
PT_LOAD = 1
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")


@dataclass
class Program:
    name: str
    original: Path  # the real file behind its /usr/bin name
    libs: dict[str, Path]  # soname -> the file ldd found, glibc left out


# --- commands and timing ------------------------------------------------------------


def clean_env(home: Path | None = None) -> dict[str, str]:
    """This environment without the loader's variables or other stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env.pop("CPK_STORE_PATH", None)
    # The tool has its own byte-compiled copy: a PYTHONPATH naming the
    # checkout (how this script is run from one) would put the checkout's
    # sources ahead of it, compiled again at every start under
    # PYTHONDONTWRITEBYTECODE, and time that instead.
    env.pop("PYTHONPATH", None)
    if home is not None:
        env["CPK_HOME"] = str(home)
    return env


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, posix_spawn to reaping
    cpu: float  # user + system seconds of the child (and what it waited for)
    faults: int  # minor page faults, the same way


def spawn(argv: Sequence[str], env: dict[str, str], devnull: int) -> Sample:
    """One process from posix_spawn to wait4, output discarded.

    posix_spawn (vfork and exec) and wait4 keep Python's own share small and
    the same for both sides; wait4 also reports the child's CPU time and page
    faults, which are steadier than its wall time.
    """
    actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter_ns() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"`{' '.join(argv)}` exited {os.waitstatus_to_exitcode(status)}")
    return Sample(elapsed / 1e9, usage.ru_utime + usage.ru_stime, usage.ru_minflt)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def span_ms(samples: Sequence[float]) -> str:
    """min-max of the samples, in ms: the machine's noise beside each median."""
    return f"[{min(samples) * 1000:.1f}-{max(samples) * 1000:.1f}]"


# --- the program and its prefix tree ------------------------------------------------


def ldd_closure(path: Path) -> dict[str, Path] | None:
    """soname -> path of every non-glibc library ldd lists; None if any is missing."""
    try:
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0 or "not found" in done.stdout:
        return None
    libs = {}
    for line in done.stdout.splitlines():
        m = _LDD_LINE.match(line)
        if m and not is_glibc(m[1]):
            libs[m[1]] = Path(m[2])
    return libs


def plain_elf(path: Path) -> bool:
    """A regular ELF file, not setuid or setgid (RUNPATH with $ORIGIN is refused there)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            return False
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def version_works(path: Path) -> bool:
    try:
        done = subprocess.run(
            [str(path), "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def pick_program(name: str | None) -> Program:
    if name is not None:
        path = Path(name) if "/" in name else SYSTEM_BIN / name
        real = Path(os.path.realpath(path))
        libs = ldd_closure(real) if plain_elf(real) else None
        if libs is None or len(libs) < MIN_LIBS or not version_works(real):
            raise BenchError(
                f"{path}: needs to be a dynamic ELF program with at least {MIN_LIBS} "
                "non-glibc libraries, all found, and a working --version"
            )
        return Program(real.name, real, libs)
    reals = sorted({Path(os.path.realpath(p)) for p in SYSTEM_BIN.iterdir()})
    reals = [p for p in reals if plain_elf(p)]
    log(f"ldd on {len(reals)} ELF files under {SYSTEM_BIN} to find the largest closure")
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        closures = dict(zip(reals, pool.map(ldd_closure, reals), strict=True))
    ranked = sorted(
        ((p, libs) for p, libs in closures.items() if libs and len(libs) >= MIN_LIBS),
        key=lambda item: (-len(item[1]), item[0].name),
    )
    for path, libs in ranked[:10]:
        if "," not in path.name and version_works(path):
            return Program(path.name, path, libs)
    raise BenchError(
        f"no program under {SYSTEM_BIN} has {MIN_LIBS} or more non-glibc libraries "
        "and a working --version; name one with --program"
    )


def build_tree(program: Program, tree: Path) -> tuple[int, int]:
    """bin/<prog> and lib/<real file> + lib/<soname> symlink; (files, bytes)."""
    (tree / "bin").mkdir(parents=True)
    (tree / "lib").mkdir()
    shutil.copy2(program.original, tree / "bin" / program.name)
    files, size = 1, program.original.stat().st_size
    for soname, path in sorted(program.libs.items()):
        real = Path(os.path.realpath(path))
        dest = tree / "lib" / real.name
        if not dest.exists():
            shutil.copy2(real, dest)
            files += 1
            size += real.stat().st_size
        if soname != real.name and not os.path.lexists(tree / "lib" / soname):
            os.symlink(real.name, tree / "lib" / soname)
    return files, size


# --- 1: install against cp -r -------------------------------------------------------


@dataclass
class InstallTimes:
    cp: list[float]
    cli: list[float]
    function: list[float]
    python: list[float]
    placement: str
    imports: list[tuple[str, float]]  # the command's largest top-level imports, seconds


def bench_install(
    program: Program, tree: Path, work: Path, cpk: list[str], home: Path, rounds: int
) -> InstallTimes:
    from contentpkg.elf.envdir import install, place_file
    from contentpkg.store import Store

    env = clean_env(home)
    os.environ["CPK_HOME"] = str(home)  # for the in-process install
    os.environ.pop("CPK_STORE_PATH", None)
    python = str(Path(cpk[0]).parent / "python")
    envs = work / "envs"
    envs.mkdir()
    counter = iter(range(10**6))

    def fresh() -> Path:
        return envs / f"w{next(counter)}"

    def cli() -> float:
        where = fresh()
        elapsed = timed([*cpk, "install", program.name, str(where)], work, env)
        remove_tree(where)
        return elapsed

    def function() -> float:
        where = fresh()
        start = time.perf_counter()
        install(Store.open(cwd=work), [program.name], where)
        elapsed = time.perf_counter() - start
        remove_tree(where)
        return elapsed

    def copy() -> float:
        dest = fresh()
        elapsed = timed(["cp", "-r", str(tree), str(dest)], work, env)
        remove_tree(dest)
        return elapsed

    def bare_python() -> float:
        return timed([python, "-c", "pass"], work, env)

    # How the store's files reach WHERE on this filesystem.
    entry = next((home / "store").glob(f"{program.name},*"))
    placement = place_file(entry / "bin" / program.name, work / "placement-probe")
    kinds: dict[str, Callable[[], float]] = {
        "cp": copy,
        "cli": cli,
        "function": function,
        "python": bare_python,
    }
    for fn in kinds.values():  # warm-up: imports, page cache, dentries
        fn()
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    keys = list(kinds)
    for i in range(rounds):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            samples[key].append(kinds[key]())
    imports = top_imports(
        [python, "-X", "importtime", *cpk, "install", program.name, str(fresh())], work, env
    )
    return InstallTimes(placement=placement, imports=imports, **samples)


def top_imports(cmd: list[str], cwd: Path, env: dict[str, str]) -> list[tuple[str, float]]:
    """The three top-level imports of one run that took longest, with what they import."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    found = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].removeprefix(" ")
            if not name.startswith(" "):  # top level: imported by the command itself
                found.append((name, int(parts[1]) / 1e6))
    return sorted(found, key=lambda item: -item[1])[:3]


# --- 2: start-up of the patched executable ------------------------------------------


@dataclass
class Startup:
    version: dict[str, list[Sample]]  # "original" / "patched" -> samples
    trace: dict[str, list[Sample]]
    probes: dict[str, int]  # paths the loader tried, loading the start-up set
    segments: dict[str, int]  # PT_LOAD segments over the start-up set's files
    from_where: tuple[int, int]  # non-glibc libraries mapped from WHERE, of all mapped
    same_output: bool


def load_segments(path: str) -> int:
    """The number of PT_LOAD program headers: each is one mmap for the loader."""
    with open(path, "rb") as f:
        head = f.read(64)
        end = "<" if head[5] == 1 else ">"
        if head[4] == 2:  # ELFCLASS64
            (phoff,) = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        else:
            (phoff,) = struct.unpack_from(end + "I", head, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    kinds = (struct.unpack_from(end + "I", table, i * phentsize)[0] for i in range(phnum))
    return sum(kind == PT_LOAD for kind in kinds)


def loader_facts(exe: str, env: dict[str, str], where: Path) -> tuple[int, int, int, int]:
    """(paths tried, PT_LOAD segments, non-glibc libraries mapped, of them from
    WHERE) as the loader loads the start-up set (LD_TRACE_LOADED_OBJECTS=1,
    LD_DEBUG=libs)."""
    trace = {**env, "LD_TRACE_LOADED_OBJECTS": "1", "LD_DEBUG": "libs"}
    done = subprocess.run(
        [exe], env=trace, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    probes = sum("trying file=" in line for line in done.stderr.splitlines())
    mapped = [m for m in map(_LDD_LINE.match, done.stdout.splitlines()) if m]
    segments = load_segments(exe) + sum(load_segments(m[2]) for m in mapped)
    libs = [m[2] for m in mapped if not is_glibc(m[1])]
    inside = sum(os.path.abspath(p).startswith(str(where) + os.sep) for p in libs)
    return probes, segments, len(libs), inside


def bench_startup(program: Program, where: Path, samples: int) -> Startup:
    patched = where / "bin" / f"{program.name}-{VERSION}"
    argv = {"original": str(program.original), "patched": str(patched)}
    env = clean_env()
    trace_env = {**env, "LD_TRACE_LOADED_OBJECTS": "1"}
    outputs = {}
    for k, a in argv.items():
        done = subprocess.run(
            [a, "--version"], env=env, stdin=subprocess.DEVNULL, capture_output=True
        )
        outputs[k] = done.stdout
    facts = {k: loader_facts(a, env, where) for k, a in argv.items()}
    version: dict[str, list[Sample]] = {k: [] for k in argv}
    trace: dict[str, list[Sample]] = {k: [] for k in argv}
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for a in argv.values():  # warm-up
            spawn([a, "--version"], env, devnull)
            spawn([a], trace_env, devnull)
        order = list(argv)
        for i in range(samples):
            for k in order if i % 2 == 0 else order[::-1]:
                version[k].append(spawn([argv[k], "--version"], env, devnull))
            for k in order if i % 2 == 1 else order[::-1]:
                trace[k].append(spawn([argv[k]], trace_env, devnull))
    finally:
        os.close(devnull)
    return Startup(
        version,
        trace,
        {k: f[0] for k, f in facts.items()},
        {k: f[1] for k, f in facts.items()},
        (facts["patched"][3], facts["patched"][2]),
        outputs["original"] == outputs["patched"],
    )


# --- 3: cpk ldd against ldd ---------------------------------------------------------


def libc_dir(program: Program) -> Path:
    """The directory the system's libc.so.6 is in (the multiarch lib dir)."""
    done = subprocess.run(["ldd", str(program.original)], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        m = _LDD_LINE.match(line)
        if m and m[1] == "libc.so.6":
            return Path(os.path.realpath(m[2])).parent
    raise BenchError(f"ldd {program.original}: no libc.so.6 in its output")


def spread(candidates: list[Path], count: int, exclude: set[Path]) -> list[Path]:
    """count files evenly spaced over candidates that ldd resolves fully."""
    if not candidates or count <= 0:
        return []
    step = max(1, len(candidates) // count)
    chosen: list[Path] = []
    for offset in range(step):
        for path in candidates[offset::step]:
            if len(chosen) == count:
                return chosen
            if path not in exclude and path not in chosen and ldd_closure(path) is not None:
                chosen.append(path)
    return chosen


def pick_ldd_files(program: Program) -> list[Path]:
    bins = sorted(p for p in SYSTEM_BIN.iterdir() if not p.is_symlink() and plain_elf(p))
    libdir = libc_dir(program)
    libs = sorted(
        p for p in libdir.iterdir() if ".so" in p.name and not p.is_symlink() and plain_elf(p)
    )
    half = LDD_FILES // 2
    files = [program.original, *spread(bins, half - 1, {program.original})]
    return files + spread(libs, LDD_FILES - len(files), set(files))


@dataclass
class LddRow:
    path: Path
    libs: int
    ldd: list[float]
    cpk: list[float]
    resolve: list[float]
    #: cpk's floors, timed in the same rounds: the interpreter's bare start
    #: (``-I -S``), the base ``python3`` with its site, and the tool's own
    #: interpreter (its virtualenv's site, as ``cpk`` starts).
    floor: list[float] = field(default_factory=list)
    floor_site: list[float] = field(default_factory=list)
    floor_venv: list[float] = field(default_factory=list)
    #: The tool's interpreter importing what ``cpk ldd FILE`` imports (its
    #: command, the settings, the loader), and nothing run.
    imports: list[float] = field(default_factory=list)
    #: CPU time (user + system) of each command's samples, by the same keys.
    cpu: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class LddBench:
    rows: list[LddRow]
    config: float  # seconds: system_config(), cold (ld.so --help)
    cached_config: float  # seconds: cached_system_config(), read from the cache
    cache: float  # seconds: reading /etc/ld.so.cache
    imports: list[tuple[str, float]]


def loader_available(cpk: list[str], work: Path) -> str | None:
    """Why cpk ldd cannot be measured, or None when it can."""
    try:
        from contentpkg.elf import loader
    except ImportError:
        return "contentpkg.elf.loader is not there yet"
    if not hasattr(loader, "resolve"):
        return "contentpkg.elf.loader has no resolve()"
    done = subprocess.run([*cpk, "ldd", "--help"], cwd=work, env=clean_env(), capture_output=True)
    if done.returncode != 0:
        return "`cpk ldd` is not a command yet"
    return None


def bench_ldd(files: list[Path], cpk: list[str], work: Path, rounds: int) -> LddBench:
    from contentpkg.elf.loader import resolve

    # A private cache too: the loader's configuration is kept there.
    env = {**clean_env(work / "ldd-home"), "CPK_CACHE_DIR": str(work / "ldd-cache")}
    python = interpreter_of(cpk)
    base = os.path.realpath(python)  # the python3 the tool's virtualenv was made from
    ldd_imports = "import contentpkg.cli, contentpkg.cli.ldd, contentpkg.elf.loader"
    rows = []
    for path in files:
        log(f"ldd / cpk ldd / resolve: {path}")
        listed = run(["ldd", str(path)], work, env)
        row = LddRow(path, sum(bool(_LDD_LINE.match(x)) for x in listed.splitlines()), [], [], [])
        commands: dict[str, Callable[[], float]] = {
            "ldd": lambda p=path: timed(["ldd", str(p)], work, env),
            "cpk": lambda p=path: timed([*cpk, "ldd", str(p)], work, env),
            "resolve": lambda p=path: in_process(lambda: resolve(p, os.environ)),
            "floor": lambda: timed([python, "-I", "-S", "-c", "pass"], work, env),
            "floor_site": lambda: timed([base, "-c", "pass"], work, env),
            "floor_venv": lambda: timed([python, "-c", "pass"], work, env),
            "imports": lambda: timed([python, "-c", ldd_imports], work, env),
        }
        for fn in commands.values():
            fn()
        for i in range(rounds):
            keys = list(commands)
            for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                getattr(row, key).append(commands[key]())
                if key != "resolve":
                    row.cpu.setdefault(key, []).append(LAST_CPU[0])
        rows.append(row)
    return LddBench(rows, *once_per_process(files[0], cpk, work, env))


def interpreter_of(cpk: list[str]) -> str:
    """The interpreter that runs cpk: the console script's ``#!`` line."""
    first = Path(cpk[0]).read_text().splitlines()[0] if len(cpk) == 1 else ""
    return first[2:].strip() if first.startswith("#!") else cpk[0]


def once_per_process(
    path: Path, cpk: list[str], work: Path, env: dict[str, str]
) -> tuple[float, float, float, list[tuple[str, float]]]:
    """What a ``cpk ldd`` process pays once: the loader's configuration (asked
    of ``ld.so --help`` on the first run, then read from the cache), reading
    /etc/ld.so.cache, and its largest imports."""
    from contentpkg.elf.ldcache import DEFAULT_CACHE, parse_cache
    from contentpkg.elf.loader import cached_system_config, forget_system_config, system_config

    configs, cached, parses = [], [], []
    for _ in range(5):
        forget_system_config()
        configs.append(in_process(system_config))
        cached.append(in_process(lambda: cached_system_config(env["CPK_CACHE_DIR"])))
        parses.append(in_process(lambda: parse_cache(Path(DEFAULT_CACHE).read_bytes())))
    python = str(Path(cpk[0]).parent / "python")
    imports = top_imports([python, "-X", "importtime", *cpk, "ldd", str(path)], work, env)
    medians = (statistics.median(configs), statistics.median(cached), statistics.median(parses))
    return (*medians, imports)


def in_process(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- report -------------------------------------------------------------------------


def report_install(program: Program, t: InstallTimes, files: int, size: int) -> None:
    base = median_ms(t.cp)
    print(
        f"\n== 1. install {program.name} ({len(program.libs)} non-glibc libraries, "
        f"{files} files, {size / (1 << 20):.1f} MiB) from a warm store =="
    )
    print(f"{'measure':<44} {'median':>10} {'min-max':>16} {'/ cp -r':>8}  note")
    rows = [
        ("cp -r of the prefix tree [a]", t.cp, ""),
        ("cpk install PROG WHERE (command) [b]", t.cli, ""),
        ("install() in process [c]", t.function, ""),
        ("  the tool's python -c pass", t.python, "interpreter start-up alone"),
    ]
    for label, samples, note in rows:
        value = median_ms(samples)
        line = f"{label:<44} {value:>8.1f}ms {span_ms(samples):>16} {value / base:>7.2f}x  {note}"
        print(line.rstrip())
    cli, fn, python = median_ms(t.cli), median_ms(t.function), median_ms(t.python)
    startup = cli - fn
    print(f"  command - in process: {startup:.1f} ms, {startup / cli:.0%} of the command [d]")
    largest = ", ".join(f"{name} {sec * 1000:.0f} ms" for name, sec in t.imports)
    copied = " (no file bytes copied)" if t.placement in ("hardlink", "reflink") else ""
    print(
        f"[a] the executable and every library file, symlinks as symlinks, into a fresh dir\n"
        f"[b] fresh WHERE each round; files placed by {t.placement} from the store, plus\n"
        "    bin/<prog>-<version>, the symlinks, .cpk/manifest.json, refs and a gc root\n"
        "[c] Store.open() + contentpkg.elf.envdir.install(), fresh WHERE each round\n"
        f"[d] the interpreter's start-up ({python:.1f} ms) and the command's imports; the\n"
        f"    largest (-X importtime, one run; each figure holds the standard-library\n"
        f"    modules it was first to import):\n    {largest}\n"
        "what dominates: the command's own start-up. The install itself places each file\n"
        f"by {t.placement}{copied}, where cp -r reads and writes all "
        f"{size / (1 << 20):.1f} MiB"
    )


def report_startup(program: Program, s: Startup, where: Path) -> None:
    print(f"\n== 2. start-up: patched {program.name} from the env dir vs {program.original} ==")
    print(f"{'measure':<44} {'original':>10} {'patched':>10} {'ratio':>7}  goal")

    def row(label: str, a: float, b: float, unit: str, goal: str = "") -> None:
        if unit == "ms":
            left, right = f"{a * 1000:.2f}ms", f"{b * 1000:.2f}ms"
        else:
            left, right = f"{a:.0f}", f"{b:.0f}"
        print(f"{label:<44} {left:>10} {right:>10} {b / a:>6.3f}x  {goal}".rstrip())

    def med(data: dict[str, list[Sample]], side: str, what: str) -> float:
        return statistics.median(getattr(x, what) for x in data[side])

    for label, data, goal in (
        (f"{program.name} --version, wall [e]", s.version, "<= 1.05x"),
        ("loader only, wall [f]", s.trace, ""),
    ):
        row(label, med(data, "original", "wall"), med(data, "patched", "wall"), "ms", goal)
        row("  CPU, user + system", med(data, "original", "cpu"), med(data, "patched", "cpu"), "ms")
        faults = (med(data, "original", "faults"), med(data, "patched", "faults"))
        row("  minor page faults", *faults, "")
    row("paths the loader tried [g]", s.probes["original"], s.probes["patched"], "")
    row("PT_LOAD segments mapped [h]", s.segments["original"], s.segments["patched"], "")
    inside, total = s.from_where
    print(f"  patched: {inside} of its {total} non-glibc libraries mapped from the env dir")
    if not s.same_output:
        print("  note: the two --version outputs differ")
    extra_run = med(s.version, "patched", "wall") - med(s.version, "original", "wall")
    extra_load = med(s.trace, "patched", "wall") - med(s.trace, "original", "wall")
    n = len(s.version["original"])
    print(
        f"[e] {n} samples each, alternating, posix_spawn to wait4, output to /dev/null;\n"
        f"    patched = the real file {where.name}/bin/{program.name}-{VERSION}, RUNPATH\n"
        "    $ORIGIN:$ORIGIN/<prog>_deps:$ORIGIN/common_libs; the original finds its\n"
        "    libraries through /etc/ld.so.cache\n"
        "[f] LD_TRACE_LOADED_OBJECTS=1: the loader searches for and maps every library of\n"
        "    the start-up set, then exits: no relocation, no constructors, no program\n"
        "[g] LD_DEBUG=libs 'trying file=' lines while loading the start-up set: each is an\n"
        "    open(2), most failing; the patched side tries its RUNPATH directories (and\n"
        "    their legacy hwcap subdirectories) before the cache, glibc's sonames included\n"
        "[h] each is one mmap(2): patchelf adds a load segment to each file it gives a\n"
        "    RUNPATH (the moved .dynamic/.dynstr), so it costs a mapping and its faults\n"
        "what dominates: the program's own start-up, the same on both sides. The patched\n"
        f"side's extra loader work [f] is {extra_load * 1000:+.2f} ms a start (the failed opens\n"
        f"[g] and the added mappings [h]); the whole start-up [e] differs by "
        f"{extra_run * 1000:+.2f} ms,\nwhich also holds those mappings' page faults while "
        "the program runs, and noise"
    )


def report_ldd(bench: LddBench) -> None:
    rows = bench.rows
    print(f"\n== 3. cpk ldd vs ldd on {len(rows)} ELF files, CPU time (user + system) ==")
    print(
        f"{'file':<34} {'libs':>4} {'ldd':>9} {'min-max':>13} {'cpk ldd':>9} {'min-max':>13} "
        f"{'ratio':>7} {'resolve()':>10}"
    )

    def own(r: LddRow, key: str) -> list[float]:
        return r.cpu[key]

    for r in rows:
        ldd, cpk, res = median_ms(own(r, "ldd")), median_ms(own(r, "cpk")), median_ms(r.resolve)
        print(
            f"{r.path.name[:34]:<34} {r.libs:>4} {ldd:>7.1f}ms {span_ms(own(r, 'ldd')):>13} "
            f"{cpk:>7.1f}ms {span_ms(own(r, 'cpk')):>13} {cpk / ldd:>6.2f}x {res:>8.2f}ms"
        )

    def cpu(key: str) -> float:
        """CPU ms (user + system): the median over the files of each file's median."""
        return statistics.median(statistics.median(r.cpu[key]) * 1000 for r in rows)

    def cpu_span(key: str) -> str:
        """min-max over the files of each file's median CPU."""
        values = [statistics.median(r.cpu[key]) * 1000 for r in rows]
        return f"[{min(values):.1f}-{max(values):.1f}]"

    print("\nCPU time, user + system, median over the files (goal: cpk ldd <= 3x ldd):")
    print(f"{'measure':<44} {'CPU':>8} {'min-max':>13} {'/ ldd':>7} {'wall':>8}")
    cpu_ldd = cpu("ldd")
    for label, key in (
        ("ldd FILE", "ldd"),
        ("cpk ldd FILE", "cpk"),
        ("floor: python3 -I -S -c pass", "floor"),
        ("floor: python3 -c pass (its site)", "floor_site"),
        ("floor: the tool's python -c pass (venv)", "floor_venv"),
        ("  + cpk ldd's imports, nothing run", "imports"),
    ):
        wall = statistics.median(median_ms(getattr(r, key)) for r in rows)
        print(
            f"{label:<44} {cpu(key):>6.1f}ms {cpu_span(key):>13} {cpu(key) / cpu_ldd:>6.2f}x "
            f"{wall:>6.1f}ms"
        )
    per_file = statistics.median(
        statistics.median(r.cpu["cpk"]) / statistics.median(r.cpu["ldd"]) for r in rows
    )
    over = [statistics.median(r.cpu["cpk"]) / statistics.median(r.cpu["ldd"]) for r in rows]
    print(
        f"cpk ldd / ldd, CPU, per file: median {per_file:.2f}x [{min(over):.2f}-{max(over):.2f}]; "
        f"above the tool's interpreter: imports {cpu('imports') - cpu('floor_venv'):.1f} ms, "
        f"the rest (settings, loader configuration, ld.so.cache, resolve, output, exit) "
        f"{cpu('cpk') - cpu('imports'):.1f} ms"
    )
    largest = ", ".join(f"{name} {sec * 1000:.0f} ms" for name, sec in bench.imports)
    print(
        "libs: the libraries ldd lists; ldd, cpk ldd: CPU medians of the rounds [min-max];\n"
        "ratio: cpk ldd / ldd per file (the last line: the median of the ratios);\n"
        "resolve(): contentpkg.elf.loader.resolve in this process (wall), with the loader's\n"
        "configuration and /etc/ld.so.cache already read\n"
        "ldd is a shell script that runs the loader twice (ld.so --verify FILE, then\n"
        "LD_TRACE_LOADED_OBJECTS=1 ld.so FILE); cpk ldd starts an interpreter and pays,\n"
        f"once per process: the loader's configuration {bench.cached_config * 1000:.2f} ms "
        f"read from the cache\n(asking ld.so --help, the first run only: "
        f"{bench.config * 1000:.1f} ms), reading /etc/ld.so.cache "
        f"{bench.cache * 1000:.2f} ms,\nand its imports (largest, -X importtime, as in [d]): "
        f"{largest}\n"
        "what dominates cpk ldd: the interpreter's own start (the floors); the emulation\n"
        "itself is the resolve() column"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, help="rounds per timing (default 15, quick 5)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--program", help="the /usr/bin program to package (default: picked)")
    parser.add_argument("--ldd-only", action="store_true", help="only part 3, cpk ldd against ldd")
    args = parser.parse_args()
    rounds = args.repeat or (5 if args.quick else 15)
    for tool in ("ldd", "cp"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/elf.py needs {tool}")

    try:
        with tempfile.TemporaryDirectory(prefix="cpk-bench-elf-") as tmp:
            work = Path(tmp)
            home = work / "cpk-home"
            try:
                program = pick_program(args.program)
                log(f"program: {program.original} ({len(program.libs)} non-glibc libraries)")
                cpk = install_cpk(work / "cpk-tool")
                tree = work / "tree"
                files, size = build_tree(program, tree)
                log("cpk store add of the prefix tree (the warm store)")
                run(
                    [*cpk, "store", "add", str(tree), "--name", program.name, "--version", VERSION],
                    work,
                    clean_env(home),
                )
                print(
                    f"ELF bench: {program.original}, CPython {sys.version.split()[0]}, "
                    f"{rounds} rounds; every side's outputs under {work} (TMPDIR picks it)"
                )

                if not args.ldd_only:
                    log(f"1. cpk install vs cp -r, {rounds} rounds")
                    times = bench_install(program, tree, work, cpk, home, rounds)
                    report_install(program, times, files, size)

                    where = work / "env"
                    run([*cpk, "install", program.name, str(where)], work, clean_env(home))
                    log(f"2. start-up, {rounds * 10} samples of each")
                    startup = bench_startup(program, where, rounds * 10)
                    report_startup(program, startup, where)

                why = loader_available(cpk, work)
                if why is not None:
                    print(f"\n== 3. cpk ldd vs ldd: skipped, {why} ==")
                else:
                    files_ldd = pick_ldd_files(program)
                    report_ldd(bench_ldd(files_ldd, cpk, work, rounds))
                print(f"\nmedians of {rounds} rounds; the machines are noisy: read the ratios")
            finally:
                kept = ("envs", "env", "ldd-home", "ldd-cache")
                for path in (home, *(work / name for name in kept)):
                    remove_tree(path)
    except BenchError as exc:
        sys.exit(f"bench/elf.py: {exc}")


if __name__ == "__main__":
    main()
