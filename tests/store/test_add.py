"""Adding entries: layout, idempotence, read-only content, and bad input."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot

from contentpkg.store import Store
from contentpkg.store.add import add_path
from contentpkg.store.hashing import tree_hash


def make_src(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "share" / "doc").mkdir(parents=True)
    (root / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    (root / "bin" / "hello").chmod(0o755)
    (root / "share" / "doc" / "README").write_text("docs\n")
    os.symlink("../share/doc/README", root / "bin" / "readme")
    return root


def test_add_directory_creates_one_read_only_entry(tmp_path: Path, cpk_home: Path) -> None:
    src = make_src(tmp_path / "src")
    proc = run_cpk("store", "add", src, "--name", "hello", "--version", "1.0", check=True)
    entry = Path(proc.stdout.strip())
    assert entry.parent == cpk_home / "store"
    name, version, short = entry.name.split(",")
    assert (name, version, len(short)) == ("hello", "1.0", 32)
    # Content is the tree itself, equal to the source, plus metadata.
    assert tree_hash(entry) == tree_hash(src)
    assert (entry / "bin" / "hello").read_text() == "#!/bin/sh\necho hello\n"
    assert os.readlink(entry / "bin" / "readme") == "../share/doc/README"
    meta = json.loads((entry / ".cpk" / "entry.json").read_text())
    assert meta["name"] == "hello" and meta["version"] == "1.0" and meta["kind"] == "generic"
    assert meta["content_hash"].startswith("sha256:" + short)
    # Read-only everywhere; the executable bit survives as the only mode bit.
    assert stat.S_IMODE(os.stat(entry / "bin" / "hello").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(entry / "share" / "doc" / "README").st_mode) == 0o444
    for d in (entry, entry / "bin", entry / "share"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o555
    # No staging debris once the add is over.
    assert os.listdir(cpk_home / "store" / ".staging") == []


def test_same_tree_twice_is_one_entry(tmp_path: Path, cpk_home: Path) -> None:
    src = make_src(tmp_path / "src")
    first = run_cpk("store", "add", src, "--name", "hello", "--version", "1.0", check=True)
    again = run_cpk("store", "add", src, "--name", "hello", "--version", "1.0", check=True)
    assert first.stdout == again.stdout
    assert "already present" in again.stderr
    entries = [n for n in os.listdir(cpk_home / "store") if not n.startswith(".")]
    assert len(entries) == 1


def test_changed_tree_is_a_second_entry_side_by_side(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    store = Store.open()
    one = add_path(store, src, "hello", "1.0").entry
    (src / "share" / "doc" / "README").write_text("docs, revised\n")
    two = add_path(store, src, "hello", "1.0").entry
    assert one.dirname != two.dirname
    assert (one.path / "share/doc/README").read_text() == "docs\n"


def test_single_file_entry(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    result = add_path(Store.open(), f, "notes", "2")
    assert result.created
    assert (result.entry.path / "notes.txt").read_text() == "hello\n"


def test_pycache_in_input_is_not_stored(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    entry = add_path(Store.open(), src, "hello", "1").entry
    assert not (entry.path / "__pycache__").exists()


def _bad_input(kind: str, tmp_path: Path) -> tuple[list[str], str]:
    """Return (cpk args, expected words in the error) for one kind of bad input."""
    src = make_src(tmp_path / "bad")
    args = ["store", "add", str(src), "--name", "bad", "--version", "1"]
    if kind == "comma-name":
        args[4] = "a,b"
        return args, "contains ','"
    if kind == "slash-version":
        args[6] = "1/2"
        return args, "contains '/'"
    if kind == "dot-name":
        args[4] = ".hidden"
        return args, "starts with '.'"
    if kind == "empty-version":
        args[6] = ""
        return args, "version is empty"
    if kind == "fifo":
        os.mkfifo(src / "share" / "pipe")
        return args, "is a FIFO"
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(src / "sock"))
        sock.close()
        return args, "is a socket"
    if kind == "device":
        try:
            os.mknod(src / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs privileges")
        return args, "is a device"
    if kind == "symlink-absolute":
        os.symlink("/etc/passwd", src / "bin" / "passwd")
        return args, "points outside the tree"
    if kind == "symlink-escape":
        os.symlink("../../..", src / "share" / "up")
        return args, "points outside the tree"
    if kind == "symlink-escape-via-link":
        # Lexically inside, really outside: sub/d -> .. then sub/e -> d/..
        (src / "sub").mkdir()
        os.symlink("..", src / "sub" / "d")
        os.symlink("d/..", src / "sub" / "e")
        return args, "points outside the tree"
    if kind == "setuid":
        (src / "bin" / "hello").chmod(0o4755)
        return args, "setuid or setgid"
    if kind == "setgid":
        (src / "bin" / "hello").chmod(0o2755)
        return args, "setuid or setgid"
    if kind == "reserved-name":
        (src / ".cpk").mkdir()
        return args, "reserved for entry metadata"
    if kind == "missing":
        args[2] = str(tmp_path / "nope")
        return args, "No such file"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "comma-name",
        "slash-version",
        "dot-name",
        "empty-version",
        "fifo",
        "socket",
        "device",
        "symlink-absolute",
        "symlink-escape",
        "symlink-escape-via-link",
        "setuid",
        "setgid",
        "reserved-name",
        "missing",
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    kind: str, tmp_path: Path, cpk_home: Path
) -> None:
    # A store with one entry already in it, to prove nothing changes.
    good = make_src(tmp_path / "good")
    run_cpk("store", "add", good, "--name", "good", "--version", "1", check=True)
    before = tree_snapshot(cpk_home)
    args, expected = _bad_input(kind, tmp_path)
    proc = run_cpk(*args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cpk: error: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(cpk_home) == before


def test_seal_closes_the_metadata_directory_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sealed ``.cpk`` is what says an entry's bytecode is complete, so a
    kill during sealing must never leave it closed while anything below the
    entry is still open: every other chmod comes first, deepest first."""
    from contentpkg.store.add import seal

    root = tmp_path / "entry"
    (root / ".cpk").mkdir(parents=True)
    (root / ".cpk" / "bytecode-cpython-311").write_text("{}")
    pycache = root / "site-packages" / "pkg" / "__pycache__"
    pycache.mkdir(parents=True)
    (pycache / "m.cpython-311.pyc").write_bytes(b"\0" * 16)
    (root / "site-packages" / "pkg" / "m.py").write_text("")
    order: list[str] = []
    real_chmod = os.chmod

    def recording_chmod(path: str | os.PathLike[str], mode: int) -> None:
        order.append(Path(path).relative_to(root).as_posix())
        real_chmod(path, mode)

    monkeypatch.setattr(os, "chmod", recording_chmod)
    seal(root)
    assert order[-2:] == [".cpk", "."]
    assert order.index("site-packages/pkg/__pycache__/m.cpython-311.pyc") < order.index(
        "site-packages/pkg/__pycache__"
    )
    assert len(order) == 8  # 3 files, 4 directories and the root: each once


def test_an_entry_is_never_seen_writable_even_killed_as_it_publishes(
    tmp_path: Path, cpk_home: Path
) -> None:
    """Moving a directory to another parent needs write permission on it, so
    an entry renamed from staging used to appear writable until a chmod after
    the rename, and a kill between the two left it so. A process killed just
    before the last rename leaves no entry, nothing writable in the store's
    root, only hidden debris that the next run's cleaning removes."""
    import importlib.util
    import subprocess
    import sys

    from contentpkg.store.staging import PUBLISHING, clean_stale

    src = make_src(tmp_path / "src")
    spec = importlib.util.find_spec("contentpkg")
    assert spec is not None and spec.origin is not None
    child = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "import contentpkg.store.staging as staging\n"
        "from contentpkg.store import Store\n"
        "from contentpkg.store.add import add_path\n"
        "staging.publish_dir = lambda *a, **k: os._exit(9)  # dies before the last rename\n"
        "add_path(Store.open(), Path(sys.argv[1]), 'hello', '1.0')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(spec.origin).parent.parent)}
    died = subprocess.run([sys.executable, "-c", child, str(src)], env=env, timeout=60)
    assert died.returncode == 9
    root = cpk_home / "store"
    names = os.listdir(root)
    assert not [n for n in names if "," in n], names  # no entry appeared
    hidden = [n for n in names if n.startswith(PUBLISHING)]
    assert len(hidden) == 1, names
    assert stat.S_IMODE(os.lstat(root / hidden[0]).st_mode) == 0o555  # sealed before it moved on
    assert clean_stale(root) != []
    assert not [n for n in os.listdir(root) if n.startswith(PUBLISHING)]
    # And the next add publishes the entry sealed.
    entry = add_path(Store.open(), src, "hello", "1.0").entry
    assert stat.S_IMODE(os.lstat(entry.path).st_mode) == 0o555
