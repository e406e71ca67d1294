"""A real Debian program, fetched by cpk, run unmodified in a union (network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.env.test_union import NOBODY, _as_user, _env, sandbox, usable  # noqa: F401

pytestmark = pytest.mark.network

PAGE = ".TH HELLO 1\n.SH NAME\nhello \\- say hello\n.SH DESCRIPTION\nHello from a union.\n"


def test_groff_renders_a_man_page_to_postscript(sandbox: Path) -> None:  # noqa: F811
    page = sandbox / "hello.1"
    page.write_text(PAGE)
    page.chmod(0o644)
    # Fetched by the suite's own user (the archive reader's libraries may be
    # out of an unprivileged user's reach), entered by the unprivileged one.
    # The machine's own apt sources, not the suite's empty stand-in.
    machine = {k: v for k, v in _env(sandbox).items() if k != "CPK_APT_SOURCES"}
    fetched = subprocess.run(
        [sys.executable, "-m", "contentpkg", "fetch", "--deb", "groff"],
        capture_output=True, text=True, env=machine, cwd=sandbox, timeout=900,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    if _as_user():
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(sandbox)], check=True)
    specs = sorted(p.name for p in (sandbox / "home" / "store").iterdir() if "," in p.name)
    assert any(s.startswith("groff,") for s in specs)
    script = 'groff -man -Tps hello.1 && stat -c "%i %h" "$(command -v groff)"'
    proc = subprocess.run(
        [*_as_user(), sys.executable, "-m", "contentpkg", "enter", *specs,
         "--", "sh", "-c", script],
        capture_output=True, text=True, env=_env(sandbox), cwd=sandbox, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("%!PS-Adobe-3.0")
    assert "Hello" in proc.stdout  # the text, set in a font groff's data files describe
    # groff ran from the store's own file, unmodified: the farm's hard link.
    stored = [p / "bin" / "groff" for p in (sandbox / "home" / "store").glob("groff*")]
    seen = {f"{st.st_ino} {st.st_nlink}" for st in (os.stat(p) for p in stored if p.exists())}
    ino_nlink = proc.stdout.rstrip().splitlines()[-1]
    assert ino_nlink in seen and int(ino_nlink.split()[1]) >= 2
    assert "maintainer scripts not run" in proc.stderr
