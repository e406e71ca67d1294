"""The real world: Debian's jq, from its .deb files to a working env dir.

``.ci/run`` downloads the packages (``apt-get download jq libjq1 libonig5``)
into ``$CPK_TEST_DEBS``; without them the test downloads them itself, and
skips when it cannot (no apt, no network). As root, the cpk steps run as
the unprivileged user ``nobody`` when that user can reach this Python, and
otherwise with every capability dropped, so nothing relies on privileges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = ("jq", "libjq1", "libonig5")
NOBODY = 65534


def _debs_in(directory: Path) -> list[Path] | None:
    found = []
    for name in PACKAGES:
        matches = sorted(directory.glob(f"{name}_*.deb"))
        if not matches:
            return None
        found.append(matches[-1])
    return found


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    given = os.environ.get("CPK_TEST_DEBS")
    if given and (found := _debs_in(Path(given))):
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get, or the .deb files of jq in $CPK_TEST_DEBS")
    where = tmp_path_factory.mktemp("debs")
    proc = subprocess.run(
        ["apt-get", "download", *PACKAGES], cwd=where, capture_output=True, text=True
    )
    found = _debs_in(where)
    if proc.returncode != 0 or not found:
        pytest.skip(f"apt-get download {' '.join(PACKAGES)} failed: {proc.stderr.strip()[:200]}")
    return found


def _unprivileged() -> list[str]:
    """A command prefix that runs without root's privileges."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import contentpkg"], capture_output=True
    )
    if probe.returncode == 0:
        return as_nobody
    # This Python lives where nobody cannot reach (a root-only home): keep
    # the uid but drop every capability, so root's overrides are gone.
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory the unprivileged user owns (pytest's tmp is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="cpk-jq-"))
    if f"--reuid={NOBODY}" in _unprivileged():
        os.chown(root, NOBODY, NOBODY)
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _cpk(prefix: list[str], home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CPK_HOME=str(home), CPK_CACHE_DIR=str(home / "cache"))
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "contentpkg", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, f"cpk {args}: {proc.stderr}"
    return proc


def _jq_works(where: Path) -> None:
    proc = subprocess.run(
        [str(where / "bin" / "jq"), "-c", "[.items[] | select(.n > 1) | .name] | sort"],
        input='{"items": [{"name": "b", "n": 2}, {"name": "a", "n": 3}, {"name": "c", "n": 1}]}',
        capture_output=True,
        text=True,
        env=dict(os.environ, LD_DEBUG="libs"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '["a","b"]\n'
    initialised = [
        line.split("calling init: ", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if "calling init: " in line
    ]
    for soname in ("libjq.so.1", "libonig.so.5"):
        paths = [p for p in initialised if os.path.basename(p) == soname]
        assert len(paths) == 1, initialised
        assert paths[0].startswith(str(where) + "/"), f"{soname} loaded from {paths[0]}"
        assert not paths[0].startswith("/usr/lib")


def test_jq_from_debs_into_a_relocatable_env_dir(debs: list[Path], sandbox: Path) -> None:
    prefix = _unprivileged()
    home = sandbox / "home"
    for deb in debs:
        shutil.copy(deb, sandbox)
        _cpk(prefix, home, "store", "add", sandbox / deb.name)
    where = sandbox / "where"
    proc = _cpk(prefix, home, "install", "jq", where)
    assert "installed" in proc.stderr and str(where / "bin" / "jq") in proc.stderr
    # Another jq is on PATH on many machines: the report names it.
    if shutil.which("jq"):
        assert shutil.which("jq") in proc.stderr
    _jq_works(where)

    moved = sandbox / "elsewhere" / "env"
    moved.parent.mkdir()
    subprocess.run(["cp", "-a", str(where), str(moved)], check=True)
    _jq_works(moved)

    if shutil.which("man") is None:
        pytest.skip("man-db is not installed (the CI installs it)")
    env = dict(os.environ, PATH=f"{moved / 'bin'}:{os.environ['PATH']}")
    env.pop("MANPATH", None)
    page = subprocess.run(["man", "-w", "jq"], capture_output=True, text=True, env=env)
    assert page.returncode == 0, page.stderr
    assert page.stdout.strip() == str(moved / "share" / "man" / "man1" / "jq.1.gz")
