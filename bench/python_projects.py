"""Benchmark: real projects' own test suites under ``cpk run`` and ``uv run``.

For each project (one per kind of build backend), the sdist is downloaded
from PyPI and unpacked twice; its own tests run under ``uv run ... pytest``
in one copy and ``cpk run ... pytest`` in the other, with the same selection
(``--with``, ``--extra`` or ``--group``), each tool with an empty cache and
store first (cold) and then again (warm). The table gives pass/fail/skip
counts side by side and both wall times. Equal counts are the goal; a
project whose compiled extension must be importable is checked for it
under cpk too.

Needs network access to PyPI, ``uv`` on PATH, ``cc`` (and ``cargo`` for the
maturin project, skipped without it).

    python bench/python_projects.py [--only NAME ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.fs import remove_tree  # store entries are read-only


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    kind: str
    #: The selection, as both tools spell it.
    selection: tuple[str, ...] = ("--with", "pytest")
    #: pytest's arguments (the test directory or files).
    tests: tuple[str, ...] = ("tests",)
    #: Python code that must run in cpk's environment (an extension's import).
    check: str | None = None
    needs: tuple[str, ...] = field(default=())


PROJECTS = [
    Project(
        "markupsafe", "2.1.5", "setuptools + C extension",
        check="import markupsafe._speedups", needs=("cc",),
    ),
    Project("six", "1.16.0", "setup.py/setup.cfg only", tests=("test_six.py",)),
    Project(
        "tomlkit", "0.13.2", "poetry-core", selection=("--with", "pytest", "--with", "pyyaml")
    ),
    Project(
        "platformdirs", "4.3.6", "hatchling + hatch-vcs",
        selection=("--with", "pytest", "--with", "pytest-mock", "--with", "appdirs"),
    ),
    Project(
        "referencing", "0.35.1", "hatchling + hatch-vcs", tests=("referencing/tests",)
    ),
    Project(
        "packaging", "24.2", "flit-core", selection=("--with", "pytest", "--with", "pretend")
    ),
    Project("dep-logic", "0.4.9", "pdm-backend"),
    Project("pluggy", "1.5.0", "setuptools-scm", tests=("testing",)),
    Project(
        "rpds-py", "0.20.0", "maturin (Rust)",
        selection=("--with", "pytest"), check="import rpds", needs=("cargo",),
    ),
]  # fmt: skip

_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def sdist_url(name: str, version: str) -> str:
    """The sdist's URL, from PyPI's JSON simple API (PEP 691)."""
    req = urllib.request.Request(
        f"https://pypi.org/simple/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    for f in files:
        filename = f["filename"]
        if filename.endswith(".tar.gz") and re.search(
            rf"-{re.escape(version)}\.tar\.gz$", filename
        ):
            return f["url"]
    raise SystemExit(f"{name} {version}: no sdist on PyPI")


def unpack(url: str, dest: Path) -> Path:
    archive = dest / "sdist.tar.gz"
    with urllib.request.urlopen(url, timeout=120) as resp, open(archive, "wb") as out:
        shutil.copyfileobj(resp, out)
    roots = []
    for copy in ("uv", "cpk"):
        target = dest / copy
        target.mkdir()
        with tarfile.open(archive) as tf:
            tf.extractall(target, filter="data")
        (top,) = list(target.iterdir())
        roots.append(top)
    return roots[0]


def counts(output: str) -> str:
    """pytest's summary as passed/failed/skipped (errors added to failed)."""
    found = {"passed": 0, "failed": 0, "skipped": 0}
    tail = "\n".join(output.splitlines()[-5:])
    for number, what in _COUNTS.findall(tail):
        key = "failed" if what.startswith("error") else what
        if key in found:
            found[key] += int(number)
    if not any(found.values()):
        return "no run"
    return f"{found['passed']}/{found['failed']}/{found['skipped']}"


def _uv_project_args(root: Path) -> list[str]:
    import tomllib

    try:
        data = tomllib.loads((root / "pyproject.toml").read_text())
    except FileNotFoundError:
        data = {}
    return [] if "project" in data else ["--with-editable", "."]


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}  (exit {proc.returncode}, {elapsed:.1f}s)\n{text}\n")
    return elapsed, text


def bench(project: Project, work: Path) -> dict[str, str]:
    missing = [tool for tool in project.needs if shutil.which(tool) is None]
    if missing:
        return {"note": f"skipped: no {', '.join(missing)}"}
    dest = work / project.name
    dest.mkdir()
    uv_root = unpack(sdist_url(project.name, project.version), dest)
    cpk_root = dest / "cpk" / uv_root.name
    log = dest / "log.txt"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "CPK_", "VIRTUAL_ENV"))}
    uv_env = {**base, "UV_CACHE_DIR": str(dest / "uv-cache"), "UV_PYTHON": sys.executable}
    cpk_env = {**base, "CPK_HOME": str(dest / "cpk-home"), "CPK_CACHE_DIR": str(dest / "cpk-cache")}
    pytest = ["pytest", "-q", "-p", "no:cacheprovider", *project.tests]
    # uv takes only a pyproject.toml with a [project] table for a project
    # (else it runs the base interpreter's packages, testing something
    # else): it is given the checkout explicitly; cpk finds it itself.
    uv_cmd = ["uv", "run", *_uv_project_args(uv_root), *project.selection, *pytest]
    cpk_cmd = [sys.executable, "-m", "contentpkg", "run", *project.selection, *pytest]
    row: dict[str, str] = {}
    runs = (("uv", uv_cmd, uv_root, uv_env), ("cpk", cpk_cmd, cpk_root, cpk_env))
    for tool, cmd, root, env in runs:
        cold, out = timed(cmd, root, env, log)
        warm, out = timed(cmd, root, env, log)
        row[tool] = counts(out)
        row[f"{tool} cold"] = f"{cold:.1f}s"
        row[f"{tool} warm"] = f"{warm:.1f}s"
    if project.check:
        check = [sys.executable, "-m", "contentpkg", "run", *project.selection, "python", "-c"]
        proc = subprocess.run([*check, project.check], cwd=cpk_root, env=cpk_env,
                              capture_output=True, text=True)  # fmt: skip
        row["check"] = "ok" if proc.returncode == 0 else "FAILED"
    row["note"] = "same" if row["uv"] == row["cpk"] else "DIFFERENT"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="project names to run")
    parser.add_argument("--keep", type=Path, help="work here and keep it (logs, copies)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cpk-bench-projects-"))
    work.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in PROJECTS if not args.only or p.name in args.only]
    header = ("project", "kind", "uv p/f/s", "cpk p/f/s", "uv cold", "uv warm",
              "cpk cold", "cpk warm", "ext", "")  # fmt: skip
    print(" | ".join(header), flush=True)
    try:
        for project in chosen:
            try:
                row = bench(project, work)
            except Exception as exc:  # one project's failure must not hide the others
                row = {"note": f"bench error: {exc}"}
            cells = (f"{project.name} {project.version}", project.kind, row.get("uv", "-"),
                     row.get("cpk", "-"), row.get("uv cold", "-"), row.get("uv warm", "-"),
                     row.get("cpk cold", "-"), row.get("cpk warm", "-"), row.get("check", "-"),
                     row.get("note", ""))  # fmt: skip
            print(" | ".join(cells), flush=True)
    finally:
        if args.keep is None:
            remove_tree(work)
        else:
            print(f"logs: {work}/<project>/log.txt", file=sys.stderr)


if __name__ == "__main__":
    main()
