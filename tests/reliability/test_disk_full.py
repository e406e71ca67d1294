"""A full disk is named as a full disk: what ran out, where, doing what.

The disk is filled for real: a 1 MiB tmpfs mounted inside ``unshare -Urm``
(an unprivileged user and mount namespace) holds the store or the cache,
and a wheel with 3 MiB of incompressible content is fetched into it. The
listing of the tmpfs is taken inside the namespace, after cpk exits, since
the mount vanishes with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.wheels import make_wheel

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode != 0,
    reason="needs util-linux unshare with unprivileged user and mount namespaces",
)

SRC = Path(__file__).resolve().parents[2] / "src"


def _fetch_on_full_tmpfs(tmp_path: Path, full: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run ``cpk fetch six`` with ``full`` ("home" or "cache") on a 1 MiB tmpfs.

    Returns the process and the files left on the tmpfs afterwards.
    """
    index = tmp_path / "index"
    make_wheel(index / "six", "six", "1.16.0", files={"six.py": os.urandom(3 << 20)})
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    listing = tmp_path / "listing"
    mount_point = home if full == "home" else cache
    script = (
        'mount -t tmpfs -o size=1m tmpfs "$MNT" || exit 99\n'
        # -q: the error line alone, without the summary lines before it.
        '"$PY" -m contentpkg -q fetch six --index-url "$INDEX"\n'
        "rc=$?\n"
        'find "$MNT" -type f ! -name "*.lock" ! -path "*/interpreters-v*" > "$LISTING"\n'
        "exit $rc\n"
    )
    env = {
        **os.environ,
        "CPK_HOME": str(home),
        "CPK_CACHE_DIR": str(cache),
        "PYTHONPATH": str(SRC),
        "MNT": str(mount_point),
        "PY": sys.executable,
        "INDEX": str(index),
        "LISTING": str(listing),
    }
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 99, proc.stderr
    left = listing.read_text().split() if listing.exists() else []
    return proc, left


def test_full_store_during_extraction_names_the_store_not_the_wheel(tmp_path: Path) -> None:
    proc, left = _fetch_on_full_tmpfs(tmp_path, "home")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("cpk: error: no space left on device writing ")
    assert str(tmp_path / "home" / "store") in line
    assert "(extracting six-1.16.0-py3-none-any.whl)" in line
    assert "corrupt" not in line
    assert "Traceback" not in proc.stderr
    # Nothing half-written: no entry, no staging slot, no lookup row.
    assert left == [], left


def test_full_cache_during_download_names_the_cache(tmp_path: Path) -> None:
    proc, left = _fetch_on_full_tmpfs(tmp_path, "cache")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cpk: error: no space left on device writing ")
    assert str(tmp_path / "cache") in lines[0]
    assert "(downloading six-1.16.0-py3-none-any.whl)" in lines[0]
    # Only what was complete before the disk filled (the small metadata file).
    assert not [p for p in left if p.endswith(".whl") or "/.tmp-" in p], left
