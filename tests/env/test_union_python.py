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
    "print(sum(m.split()[4] == site for m in mounts))\n"
    "print(os.stat(beta.__file__).st_ino)\n"
    "print([m.split(' - ')[1].split()[0] for m in mounts if m.split()[4] == site])\n"
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
    # reaches through its link), one merged directory bound over the view's
    # (a plain directory of the store's file system, not an overlay).
    (entry,) = (Path(env["CPK_HOME"]) / "store").glob("beta,2.0,*")
    stored = next(entry.rglob("beta/__init__.py"))
    assert union.stdout.splitlines()[3] == view.stdout.splitlines()[3] == str(stored.stat().st_ino)
    assert stored.stat().st_nlink >= 2
    fstype = os.popen(f"findmnt -no FSTYPE -T {stored}").read().strip() or "ext4"
    assert union.stdout.splitlines()[4] == str([fstype])
    # And twice: a union run writes no memo that a warm run would take
    # without entering the union.
    again = _run(proj, env, "--union", "python", "-c", CHECK)
    assert again.stdout.splitlines()[1:3] == ["dir", "1"]
    plain = _run(proj, env, "python", "-c", CHECK)
    assert plain.stdout.splitlines()[1:3] == ["link", "0"]
    # One merged site, cached: both union runs used it.
    sites = list((Path(env["CPK_HOME"]) / "unions").glob("site-*"))
    assert len(sites) == 1


def test_a_running_union_holds_its_merged_site_against_gc(project) -> None:
    proj, env = project
    wait = "import alpha, sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-m", "contentpkg", "run", "--union", "python", "-c", wait],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=proj,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    home = Path(env["CPK_HOME"])
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        (site,) = (home / "unions").glob("site-*")
        os.unlink(home / "roots" / f"union-{site.name}")
        gc = subprocess.run([sys.executable, "-m", "contentpkg", "store", "gc"], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
        assert gc.returncode == 0, gc.stderr
        assert f"kept unions/{site.name}: no root reaches it" in gc.stderr
        assert site.is_dir()
    finally:
        proc.communicate("", timeout=60)
    assert proc.returncode == 0
    subprocess.run([sys.executable, "-m", "contentpkg", "store", "gc"], env=env,
                   capture_output=True, check=True, timeout=120)  # fmt: skip
    assert not site.exists()


FALLBACK = (
    "import os, sys\n"
    "from pathlib import Path\n"
    "from contentpkg.env.union.sites import mount_site_packages\n"
    "env = Path(sys.argv[1])\n"
    "print(mount_site_packages(env))\n"
    "site = str(sorted(env.resolve().glob('lib/python*/site-packages'))[0])\n"
    "mounts = open('/proc/self/mountinfo').read().splitlines()\n"
    "print([m.split(' - ')[1].split()[0] for m in mounts if m.split()[4] == site])\n"
    "sys.path.insert(0, site)\n"
    "import beta\n"
    "print(beta.NAME, os.path.islink(os.path.join(site, 'beta')))\n"
)


def test_without_a_merged_site_each_entry_is_an_overlay_layer(project) -> None:
    # What a store on another file system gets: the entries' own
    # site-packages as overlay layers above the view's, no hard links.
    proj, env = project
    assert _run(proj, env, "python", "-c", "pass").returncode == 0
    (view,) = (Path(env["CPK_HOME"]) / "views").iterdir()
    run = subprocess.run([sys.executable, "-c", FALLBACK, str(view)], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["2", "['overlay']", "beta False"]
