"""Hostile wheels, lock files and requirements files: one line, nothing written.

Every case builds the hostile input for real (a zip written byte by byte
where zipfile would not write it), hands it to the real ``cpk`` (or to
:func:`add_wheel`, the one door wheels come in by), and checks three
things: a non-zero exit (or a :class:`CpkError`), one line naming the
input and the problem, and a store whose snapshot is the same before and
after.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

Members = list[tuple[str, bytes]]


# -- entry-point names (defect: python/python3/.hidden dropped without a word) --


@pytest.fixture
def shadow_index(tmp_path: Path) -> LocalIndex:
    with LocalIndex(tmp_path / "dists") as index:
        make_wheel(
            index.root,
            "pyshadow",
            "1.0",
            files={"pyshadow.py": "def main():\n    print('pyshadow ran')\n"},
            entry_points={
                "console_scripts": {
                    "python": "pyshadow:main",
                    "python3": "pyshadow:main",
                    ".hidden": "pyshadow:main",
                    "shadow-tool": "pyshadow:main",
                }
            },
        )
        make_wheel(
            index.root,
            "onlypython",
            "1.0",
            files={"onlypython.py": "def main():\n    print('onlypython ran')\n"},
            entry_points={"console_scripts": {"python": "onlypython:main"}},
        )
        yield index


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


def test_view_says_which_console_scripts_it_does_not_install(
    shadow_index: LocalIndex, tmp_path: Path
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    (work / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["pyshadow"]\n'
    )
    code = "import sys, os; print(os.path.basename(sys.executable))"
    proc = run_cpk("run", "--index-url", shadow_index.url, "python", "-c", code, cwd=work)
    assert proc.returncode == 0, proc.stderr
    warned = _warnings(proc.stderr)
    for name in ("python", "python3", ".hidden"):
        hits = [w for w in warned if f"bin/{name} of pyshadow,1.0," in w]
        assert len(hits) == 1, (name, proc.stderr)
        assert "is not installed" in hits[0]
    assert not [w for w in warned if "shadow-tool" in w]
    # bin/python is still the interpreter, not the package's launcher.
    venv_python = work / ".venv" / "bin" / "python"
    out = subprocess.run(
        [str(venv_python), "-c", "print('interpreter')"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "interpreter"
    assert (work / ".venv" / "bin" / "shadow-tool").is_file()


def test_install_python_tool_never_links_an_interpreter_into_the_profile(
    shadow_index: LocalIndex, tmp_path: Path, cpk_home: Path
) -> None:
    proc = run_cpk("install", "--python", "pyshadow", "--index-url", shadow_index.url)
    assert proc.returncode == 0, proc.stderr
    bin_dir = cpk_home / "profiles" / "default" / "bin"
    assert sorted(os.listdir(bin_dir)) == ["shadow-tool"]
    warned = _warnings(proc.stderr)
    for name in ("python", "python3", ".hidden"):
        assert len([w for w in warned if f"script {name!r} is not installed" in w]) == 1, (
            proc.stderr
        )
    out = subprocess.run([str(bin_dir / "shadow-tool")], capture_output=True, text=True)
    assert out.stdout.strip() == "pyshadow ran"


def test_install_python_tool_whose_only_script_is_python_is_refused(
    shadow_index: LocalIndex, cpk_home: Path
) -> None:
    proc = run_cpk("install", "--python", "onlypython", "--index-url", shadow_index.url)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cpk: error: onlypython: ")
    assert "'python'" in lines[0] and "interpreter" in lines[0]
    assert not (cpk_home / "profiles" / "default").exists()
