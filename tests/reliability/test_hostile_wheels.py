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
import stat
import subprocess
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.index import LocalIndex
from support.wheels import make_wheel, record_hash

from contentpkg.errors import CpkError
from contentpkg.python.install.wheel import add_wheel
from contentpkg.store import Store

Members = list[tuple[str, bytes]]

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
    # -q: the error line alone, without the summary lines before it.
    proc = run_cpk("-q", "install", "--python", "onlypython", "--index-url", shadow_index.url)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cpk: error: onlypython: ")
    assert "'python'" in lines[0] and "interpreter" in lines[0]
    assert not (cpk_home / "profiles" / "default").exists()


# -- the hostile wheel table ----------------------------------------------------------


def _rerecord(members: Members) -> Members:
    """RECORD rewritten to list members as they now are (a consistent lie)."""
    record = next(n for n, _ in members if n.endswith(".dist-info/RECORD"))
    kept = [(n, c) for n, c in members if n != record]
    rows = [f"{n},{record_hash(c)},{len(c)}" for n, c in kept] + [f"{record},,"]
    return [*kept, (record, ("\n".join(rows) + "\n").encode())]


def _adding(extra: Members) -> Callable[[Members], Members]:
    return lambda members: _rerecord([*members, *extra])


def _with_modes(wheel: Path, modes: dict[str, int]) -> Path:
    """Rewrite wheel giving some members other unix modes (links, devices)."""
    with zipfile.ZipFile(wheel) as zf:
        items = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, content in items:
            if info.filename in modes:
                info.external_attr = modes[info.filename] << 16
            zf.writestr(info, content)
    return wheel


def _record_edit(edit: Callable[[list[str]], list[str]]) -> Callable[[Members], Members]:
    """A tamper hook that edits RECORD's rows after they were written truthfully."""

    def tamper(members: Members) -> Members:
        out = []
        for name, content in members:
            if name.endswith(".dist-info/RECORD"):
                content = ("\n".join(edit(content.decode().splitlines())) + "\n").encode()
            out.append((name, content))
        return out

    return tamper


def _wrong_hash(rows: list[str]) -> list[str]:
    return [
        f"{r.split(',')[0]},{record_hash(b'other')},{r.split(',')[2]}"
        if r.startswith("pkg/__init__.py,")
        else r
        for r in rows
    ]


def _wrong_size(rows: list[str]) -> list[str]:
    return [r + "0" if r.startswith("pkg/__init__.py,") else r for r in rows]


def _header_mismatch(wheel: Path) -> Path:
    """The local header names another file than the central directory does."""
    data = wheel.read_bytes()
    first = data.index(b"pkg/extra.py")  # the local header comes first
    wheel.write_bytes(data[:first] + b"pkg/EXTRA.py" + data[first + len(b"pkg/extra.py") :])
    return wheel


def _lying_size(wheel: Path) -> Path:
    """The headers declare 10 bytes for a member that inflates to a megabyte."""
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("pkg/big.bin")
        local, size = info.header_offset, info.file_size
    data = bytearray(wheel.read_bytes())
    # Local header: uncompressed size at offset 22; central directory
    # entry: at offset 24 of the entry, which names the same member.
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    central = data.rindex(b"pkg/big.bin") - 46
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    assert int.from_bytes(data[central + 24 : central + 28], "little") != size
    wheel.write_bytes(bytes(data))
    return wheel


def _entry_points(name: str, value: str = "pkg:main") -> dict:
    return {"entry_points": {"console_scripts": {name: value}}}


# (id, make_wheel keyword arguments, post-processing, what the message must say)
CASES: list[tuple[str, dict, Callable[[Path], Path] | None, str]] = [
    ("dotdot", {"tamper": _adding([("../evil.py", b"x")])}, None, "escapes the wheel"),
    ("deep-dotdot", {"tamper": _adding([("pkg/../../evil.py", b"x")])}, None, "'..'"),
    ("absolute", {"tamper": _adding([("/tmp/evil.py", b"x")])}, None, "absolute path"),
    ("drive", {"tamper": _adding([("c:/evil.py", b"x")])}, None, "drive letter"),
    ("backslash", {"tamper": _adding([("pkg\\..\\evil.py", b"x")])}, None, "backslash"),
    ("control", {"tamper": _adding([("pkg/a\x1b.py", b"x")])}, None, "control character"),
    (
        "symlink-out",
        {"tamper": _adding([("pkg/passwd", b"../../../../etc/passwd")])},
        lambda w: _with_modes(w, {"pkg/passwd": stat.S_IFLNK | 0o777}),
        "points outside the wheel",
    ),
    (
        "symlink-in",
        {"tamper": _adding([("pkg/alias.py", b"__init__.py")])},
        lambda w: _with_modes(w, {"pkg/alias.py": stat.S_IFLNK | 0o777}),
        "is not allowed in a wheel",
    ),
    (
        "char-device",
        {"tamper": _adding([("pkg/null", b"")])},
        lambda w: _with_modes(w, {"pkg/null": stat.S_IFCHR | 0o666}),
        "special file",
    ),
    (
        "block-device",
        {"tamper": _adding([("pkg/sda", b"")])},
        lambda w: _with_modes(w, {"pkg/sda": stat.S_IFBLK | 0o666}),
        "special file",
    ),
    (
        "fifo",
        {"tamper": _adding([("pkg/fifo", b"")])},
        lambda w: _with_modes(w, {"pkg/fifo": stat.S_IFIFO | 0o644}),
        "special file",
    ),
    (
        "socket",
        {"tamper": _adding([("pkg/sock", b"")])},
        lambda w: _with_modes(w, {"pkg/sock": stat.S_IFSOCK | 0o644}),
        "special file",
    ),
    (
        "duplicate",
        {"tamper": lambda m: [*m, ("pkg/__init__.py", b"EVIL = 1\n")]},
        None,
        "appears more than once",
    ),
    (
        "header-mismatch",
        {"tamper": _adding([("pkg/extra.py", b"x = 1\n")])},
        _header_mismatch,
        "corrupt",
    ),
    (
        "bomb-ratio",
        {"tamper": _adding([("pkg/zeros.bin", bytes(32 << 20))])},
        None,
        "expands more than 200:1",
    ),
    (
        "bomb-many",
        {"tamper": _adding([(f"pkg/z{i}.bin", bytes(900_000)) for i in range(6)])},
        None,
        "archive expands more than 200:1",
    ),
    (
        "bomb-lying-size",
        {"tamper": _adding([("pkg/big.bin", bytes(1 << 20))])},
        _lying_size,
        "",  # zipfile or our count refuses it; either way one line
    ),
    (
        "record-missing-entry",
        {"tamper": _record_edit(lambda rows: [r for r in rows if "__init__" not in r])},
        None,
        "RECORD",
    ),
    ("record-wrong-hash", {"tamper": _record_edit(_wrong_hash)}, None, "from its RECORD"),
    ("record-wrong-size", {"tamper": _record_edit(_wrong_size)}, None, "RECORD says"),
    (
        "record-lists-absent-file",
        {"tamper": _record_edit(lambda rows: [*rows, f"pkg/ghost.py,{record_hash(b'x')},1"])},
        None,
        "pkg/ghost.py",
    ),
    ("record-absent", {"record": False}, None, "RECORD is missing"),
    ("entry-point-slash", _entry_points("../../bin/evil"), None, "not a plain file name"),
    ("entry-point-semicolon", _entry_points("x;rm -rf ~"), None, "not a plain file name"),
    ("entry-point-dollar", _entry_points("$(reboot)"), None, "not a plain file name"),
    ("entry-point-backtick", _entry_points("`id`"), None, "not a plain file name"),
    ("entry-point-space", _entry_points("a b"), None, "not a plain file name"),
    ("entry-point-value", _entry_points("ok", "os.system('id')"), None, "module:attribute"),
]


def _state(home: Path) -> dict:
    """The home's snapshot without lock files and the (empty) staging directory,
    which any add makes; anything left inside staging still counts."""
    return {
        k: v
        for k, v in tree_snapshot(home).items()
        if not k.startswith("store/.locks") and k != "store/.staging"
    }


def _build(tmp_path: Path, kwargs: dict, post: Callable[[Path], Path] | None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        wheel = make_wheel(tmp_path / "in", "pkg", "1.0", **kwargs)
    return post(wheel) if post is not None else wheel


@pytest.mark.parametrize(
    ("kwargs", "post", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_wheel_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, cpk_home: Path, kwargs: dict, post: Callable | None, says: str
) -> None:
    wheel = _build(tmp_path, kwargs, post)
    store = Store.open()
    store.ensure()
    before = _state(cpk_home)
    with pytest.raises(CpkError) as caught:
        add_wheel(store, wheel)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{wheel.name}: "), message
    assert says in message, message
    assert _state(cpk_home) == before
    assert not (tmp_path / "evil.py").exists() and not Path("/tmp/evil.py").exists()


@pytest.mark.parametrize(
    ("kwargs", "post", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_wheel_through_the_command_line(
    tmp_path: Path, cpk_home: Path, kwargs: dict, post: Callable | None, says: str
) -> None:
    wheel = _build(tmp_path, kwargs, post)
    index = tmp_path / "index" / "pkg"
    index.mkdir(parents=True)
    os.replace(wheel, index / wheel.name)
    Store.open().ensure()  # the store exists before the snapshot
    before = _state(cpk_home)
    proc = run_cpk("-q", "fetch", "pkg", "--index-url", tmp_path / "index")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"cpk: error: {wheel.name}: ") and says in lines[0], lines
    assert _state(cpk_home) == before


# -- hostile lock files and requirements files ------------------------------------

_SHA = "ab" * 32
_LOCK_HEAD = 'lock-version = "1.0"\ncreated-by = "cpk"\nrequires-python = ">=3.8"\n'

LOCKS: list[tuple[str, str, str]] = [
    ("not-toml", "lock-version = [1.0\n", "pylock.toml"),
    ("future-version", 'lock-version = "2.0"\ncreated-by = "x"\n', "lock-version"),
    ("binary", "\x00\x01\x02garbage", "pylock.toml"),
    (
        "package-without-version-or-file",
        _LOCK_HEAD + '[[packages]]\nname = "six"\n',
        "six",
    ),
    (
        "name-with-path",
        _LOCK_HEAD + '[[packages]]\nname = "../../evil"\nversion = "1.0"\n'
        '[[packages.wheels]]\nname = "evil-1.0-py3-none-any.whl"\n'
        'url = "https://files.example/evil-1.0-py3-none-any.whl"\n'
        f'hashes = {{sha256 = "{_SHA}"}}\n',
        "not a valid project name",
    ),
    (
        "wheel-without-hashes",
        _LOCK_HEAD + '[[packages]]\nname = "six"\nversion = "1.16.0"\n'
        '[[packages.wheels]]\nname = "six-1.16.0-py3-none-any.whl"\n'
        'url = "https://files.example/six-1.16.0-py3-none-any.whl"\n',
        "six",
    ),
    (
        "wheel-with-bad-hash",
        _LOCK_HEAD + '[[packages]]\nname = "six"\nversion = "1.16.0"\n'
        '[[packages.wheels]]\nname = "six-1.16.0-py3-none-any.whl"\n'
        'url = "https://files.example/six-1.16.0-py3-none-any.whl"\n'
        'hashes = {sha256 = "not-hex"}\n',
        "malformed sha256 hash",
    ),
    (
        "local-file-that-is-not-the-wheel",
        _LOCK_HEAD + '[[packages]]\nname = "six"\nversion = "1.16.0"\n'
        '[[packages.wheels]]\nname = "six-1.16.0-py3-none-any.whl"\n'
        'path = "../../../../../../../../etc/hostname"\n'
        f'hashes = {{sha256 = "{_SHA}"}}\n[packages.tool.cpk]\n'
        'file = "six-1.16.0-py3-none-any.whl"\n',
        "sha256 mismatch",
    ),
]


def _project_with(tmp_path: Path, files: dict[str, str]) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    for name, text in files.items():
        (work / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    return work


def _refused_in_one_line(proc: subprocess.CompletedProcess, says: str) -> str:
    assert proc.returncode != 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # One error line; the CLI may add indented detail lines (where a file
    # was downloaded from), never a traceback.
    assert len(lines) >= 1 and all(line.startswith("  ") for line in lines[1:]), proc.stderr
    assert lines[0].startswith("cpk: error: ") and says in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("text", "says"), [c[1:] for c in LOCKS], ids=[c[0] for c in LOCKS])
def test_hostile_lock_file_is_refused_in_one_line(
    tmp_path: Path, cpk_home: Path, text: str, says: str
) -> None:
    work = _project_with(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "0"\ndependencies = ["six"]\n',
            "pylock.toml": text,
        },
    )
    empty_index = tmp_path / "empty-index"
    empty_index.mkdir()
    Store.open().ensure()
    before, project_before = _state(cpk_home), tree_snapshot(work)
    proc = run_cpk("sync", "--frozen", "--index-url", empty_index, cwd=work)
    _refused_in_one_line(proc, says)
    assert _state(cpk_home) == before
    assert tree_snapshot(work) == project_before


REQUIREMENTS: list[tuple[str, dict[str, str], str]] = [
    ("includes-itself", {"requirements.txt": "-r requirements.txt\n"}, "include each other"),
    (
        "include-loop",
        {"requirements.txt": "-r other.txt\n", "other.txt": "-r requirements.txt\n"},
        "include each other",
    ),
    ("missing-include", {"requirements.txt": "-r nowhere.txt\n"}, "nowhere.txt"),
    ("invalid-requirement", {"requirements.txt": "six===1 2 3 ;;\n"}, "requirements.txt:1"),
    ("constraints", {"requirements.txt": "-c constraints.txt\nsix\n"}, "requirements.txt:1"),
    ("weak-hash", {"requirements.txt": "six==1.16.0 --hash=md5:00\n"}, "requirements.txt:1"),
    ("not-utf8", {"requirements.txt": "six\udcff\udcfe\n"}, "UTF-8"),
    ("url-with-shell", {"requirements.txt": "six @ `id`\n"}, "direct URL"),
    (
        "cut-hash",
        {"requirements.txt": f"six==1.16.0 --hash=sha256:{_SHA[:40]}\n"},
        "requirements.txt:1",
    ),
]


@pytest.mark.parametrize(
    ("files", "says"), [c[1:] for c in REQUIREMENTS], ids=[c[0] for c in REQUIREMENTS]
)
def test_hostile_requirements_file_is_refused_in_one_line(
    tmp_path: Path, cpk_home: Path, files: dict[str, str], says: str
) -> None:
    work = _project_with(tmp_path, files)
    empty_index = tmp_path / "empty-index"
    empty_index.mkdir()
    Store.open().ensure()
    before, project_before = _state(cpk_home), tree_snapshot(work)
    proc = run_cpk("lock", "--index-url", empty_index, cwd=work)
    _refused_in_one_line(proc, says)
    assert _state(cpk_home) == before
    assert tree_snapshot(work) == project_before
