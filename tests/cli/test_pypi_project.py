"""cpk init/add/export against the real PyPI, beside uv (marked network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_cpk

pytestmark = pytest.mark.network


def _pins(text: str) -> set[str]:
    """name==version of each requirement line of a requirements.txt."""
    pins = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "--", "-e")) and "==" in line:
            pins.add(line.split(";")[0].split(" ")[0].strip().lower())
    return pins


def test_add_then_export_matches_uv(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (it is in the test extras)")
    ours = tmp_path / "ours"
    run_cpk("init", ours, "--name", "demo", check=True)
    run_cpk("add", "httpx", "rich", cwd=ours, check=True)
    exported = run_cpk("export", "--frozen", cwd=ours, check=True).stdout
    assert "--hash=sha256:" in exported

    theirs = tmp_path / "theirs"
    env = {**os.environ, "UV_PYTHON": sys.executable}
    subprocess.run([uv, "init", "--quiet", "--name", "demo", str(theirs)], check=True, env=env)
    subprocess.run([uv, "add", "--quiet", "httpx", "rich"], cwd=theirs, check=True, env=env)
    uv_export = subprocess.run(
        [uv, "export", "--quiet", "--no-header", "--no-emit-project", "--no-hashes"],
        cwd=theirs,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # uv's lock is universal (it adds e.g. exceptiongroup for old Pythons);
    # every package cpk picked for this interpreter is in uv's, same version.
    assert _pins(exported) <= _pins(uv_export), (_pins(exported), _pins(uv_export))
