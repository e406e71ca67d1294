"""Against the real PyPI (marked network; run with ``pytest -m network``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from support.cli import run_cpk

pytestmark = pytest.mark.network

DEPENDENCIES = [
    "flask", "requests", "rich", "pydantic", "httpx", "sqlalchemy", "pytest",
    "black", "jinja2", "click", "attrs", "numpy", "pyyaml", "boto3",
]  # fmt: skip


def test_lock_and_sync_match_uv(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (it is in the test extras)")
    project = tmp_path / "app"
    project.mkdir()
    deps = "".join(f'  "{d}",\n' for d in DEPENDENCIES)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "0"\ndependencies = [\n{deps}]\n'
    )
    run_cpk("lock", cwd=project, check=True)
    lock = tomllib.loads((project / "pylock.toml").read_text())
    # The universal lock: as uv locks the same project (every Python from
    # this one up, every platform), version for version.
    universal = {(p["name"], p["version"]) for p in lock["packages"]}
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(project / "pyproject.toml", twin / "pyproject.toml")
    subprocess.run(
        [uv, "export", "--quiet", "--format", "pylock.toml", "-o", "pylock.toml",
         "--python", sys.executable],
        cwd=twin, capture_output=True, text=True, check=True,
    )  # fmt: skip
    exported = tomllib.loads((twin / "pylock.toml").read_text())
    assert universal == {
        (p["name"], p["version"]) for p in exported["packages"] if p["name"] != "app"
    }
    # What installs here: the packages whose markers hold for this interpreter.
    env = {**default_environment(), "extras": frozenset(), "dependency_groups": frozenset()}
    ours = {
        (p["name"], p["version"])
        for p in lock["packages"]
        if "marker" not in p or Marker(p["marker"]).evaluate(env, context="lock_file")
    }

    (tmp_path / "req.in").write_text("\n".join(DEPENDENCIES) + "\n")
    out = subprocess.run(
        [uv, "pip", "compile", str(tmp_path / "req.in"), "--python", sys.executable,
         "--no-header", "--no-annotate", "--quiet"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    theirs = set()
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split(";")[0].strip().split("==")
            theirs.add((name.lower().replace("_", "-").replace(".", "-"), version))
    assert ours == theirs

    sync = run_cpk("sync", cwd=project, check=True)
    assert "numpy" in sync.stdout + sync.stderr
    # Everything is in the store now: a second sync needs no network at all.
    again = run_cpk("sync", "--offline", cwd=project, check=True)
    assert again.returncode == 0
    assert run_cpk("store", "verify").returncode == 0


def test_cpk_run_pytest_from_an_empty_store(tmp_path: Path) -> None:
    project = tmp_path / "app"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\ndependencies = ["rich>=13", "attrs"]\n'
        '[dependency-groups]\ndev = ["pytest>=8"]\n'
    )
    (project / "tests" / "test_app.py").write_text(
        "import attrs, rich\n\n"
        "def test_versions():\n"
        "    assert rich.__file__ and attrs.__version__\n"
    )
    proc = run_cpk("run", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    # Warm: the same run again needs no network at all.
    again = run_cpk("run", "--offline", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert again.returncode == 0 and "1 passed" in again.stdout
