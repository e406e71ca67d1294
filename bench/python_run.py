"""Benchmark: ``cpk run`` and its views, against uv, in the same run.

Two projects, each set up once for cpk and once for uv with the same
pyproject.toml (uv also gets the versions of cpk's lock as constraints, so
both environments hold the same distributions):

* the 14-package project of bench/python_fetch.py, from PyPI (needs network;
  ``--skip-network`` leaves it out);
* a synthetic project depending on ``--synthetic N`` small packages (each a
  package of a few modules), built here with tests/support/wheels.py into a
  directory that cpk and uv both read as find-links with no index.

For each it prints, with ratios cpk / uv:

1. the overhead of ``cpk run python -c pass`` over the environment's own
   ``bin/python -c pass``, against ``uv run python -c pass`` over
   ``.venv/bin/python -c pass`` (all warm);
2. the time to import every top-level package of the project, running each
   environment's interpreter directly on one script. Both sides have
   bytecode: cpk compiles it into the store at sync, uv gets
   ``uv sync --compile-bytecode``; PYTHONDONTWRITEBYTECODE is set for both, so
   neither writes any while measured;
3. building the environment from a warm store: views/ and envs/ under
   CPK_HOME and the project's .venv link deleted, the store kept, then
   ``cpk run python -c pass``; against ``uv sync`` into a fresh .venv from a
   warm cache (and ``uv sync --compile-bytecode``, which makes what cpk's
   store already holds);
4. bytes and inodes used by 10 projects with the same lock: cpk (the store
   and cache, shared, counted once; views, envs, roots and the 10 project
   directories), uv (its cache once and 10 project directories with their
   .venv) and pip (10 ``python -m venv`` with ``pip install --no-deps`` of the
   locked wheel files; pip's cache is off and not counted). Sizes are
   ``st_blocks * 512`` from ``os.lstat`` and inodes are counted once each
   (by ``st_dev, st_ino``), so uv's hard links into its cache cost nothing
   twice; symlinks are not followed.

Small timings are medians of ``--runs`` rounds of ``--reps`` samples, the
commands interleaved; builds are medians of ``--runs``. The machines are
noisy: read the ratios. cpk runs as an installed tool would (its own
virtualenv with a byte-compiled copy of this checkout, see ``install_cpk``);
one row also shows the checkout's own ``cpk`` script. uv is the binary beside
this interpreter (a shim on PATH, as pyenv makes, would add a shell's
start-up to one side).

    python bench/python_run.py [--runs 5] [--reps 10] [--synthetic 500] [--skip-network]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.fs import remove_tree  # entries are read-only

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.wheels import make_wheel  # noqa: E402

NETWORK_DEPENDENCIES = [
    "flask", "requests", "rich", "pydantic", "httpx", "sqlalchemy", "pytest",
    "black", "jinja2", "click", "attrs", "numpy", "pyyaml", "boto3",
]  # fmt: skip
NETWORK_IMPORTS = [
    "flask", "requests", "rich", "pydantic", "httpx", "sqlalchemy", "pytest",
    "black", "jinja2", "click", "attrs", "numpy", "yaml", "boto3",
]  # fmt: skip
PROJECTS = 10
MIB = 1 << 20


class BenchError(Exception):
    """A command failed: the message names it, its directory and its stderr."""


# --- tools and commands -------------------------------------------------------------


def tool_path(name: str) -> str | None:
    """The tool installed beside this interpreter, else the first on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def install_cpk(dest: Path, package: Path | None = None) -> list[str]:
    """cpk as ``pipx``/``uv tool install`` would leave it: its own virtualenv
    holding a byte-compiled copy of this checkout's package and a console
    script. The checkout's own bytecode goes stale while it is edited, and
    with PYTHONDONTWRITEBYTECODE every start would compile it again; and
    this interpreter's site-packages may carry ``.pth`` files that run code
    at every start. The tool's site-packages reaches the dependencies
    through a plain path line, which runs no ``.pth`` of theirs.

    ``package`` is the ``contentpkg`` directory to copy (default: the one
    imported here), e.g. another checkout's, to time two versions side by side."""
    import compileall
    import sysconfig
    import venv

    import contentpkg

    venv.create(dest, with_pip=False, symlinks=True)
    site = site_packages(dest)
    shutil.copytree(
        package or Path(contentpkg.__file__).parent,
        site / "contentpkg",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "cpk-bench-deps.pth").write_text("".join(f"{p}\n" for p in paths))
    if not compileall.compile_dir(site / "contentpkg", quiet=1):
        raise BenchError(f"{site / 'contentpkg'}: could not byte-compile the copy of cpk")
    script = dest / "bin" / "cpk"
    script.write_text(
        f"#!{dest / 'bin' / 'python'}\n"
        "import sys\nfrom contentpkg.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return [str(script)]


def checkout_cpk() -> list[str]:
    """This checkout's cpk, run by this interpreter with its site (the
    commands get no PYTHONPATH, and an installed ``cpk`` script may be
    another checkout's)."""
    src = str(REPO / "src")
    code = f"import sys\nsys.path.insert(0, {src!r})\nfrom contentpkg.cli import main\n"
    return [sys.executable, "-c", code + "sys.exit(main())"]


def uv_command() -> list[str]:
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        found = tool_path("uv")
        if found is None:
            sys.exit("bench/python_run.py needs uv (pip install -e '.[test]')")
        return [found]


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(f"`{' '.join(cmd)}` in {cwd} exited {done.returncode}:\n{tail}")
    return done.stdout


#: CPU time (user + system) of the last command ``timed`` ran, with its
#: children: on a machine shared with other work, wall time mostly measures
#: the neighbours, CPU time much less so.
LAST_CPU = [0.0]


def timed(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of cmd; its CPU time is left in ``LAST_CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)  # fmt: skip
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-15:])
        raise BenchError(f"`{' '.join(cmd)}` in {cwd} exited {done.returncode}:\n{tail}")
    return elapsed


#: Every sample, by measure: wall times, and CPU times under ``cpu:<name>``.
SAMPLES: dict[str, list[float]] = {}


def record(key: str, wall: float) -> float:
    SAMPLES.setdefault(key, []).append(wall)
    SAMPLES.setdefault(f"cpu:{key}", []).append(LAST_CPU[0])
    return wall


def interleaved(
    commands: dict[str, tuple[list[str], Path]],
    env: dict[str, str],
    rounds: int,
    reps: int,
    label: str = "",
) -> dict[str, float]:
    """Median time of each command, sampled in turn (one warm-up each)."""
    for cmd, cwd in commands.values():
        timed(cmd, cwd, env)
    samples: dict[str, list[float]] = {k: [] for k in commands}
    keys = list(commands)
    for i in range(rounds * reps):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            cmd, cwd = commands[key]
            samples[key].append(timed(cmd, cwd, env))
            SAMPLES.setdefault(f"cpu:{label}:{key}", []).append(LAST_CPU[0])
    for key, values in samples.items():
        SAMPLES.setdefault(f"{label}:{key}", []).extend(values)
    return {k: statistics.median(v) for k, v in samples.items()}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- projects -----------------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject(dependencies: Sequence[str], links: Path | None, pins: Sequence[str] = ()) -> str:
    deps = "".join(f'    "{d}",\n' for d in dependencies)
    text = (
        "[project]\n"
        'name = "bench-app"\n'
        'version = "0"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        f"dependencies = [\n{deps}]\n"
    )
    if links is not None:
        text += f"\n[tool.cpk]\nfind-links = [{str(links)!r}]\nno-index = true\n"
    uv = []
    if links is not None:
        uv.append(f"find-links = [{str(links)!r}]\nno-index = true\n")
    if pins:
        uv.append("constraint-dependencies = [\n" + "".join(f'    "{p}",\n' for p in pins) + "]\n")
    if uv:
        text += "\n[tool.uv]\n" + "".join(uv)
    return text


def build_synthetic(dest: Path, count: int) -> tuple[list[str], list[str]]:
    """count wheels, each a package of four modules; (requirements, import names)."""
    body = "".join(f"def f{j}(x, y=1):\n    return (x + y) * {j}\n\n" for j in range(6))
    body += "class Thing:\n    a = 1\n\n    def m(self):\n        return self.a\n\n"
    body += "TABLE = {" + ", ".join(f"'k{j}': {j}" for j in range(20)) + "}\n"
    requirements, imports = [], []
    for i in range(count):
        name = f"synth-{i:04d}"
        module = f"synth_{i:04d}"
        files = {f"{module}/__init__.py": "from . import a, b, c\n__version__ = '1.0'\n"}
        for sub in "abc":
            files[f"{module}/{sub}.py"] = f"# {module}.{sub}\n{body}"
        make_wheel(dest, name, "1.0", files=files)
        requirements.append(name)
        imports.append(module)
    return requirements, imports


@dataclass
class LockedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    url: str | None
    path: Path | None


def locked_wheels(lock_path: Path) -> list[LockedWheel]:
    """The wheel file of each package cpk's pylock.toml installs here.

    The lock is universal: a package applies where its marker holds (for
    this interpreter and the default groups), and its wheel is the best one
    for this interpreter's tags.
    """
    from packaging.markers import Marker, default_environment
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    data = tomllib.loads(lock_path.read_text())
    env = {
        **default_environment(),
        "extras": frozenset(),
        "dependency_groups": frozenset(data.get("default-groups") or ()),
    }
    ranks = {str(tag): i for i, tag in enumerate(sys_tags())}

    def rank(wheel: dict) -> int:
        tags = parse_wheel_filename(wheel["name"])[3]
        return min((ranks.get(str(t), len(ranks)) for t in tags), default=len(ranks))

    found = []
    for package in data.get("packages", []):
        marker = package.get("marker")
        if marker and not Marker(marker).evaluate(env, context="lock_file"):
            continue
        wheels = package.get("wheels") or []
        chosen = (package.get("tool") or {}).get("cpk", {}).get("file")
        wheel = next((w for w in wheels if w.get("name") == chosen), None)
        usable = [w for w in wheels if w.get("name") and rank(w) < len(ranks)]
        if wheel is None and usable:
            wheel = min(usable, key=rank)
        if wheel is None:
            raise BenchError(f"{lock_path}: no single wheel for {package['name']}")
        path = wheel.get("path")
        found.append(
            LockedWheel(
                canonical(package["name"]),
                package["version"],
                wheel.get("name") or os.path.basename(wheel.get("url") or path),
                wheel["hashes"]["sha256"],
                wheel.get("url"),
                (lock_path.parent / path).resolve() if path else None,
            )
        )
    return found


def fetch_wheels(wheels: Sequence[LockedWheel], dest: Path) -> list[Path]:
    """Local copies of the locked wheels (downloaded once, hash-checked)."""
    dest.mkdir(parents=True, exist_ok=True)

    def one(wheel: LockedWheel) -> Path:
        if wheel.path is not None:
            return wheel.path
        target = dest / wheel.filename
        with urllib.request.urlopen(wheel.url, timeout=120) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != wheel.sha256:
            raise BenchError(f"{wheel.url}: sha256 does not match the lock")
        target.write_bytes(data)
        return target

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, wheels))


def installed(site: Path) -> set[tuple[str, str]]:
    found = set()
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found.add((canonical(name), version))
    return found


def site_packages(env: Path) -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return env / "lib" / f"python{version}" / "site-packages"


def pyc_mode(root: Path) -> str:
    """How the first .pyc under root is validated (PEP 552 flags)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".pyc"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    flags = int.from_bytes(f.read(8)[4:8], "little")
                return {0: "timestamp", 1: "unchecked-hash", 3: "checked-hash"}.get(
                    flags, f"flags={flags}"
                )
    return "none"


# --- disk usage ---------------------------------------------------------------------


def usage(paths: Iterable[Path], seen: set[tuple[int, int]]) -> tuple[int, int]:
    """(bytes, inodes) under paths, each inode once across calls sharing seen."""
    total = inodes = 0

    def count(path: str) -> None:
        nonlocal total, inodes
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_blocks * 512
            inodes += 1

    for root in paths:
        count(str(root))
        if root.is_symlink() or not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                count(os.path.join(dirpath, name))
    return total, inodes


# --- one case -----------------------------------------------------------------------


@dataclass
class Results:
    label: str
    locked: int = 0
    notes: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    disk: dict[str, tuple[int, int]] = field(default_factory=dict)


class Case:
    def __init__(self, work: Path, label: str, deps: list[str], imports: list[str],
                 links: Path | None, cpk: list[str], args: argparse.Namespace,
                 baseline: list[str] | None = None) -> None:  # fmt: skip
        self.work = work
        self.deps = deps
        self.imports = imports
        self.links = links
        self.args = args
        self.cpk = cpk
        self.uv = uv_command()
        self.home = work / "cpk-home"
        # Not PYTHONPATH either: this script is often started with the
        # checkout's src/ on it, which every cpk it times would inherit, so
        # that both tools (and the baseline) would run the checkout's code.
        self.env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        self.env.update(
            CPK_HOME=str(self.home),
            CPK_CACHE_DIR=str(work / "cpk-cache"),
            UV_CACHE_DIR=str(work / "uv-cache"),
            UV_PYTHON=sys.executable,
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
            PYTHONDONTWRITEBYTECODE="1",
            PIP_NO_CACHE_DIR="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        self.cpk_proj = work / "cpk-proj"
        self.uv_proj = work / "uv-proj"
        #: Another checkout's cpk, timed beside this one's (``--baseline``).
        self.baseline = baseline
        self.base_env = {**self.env, "CPK_CACHE_DIR": str(work / "base-cache")}
        self.result = Results(label)

    # setup

    def setup(self) -> None:
        log(f"{self.result.label}: cpk sync + run, uv sync --compile-bytecode")
        self.cpk_proj.mkdir()
        (self.cpk_proj / "pyproject.toml").write_text(pyproject(self.deps, self.links))
        run([*self.cpk, "sync"], self.cpk_proj, self.env)
        run([*self.cpk, "run", "python", "-c", "pass"], self.cpk_proj, self.env)
        self.wheels = locked_wheels(self.cpk_proj / "pylock.toml")
        self.result.locked = len(self.wheels)
        pins = [f"{w.name}=={w.version}" for w in self.wheels]
        self.uv_pyproject = pyproject(self.deps, self.links, pins)
        self.uv_proj.mkdir()
        (self.uv_proj / "pyproject.toml").write_text(self.uv_pyproject)
        run([*self.uv, "sync", "--compile-bytecode"], self.uv_proj, self.env)
        theirs = installed(site_packages(self.uv_proj / ".venv"))
        ours = {(w.name, w.version) for w in self.wheels}
        if theirs != ours:
            self.result.notes.append(
                "environments differ: only cpk "
                f"{sorted(ours - theirs)}, only uv {sorted(theirs - ours)}"
            )
        script = self.work / "import_all.py"
        script.write_text("".join(f"import {name}\n" for name in self.imports))
        self.script = script
        self.result.notes.append(
            f"bytecode: cpk {pyc_mode(self.home / 'store')} .pyc in the store; "
            f"uv {pyc_mode(site_packages(self.uv_proj / '.venv'))} .pyc "
            "(uv sync --compile-bytecode); PYTHONDONTWRITEBYTECODE=1 for both"
        )

    def cpk_env(self) -> Path:
        return Path(os.path.realpath(self.cpk_proj / ".venv"))

    # 1 and 2: warm timings

    def startup(self) -> None:
        log(f"{self.result.label}: start-up, cpk run / uv run / bin/python")
        cpk_python = str(self.cpk_env() / "bin" / "python")
        uv_python = str(self.uv_proj / ".venv" / "bin" / "python")
        medians = interleaved(
            {
                "cpk-python": ([cpk_python, "-c", "pass"], self.cpk_proj),
                "cpk-run": ([*self.cpk, "run", "python", "-c", "pass"], self.cpk_proj),
                "cpk-run-checkout": (
                    [*checkout_cpk(), "run", "python", "-c", "pass"],
                    self.cpk_proj,
                ),
                "uv-python": ([uv_python, "-c", "pass"], self.uv_proj),
                "uv-run": ([*self.uv, "run", "python", "-c", "pass"], self.uv_proj),
            },
            self.env,
            self.args.runs,
            self.args.reps,
            self.result.label,
        )
        self.result.times.update(medians)

    def imports_time(self) -> None:
        log(f"{self.result.label}: importing {len(self.imports)} packages")
        cpk_python = str(self.cpk_env() / "bin" / "python")
        uv_python = str(self.uv_proj / ".venv" / "bin" / "python")
        commands = {
            "cpk-import": ([cpk_python, str(self.script)], self.work),
            "uv-import": ([uv_python, str(self.script)], self.work),
        }
        # The shared view under the project's overlay, on its own.
        view = self.cpk_env() / ".cpk" / "view"
        if view.is_symlink():
            commands["cpk-view-import"] = ([str(view / "bin" / "python"), str(self.script)],
                                           self.work)  # fmt: skip
        medians = interleaved(
            commands,
            self.env,
            self.args.runs,
            self.args.reps,
            self.result.label,
        )
        self.result.times.update(medians)

    # 3: building from a warm store / cache

    def cold_views(self) -> None:
        log(f"{self.result.label}: environments from a warm store / cache")

        def cpk_cold(*areas: str, memo: bool = True, tool: list[str] | None = None,
                     plans: bool = True) -> float:  # fmt: skip
            for name in ("views", "envs", *areas):
                if (self.home / name).exists():
                    remove_tree(self.home / name)
            if not plans:  # the views' plans in the pool: the builder makes them
                for plan in (self.home / "links").glob("v-*"):
                    plan.unlink()
            (self.cpk_proj / ".venv").unlink(missing_ok=True)
            # The baseline keeps its own cache (memos, parsed locks,
            # interpreter facts), so neither side deletes the other's memo.
            env = self.env if tool is None else self.base_env
            if not memo:  # the full path: plan from the project and its lock
                shutil.rmtree(Path(env["CPK_CACHE_DIR"]) / "run-memo", ignore_errors=True)
            return timed([*(tool or self.cpk), "run", "python", "-c", "pass"], self.cpk_proj, env)

        def uv_cold(*extra: str) -> float:
            shutil.rmtree(self.uv_proj / ".venv", ignore_errors=True)
            return timed([*self.uv, "sync", *extra], self.uv_proj, self.env)

        # The floor of cpk's row: the two interpreters it starts (its own,
        # then the environment's for ``python -c pass``), timed between;
        # its own start measured bare (-I -S: no site, no .pth) and with its
        # site, since which one a user's install gets depends on how it was
        # installed. At a few tiny packages uv's whole sync can be below it.
        tool_python = str(Path(self.cpk[0]).parent / "python")
        env_python = str(self.cpk_proj / ".venv" / "bin" / "python")

        def floor(*flags: str) -> float:
            wall = timed([tool_python, *flags, "-c", "pass"], self.cpk_proj, self.env)
            cpu = LAST_CPU[0]
            wall += timed([env_python, "-c", "pass"], self.cpk_proj, self.env)
            LAST_CPU[0] += cpu
            return wall

        label = self.result.label
        keys = ["cpk-view", "uv-sync", "uv-sync-pyc", "cpk-view-nopool", "cpk-view-noplan",
                "cpk-view-floor", "cpk-view-floor-bare", "python-bare",
                "cpk-view-nomemo"]  # fmt: skip
        if self.baseline:
            keys += ["base-view", "base-view-nomemo"]
            cpk_cold(memo=False, tool=self.baseline)  # its cache warmed once, as ours was
        samples: dict[str, list[float]] = {k: [] for k in keys}

        def sample(key: str, wall: float) -> None:
            samples[key].append(record(f"{label}:{key}", wall))

        for _ in range(self.args.runs):
            sample("cpk-view", cpk_cold())
            sample("cpk-view-floor", floor())
            sample("cpk-view-floor-bare", floor("-I", "-S"))
            sample("python-bare", timed([tool_python, "-I", "-S", "-c", "pass"],
                                        self.cpk_proj, self.env))  # fmt: skip
            sample("uv-sync", uv_cold())
            if self.baseline:
                # The same two rows with the baseline checkout's cpk, between.
                sample("base-view", cpk_cold(tool=self.baseline))
                sample("base-view-nomemo", cpk_cold(memo=False, tool=self.baseline))
            samples["uv-sync-pyc"].append(uv_cold("--compile-bytecode"))
            # The link pool is made when wheels enter the store; without it
            # the first view of these entries makes every symlink itself.
            sample("cpk-view-nopool", cpk_cold("links"))
            # Without the views' plans: the builder, from the memo's recipe.
            sample("cpk-view-noplan", cpk_cold(plans=False))
            # Without the run memo (a project never run here): the full path.
            sample("cpk-view-nomemo", cpk_cold(memo=False))
        self.result.times.update({k: statistics.median(v) for k, v in samples.items()})

    # 4: ten projects with the same lock

    def ten_projects(self) -> None:
        log(f"{self.result.label}: {PROJECTS} projects each for cpk, uv and pip")
        disk = self.result.disk
        # Only the store (and the caches) stay: whatever else is under
        # CPK_HOME afterwards was made for the ten projects.
        for child in self.home.iterdir():
            if child.name == "store":
                continue
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            else:
                child.unlink()
        (self.cpk_proj / ".venv").unlink(missing_ok=True)
        cpk_dirs = []
        for i in range(PROJECTS):
            d = self.work / f"cpk-p{i}"  # beside cpk-proj: relative find-links paths hold
            d.mkdir()
            shutil.copy(self.cpk_proj / "pyproject.toml", d)
            shutil.copy(self.cpk_proj / "pylock.toml", d)
            run([*self.cpk, "run", "python", "-c", "import sys"], d, self.env)
            cpk_dirs.append(d)
        seen: set[tuple[int, int]] = set()
        disk["cpk-shared"] = usage([self.home / "store", self.work / "cpk-cache"], seen)
        extra = [c for c in self.home.iterdir() if c.name != "store"]
        disk["cpk-projects"] = usage([*extra, *cpk_dirs], seen)

        uv_dirs = []
        for i in range(PROJECTS):
            d = self.work / f"uv-p{i}"
            d.mkdir()
            (d / "pyproject.toml").write_text(self.uv_pyproject)
            shutil.copy(self.uv_proj / "uv.lock", d)
            run([*self.uv, "sync", "--locked"], d, self.env)
            uv_dirs.append(d)
        seen = set()
        disk["uv-plain"] = usage([self.work / "uv-cache", *uv_dirs], seen)
        for d in uv_dirs:
            run([*self.uv, "sync", "--locked", "--compile-bytecode"], d, self.env)
        seen = set()
        disk["uv-pyc"] = usage([self.work / "uv-cache", *uv_dirs], seen)

        files = [str(p) for p in fetch_wheels(self.wheels, self.work / "pip-wheels")]
        bare = self.work / "bare-venv"
        run([sys.executable, "-m", "venv", str(bare)], self.work, self.env)
        disk["bare-venv"] = usage([bare], set())

        def pip_venv(i: int) -> Path:
            d = self.work / f"pip-p{i}"
            run([sys.executable, "-m", "venv", str(d)], self.work, self.env)
            pip = [str(d / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index"]
            run([*pip, *files], self.work, self.env)
            return d

        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            pip_dirs = list(pool.map(pip_venv, range(PROJECTS)))
        disk["pip"] = usage(pip_dirs, set())
        pip_mode = pyc_mode(site_packages(pip_dirs[0]))
        self.result.notes.append(f"pip venvs hold {pip_mode} .pyc (pip install compiles)")

    def all(self) -> Results:
        self.setup()
        self.startup()
        self.imports_time()
        self.cold_views()
        if not self.args.skip_disk:
            self.ten_projects()
        return self.result


# --- report -------------------------------------------------------------------------


def ms(seconds: float, sign: bool = False) -> str:
    if abs(seconds) >= 1:
        return f"{seconds:+.2f} s" if sign else f"{seconds:.2f} s"
    return f"{seconds * 1000:+.1f} ms" if sign else f"{seconds * 1000:.1f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _stats(key: str) -> tuple[float, float, float]:
    values = SAMPLES.get(key) or [float("nan")]
    return statistics.median(values), min(values), max(values)


def cpu_rows(label: str, w: int) -> None:
    """The same measures in CPU time (user + system, children included),
    and each wall time's min-max: the machine's noise, side by side."""
    head = f"{'  CPU time, medians':<{w}} {'cpk':>10} {'uv':>10} {'cpk/uv':>7}"
    print(f"{head}  wall min-max cpk | uv")

    def line(name: str, ours: str, theirs: str, base_ours: str = "", base_theirs: str = "") -> None:
        c, u = _stats(f"cpu:{label}:{ours}")[0], _stats(f"cpu:{label}:{theirs}")[0]
        if base_ours:
            c -= _stats(f"cpu:{label}:{base_ours}")[0]
            u -= _stats(f"cpu:{label}:{base_theirs}")[0]
        _, cmin, cmax = _stats(f"{label}:{ours}")
        _, umin, umax = _stats(f"{label}:{theirs}")
        spread = f"{ms(cmin)}-{ms(cmax)} | {ms(umin)}-{ms(umax)}"
        print(f"  {name:<{w - 2}} {ms(c):>10} {ms(u):>10} {ratio(c, u):>7}  {spread}")

    line("run overhead over bin/python", "cpk-run", "uv-run", "cpk-python", "uv-python")
    line("import every top-level package", "cpk-import", "uv-import")
    line("env from warm store / uv sync", "cpk-view", "uv-sync")
    line("  cpk without its run memo [g]", "cpk-view-nomemo", "uv-sync")
    line("  cpk without the views' plans [i]", "cpk-view-noplan", "uv-sync")
    if f"cpu:{label}:base-view" in SAMPLES:
        line("  baseline checkout [h]", "base-view", "uv-sync")
        line("  baseline checkout without its memo [h]", "base-view-nomemo", "uv-sync")
    line("  floor: cpk's python + env's python [f]", "cpk-view-floor", "uv-sync")
    line("  floor: same, cpk's as -I -S [f]", "cpk-view-floor-bare", "uv-sync")


def report(results: Sequence[Results], args: argparse.Namespace) -> None:
    w = 46

    def row(label: str, a: float | None, b: float, goal: str = "", sign: bool = False) -> None:
        left = ms(a, sign) if a is not None else ""
        rel = ratio(a, b) if a is not None else ""
        print(f"{label:<{w}} {left:>10} {ms(b, sign):>10} {rel:>7}  {goal}".rstrip())

    for r in results:
        t = r.times
        print(f"\n== {r.label} ({r.locked} locked packages) ==")
        print(f"{'measure':<{w}} {'cpk':>10} {'uv':>10} {'cpk/uv':>7}  goal")
        row("env's own bin/python -c pass", t["cpk-python"], t["uv-python"])
        row("cpk run / uv run python -c pass", t["cpk-run"], t["uv-run"])
        over_c = t["cpk-run"] - t["cpk-python"]
        over_u = t["uv-run"] - t["uv-python"]
        row("  run overhead over bin/python", over_c, over_u, "<= 1x", sign=True)
        over_k = t["cpk-run-checkout"] - t["cpk-python"]
        row("  same, the checkout's src/ on its python [a]", over_k, over_u, sign=True)
        row("import every top-level package [b]", t["cpk-import"], t["uv-import"], "<= 1.02x")
        if "cpk-view-import" in t:
            row("  the shared view alone, no overlay", t["cpk-view-import"], t["uv-import"])
        row("env from warm store: cpk run / uv sync [c]", t["cpk-view"], t["uv-sync"], "<= 0.25x")
        row("  against uv sync --compile-bytecode", t["cpk-view"], t["uv-sync-pyc"])
        row("  cpk with the link pool deleted too [e]", t["cpk-view-nopool"], t["uv-sync"])
        row("  cpk with the views' plans deleted too [i]", t["cpk-view-noplan"], t["uv-sync"])
        row("  cpk with its run memo deleted too [g]", t["cpk-view-nomemo"], t["uv-sync"])
        if "base-view" in t:
            row("  baseline checkout's cpk [h]", t["base-view"], t["uv-sync"])
            row("  baseline, run memo deleted too [h]", t["base-view-nomemo"], t["uv-sync"])
        row("  floor: cpk's python + the env's python [f]", t["cpk-view-floor"], t["uv-sync"])
        row("  floor: same, cpk's python -I -S [f]", t["cpk-view-floor-bare"], t["uv-sync"])
        row("  floor: python -I -S -c pass alone", t["python-bare"], t["uv-sync"])
        above = t["cpk-view"] - t["cpk-view-floor"]
        row("  cpk above its floor", above, t["uv-sync"], sign=True)
        above = t["cpk-view-nomemo"] - t["cpk-view-floor"]
        row("  cpk without its memo, above its floor", above, t["uv-sync"], sign=True)
        cpu_rows(r.label, w)
        d = r.disk
        if not d:
            for note in r.notes:
                print(f"  note: {note}")
            continue
        cpk_b = d["cpk-shared"][0] + d["cpk-projects"][0]
        cpk_i = d["cpk-shared"][1] + d["cpk-projects"][1]
        print(f"{f'{PROJECTS} projects, same lock [d]':<{w}} {'MiB':>10} {'inodes':>10}  cpk/x")
        disk_rows = [
            ("cpk: store + cache (shared, once)", *d["cpk-shared"], False),
            (f"cpk: views, envs, roots + {PROJECTS} project dirs", *d["cpk-projects"], False),
            ("cpk: total", cpk_b, cpk_i, False),
            (f"uv: cache + {PROJECTS} projects (bytecode)", *d["uv-pyc"], True),
            (f"uv: cache + {PROJECTS} projects (no bytecode)", *d["uv-plain"], True),
            (f"pip: {PROJECTS} venvs (with bytecode)", *d["pip"], True),
        ]
        for label, b, i, compare in disk_rows:
            rel = f"{cpk_b / b:.2f}x bytes, {cpk_i / i:.2f}x inodes" if compare else ""
            print(f"  {label:<{w - 2}} {b / MIB:>10.1f} {i:>10}  {rel}".rstrip())
        bare_b, bare_i = d["bare-venv"]
        r.notes.append(
            f"each pip venv includes a bare `python -m venv` with pip: "
            f"{bare_b / MIB:.1f} MiB, {bare_i} inodes"
        )
        for note in r.notes:
            print(f"  note: {note}")
    print(
        f"\nmedians: start-up and imports of {args.runs}x{args.reps} interleaved samples, "
        f"builds of {args.runs}; ratios are cpk / uv (or cpk / x)\n"
        "cpk runs from its own virtualenv, byte-compiled, as an installed tool would\n"
        "[a] this checkout's src/ run by this interpreter: its site-packages .pth files run at\n"
        "    its start, and any module edited since its bytecode was written is compiled again\n"
        "[b] each env's bin/python on one script; the projects have no [build-system], so\n"
        "    both treat them as virtual: cpk runs in the shared view, uv in its .venv\n"
        "[c] views/ and envs/ deleted, store kept, then `cpk run python -c pass` (which\n"
        "    includes starting python); .venv deleted, cache kept, then `uv sync`\n"
        "[d] st_blocks * 512 and inodes, each inode once (hard links), symlinks not followed\n"
        "[e] the pool of shared symlinks (links/ under CPK_HOME) is made when wheels enter the\n"
        "    store and kept with it; this row deletes it too, so the view makes every symlink\n"
        "[f] what cpk's row cannot go below: starting its own interpreter (`python -c pass`\n"
        "    with the tool's site, or bare with -I -S) and then the env's `bin/python -c pass`,\n"
        "    timed beside it; where uv's sync is close to it, no Python tool can reach the goal\n"
        "[c], [g] with the inputs unchanged, the run memo (in the cache) rebuilds the deleted\n"
        "    view from its recipe; [g] deletes the memo too: the full path, as for a project\n"
        "    never run on this machine (parser, project, lock, source lookups)\n"
        "[i] a built view leaves its plan in the pool (links/v-<key>: its directories and the\n"
        "    pool names it links); [c] makes the deleted view from it, this row deletes the\n"
        "    plans too, so the view is built from the entries as the first time"
        + (
            f"\n[h] the same rows with {args.baseline}'s cpk (own cache), timed between these"
            if args.baseline is not None
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (and builds) per timing")
    parser.add_argument("--reps", type=int, default=10, help="samples per round, small timings")
    parser.add_argument("--synthetic", type=int, default=500, help="packages in the synthetic set")
    parser.add_argument("--skip-network", action="store_true", help="only the synthetic set")
    parser.add_argument("--skip-disk", action="store_true", help="leave out the ten-project rows")
    parser.add_argument(
        "--baseline", type=Path, metavar="CHECKOUT",
        help="another checkout (e.g. `git worktree add` of main): its cpk's environment rows "
        "are timed between this one's, as before/after in the same run",
    )  # fmt: skip
    args = parser.parse_args()

    uv_version = run([*uv_command(), "--version"], Path.cwd(), dict(os.environ)).strip()
    print(f"cpk run bench: cpk (this checkout) vs {uv_version}, CPython {sys.version.split()[0]}")
    results: list[Results] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cpk-bench-run-") as tmp:
            work = Path(tmp)
            # File creation costs differ by an order of magnitude between
            # directories of one disk: both tools write under this one.
            print(f"cpk's and uv's environments, stores and caches are all under {work.parent}")
            try:
                cpk = install_cpk(work / "cpk-tool")
                base = None
                if args.baseline is not None:
                    base = install_cpk(work / "base-tool", args.baseline / "src" / "contentpkg")
                if not args.skip_network:
                    case_dir = work / "pypi"
                    case_dir.mkdir()
                    label = f"{len(NETWORK_DEPENDENCIES)}-package project from PyPI"
                    deps, imports = NETWORK_DEPENDENCIES, NETWORK_IMPORTS
                    case = Case(case_dir, label, deps, imports, None, cpk, args, base)
                    results.append(case.all())
                case_dir = work / "synthetic"
                links = case_dir / "wheels"
                log(f"building {args.synthetic} synthetic wheels")
                deps, imports = build_synthetic(links, args.synthetic)
                label = f"synthetic project of {args.synthetic} packages"
                results.append(Case(case_dir, label, deps, imports, links, cpk, args, base).all())
            finally:
                # Store entries are read-only; TemporaryDirectory cannot remove them.
                for home in work.glob("*/cpk-home"):
                    remove_tree(home)
    except BenchError as exc:
        if results:
            report(results, args)
        sys.exit(f"bench/python_run.py: {exc}")
    report(results, args)


if __name__ == "__main__":
    main()
