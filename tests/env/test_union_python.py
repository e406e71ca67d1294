"""``cpk run --union``: a project's locked entries overlaid into one site-packages.

Run as the suite's own user: resolving and locking need the interpreter's
third-party libraries, which an unprivileged user cannot read where the
interpreter lives in root's home, and root without its capabilities cannot
map uid 0 into a namespace. The union is still made in a user namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.index import LocalIndex
from tests.support.processes import userns_unavailable
from tests.support.wheels import make_wheel

SRC = Path(__file__).resolve().parents[2] / "src"

CHECK = (
    "import alpha, beta, os, importlib.metadata as md\n"
    "site = os.path.dirname(os.path.dirname(beta.__file__))\n"
    "print(beta.NAME, alpha.__version__, md.version('beta'))\n"
    "print('link' if os.path.islink(os.path.join(site, 'beta')) else 'dir')\n"
    "mounts = open('/proc/self/mountinfo').read().splitlines()\n"
    "print(sum(' - overlay ' in m and m.split()[4] == site for m in mounts))\n"
    "print(os.stat(beta.__file__).st_ino)\n"
    "print([m.count('lowerdir') for m in mounts if ' - overlay ' in m and m.split()[4] == site])\n"
)


@pytest.fixture
def project(tmp_path: Path):
    why = userns_unavailable()
    if why:
        pytest.skip(why)
    dists = tmp_path / "dists"
    dists.mkdir()
    make_wheel(dists, "alpha", "1.0")
    make_wheel(dists, "beta", "2.0", files={"beta/__init__.py": "NAME = 'beta'\n"})
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["alpha", "beta"]\n'
    )
    with LocalIndex(dists) as index:
        env = dict(
            os.environ,
            CPK_HOME=str(tmp_path / "home"),
            CPK_CACHE_DIR=str(tmp_path / "cache"),
            CPK_INDEX_URL=index.url,
            PYTHONPATH=str(SRC),
            HOME=str(tmp_path),
        )
        yield proj, env


def _run(proj: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contentpkg", "run", *args],
        capture_output=True, text=True, env=env, cwd=proj, timeout=120,
    )  # fmt: skip


def test_run_union_overlays_the_locked_entries(project) -> None:
    proj, env = project
    view = _run(proj, env, "python", "-c", CHECK)
    assert view.returncode == 0, view.stderr
    assert view.stdout.splitlines()[:3] == ["beta 1.0 2.0", "link", "0"]
    union = _run(proj, env, "--union", "python", "-c", CHECK)
    assert union.returncode == 0, union.stderr
    # The same packages, now real directories of one overlaid site-packages.
    assert union.stdout.splitlines()[:3] == ["beta 1.0 2.0", "dir", "1"]
    # Made of the store's own files (hard links: the same inode as the view
    # reaches through its link), in one merged lower above an empty layer.
    (entry,) = (Path(env["CPK_HOME"]) / "store").glob("beta,2.0,*")
    stored = next(entry.rglob("beta/__init__.py"))
    assert union.stdout.splitlines()[3] == view.stdout.splitlines()[3] == str(stored.stat().st_ino)
    assert stored.stat().st_nlink >= 2
    assert union.stdout.splitlines()[4] == "[2]"
    # And twice: a union run writes no memo that a warm run would take
    # without entering the union.
    again = _run(proj, env, "--union", "python", "-c", CHECK)
    assert again.stdout.splitlines()[1:3] == ["dir", "1"]
    plain = _run(proj, env, "python", "-c", CHECK)
    assert plain.stdout.splitlines()[1:3] == ["link", "0"]
    # One merged site, cached: both union runs used it.
    sites = list((Path(env["CPK_HOME"]) / "unions").glob("site-*"))
    assert len(sites) == 1
