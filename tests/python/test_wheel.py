"""Wheels into the store: layout, metadata, the find-by-hash fast path, and
one malicious or broken wheel per rejection, each leaving the store as it was."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.wheels import make_wheel, record_hash

from contentpkg.errors import CpkError, HashMismatchError, InvalidInputError
from contentpkg.python.install.wheel import add_wheel, wheel_entry_info
from contentpkg.store import Store
from contentpkg.store.verify import verify_entry

Members = list[tuple[str, bytes]]


# --- helpers --------------------------------------------------------------------


def rerecord(members: Members) -> Members:
    """Rewrite RECORD so it lists members as they now are (a consistent lie)."""
    record_name = next(n for n, _ in members if n.endswith(".dist-info/RECORD"))
    kept = [(n, c) for n, c in members if n != record_name]
    rows = [f"{n},{record_hash(c)},{len(c)}" for n, c in kept] + [f"{record_name},,"]
    return [*kept, (record_name, ("\n".join(rows) + "\n").encode())]


def adding(extra: Members) -> Callable[[Members], Members]:
    """A tamper hook that adds members and lists them in RECORD."""
    return lambda members: rerecord([*members, *extra])


def replacing(name_suffix: str, content: bytes) -> Callable[[Members], Members]:
    def tamper(members: Members) -> Members:
        return rerecord([(n, content if n.endswith(name_suffix) else c) for n, c in members])

    return tamper


def rezip(wheel: Path, attrs: dict[str, int]) -> Path:
    """Rewrite a wheel giving some members other unix mode bits (external_attr)."""
    with zipfile.ZipFile(wheel) as zf:
        items = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, content in items:
            if info.filename in attrs:
                info.external_attr = attrs[info.filename] << 16
            zf.writestr(info, content)
    return wheel


def store_dir(home: Path) -> Path:
    return home / "store"


def assert_store_unchanged(home: Path) -> None:
    """No entry, no lookup row, no source link, nothing left in staging."""
    store = store_dir(home)
    if not store.exists():
        return
    assert [n for n in os.listdir(store) if not n.startswith(".")] == []
    if (store / ".staging").exists():
        assert os.listdir(store / ".staging") == []
    if (store / ".sources").exists():
        assert os.listdir(store / ".sources") == []
    if (store / ".files.sqlite").exists():
        with sqlite3.connect(store / ".files.sqlite") as conn:
            assert conn.execute("SELECT COUNT(*) FROM files").fetchone() == (0,)


def rejected(
    wheel: Path, home: Path, kind: type[CpkError] = InvalidInputError, **kwargs: object
) -> str:
    """Add a bad wheel; return the one-line message after checking the store.

    A malformed wheel is an InvalidInputError, a hash that differs a
    HashMismatchError: callers that recover catch the narrow type.
    """
    with pytest.raises(kind) as info:
        add_wheel(Store.open(), wheel, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(wheel.name + ": ")
    assert_store_unchanged(home)
    return message


# --- good wheels -------------------------------------------------------------------


def test_wheel_becomes_an_entry_with_layout_and_metadata(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "Demo.Pkg",
        "1.0.0",
        files={
            "demo_pkg/__init__.py": "VALUE = 1\n",
            "demo_pkg/cli.py": "def main():\n    return 0\n",
            "demo_helper.py": "X = 2\n",
            "demo-pkg.pth": "import demo_helper\n",
        },
        requires_dist=["requests>=2", 'tomli; python_version < "3.11"'],
        requires_python=">=3.8",
        entry_points={
            "console_scripts": {"demo": "demo_pkg.cli:main"},
            "gui_scripts": {"demo-gui": "demo_pkg.cli:main"},
            "demo.plugins": {"x": "demo_pkg:VALUE"},
        },
    )
    result = add_wheel(Store.open(), wheel)
    entry = result.entry
    assert result.created
    assert entry.path.parent == store_dir(cpk_home)
    assert (entry.name, entry.version, entry.kind) == ("demo-pkg", "1.0.0", "wheel")

    site = entry.path / "site-packages"
    assert sorted(os.listdir(entry.path)) == [".cpk", "site-packages"]
    assert (site / "demo_pkg" / "cli.py").read_text() == "def main():\n    return 0\n"
    assert (site / "demo_pkg-1.0.0.dist-info" / "METADATA").is_file()
    assert not (entry.path / "scripts").exists()  # entry points are not files

    meta = entry.metadata
    assert meta["source"] == wheel.name
    assert meta["source_hash"] == "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert meta["dependencies"] == ["requests>=2", 'tomli; python_version < "3.11"']
    assert meta["provides"] == {
        "python": ["demo-pkg.pth", "demo_helper", "demo_pkg", "demo_pkg-1.0.0.dist-info"]
    }
    info = wheel_entry_info(entry)
    assert info == meta["python"]
    assert info["dist_info"] == "demo_pkg-1.0.0.dist-info"
    assert info["top_level"] == [
        "demo-pkg.pth",
        "demo_helper.py",
        "demo_pkg",
        "demo_pkg-1.0.0.dist-info",
    ]
    assert info["entry_points"] == {
        "console_scripts": {"demo": "demo_pkg.cli:main"},
        "gui_scripts": {"demo-gui": "demo_pkg.cli:main"},
    }
    assert info["requires_python"] == ">=3.8"
    assert info["requires_dist"] == meta["dependencies"]
    assert info["tags"] == ["py3-none-any"]
    assert info["root_is_purelib"] is True
    assert info["pth_files"] == ["demo-pkg.pth"]
    assert info["wheel_filename"] == wheel.name

    # Sealed, verifiable, and found again by the wheel's hash.
    assert stat.S_IMODE(os.stat(site / "demo_pkg").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(site / "demo_pkg" / "cli.py").st_mode) == 0o444
    assert verify_entry(entry) == []
    found = Store.open().find_source(meta["source_hash"])
    assert found is not None and found.path == entry.path
    assert os.listdir(store_dir(cpk_home) / ".staging") == []


def test_same_wheel_twice_is_one_entry_and_is_not_unpacked_again(
    tmp_path: Path, cpk_home: Path
) -> None:
    wheel = make_wheel(tmp_path, "twice", "2.0")
    first = add_wheel(Store.open(), wheel)
    staging = store_dir(cpk_home) / ".staging"
    before = os.stat(staging)

    # A max_size of 1 byte would refuse the wheel if it were read at all, and
    # unpacking would create a slot (changing the staging directory's mtime).
    again = add_wheel(Store.open(), wheel, max_size=1)
    assert not again.created and again.entry.path == first.entry.path

    # The same bytes under a cache name, named by the URL they came from.
    cached = tmp_path / "cache" / "0123abcd"
    cached.parent.mkdir()
    shutil.copy(wheel, cached)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    third = add_wheel(
        Store.open(),
        cached,
        expected_sha256=f"sha256:{digest}",
        source=f"https://example.invalid/files/{wheel.name}",
        max_size=1,
    )
    assert third.entry.path == first.entry.path
    assert os.stat(staging).st_mtime_ns == before.st_mtime_ns
    entries = [n for n in os.listdir(store_dir(cpk_home)) if not n.startswith(".")]
    assert entries == [first.entry.dirname]


def test_wheel_under_a_cache_name_takes_its_filename_from_the_source(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "cached", "1.0", tag="py3-none-manylinux_2_17_x86_64")
    blob = tmp_path / "blob"
    shutil.copy(wheel, blob)
    url = f"https://example.invalid/packages/{wheel.name}#sha256=abc"
    entry = add_wheel(Store.open(), blob, source=url).entry
    info = wheel_entry_info(entry)
    assert info["wheel_filename"] == wheel.name
    assert info["tags"] == ["py3-none-manylinux_2_17_x86_64"]
    assert entry.metadata["source"] == url


def test_data_scripts_data_and_headers_land_in_their_scheme_dirs(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "schemes",
        "0.1",
        data={
            "scripts/schemes-run": "#!python\nprint('run')\n",
            "scripts/helper.sh": "echo helper\n",
            "data/share/man/man1/schemes.1": ".TH SCHEMES 1\n",
            "headers/schemes.h": "int schemes(void);\n",
        },
    )
    rezip(wheel, {"schemes-0.1.data/scripts/schemes-run": 0o100755})
    entry = add_wheel(Store.open(), wheel).entry
    root = entry.path
    assert sorted(os.listdir(root)) == [".cpk", "data", "headers", "scripts", "site-packages"]
    run = root / "scripts" / "schemes-run"
    assert run.read_text() == "#!python\nprint('run')\n"  # shebangs are fixed per environment
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o555  # executable bit kept
    assert stat.S_IMODE(os.stat(root / "scripts" / "helper.sh").st_mode) == 0o444
    assert (root / "data" / "share" / "man" / "man1" / "schemes.1").is_file()
    assert (root / "headers" / "schemes.h").read_text() == "int schemes(void);\n"
    assert not any(n.endswith(".data") for n in os.listdir(root / "site-packages"))
    assert verify_entry(entry) == []


def test_data_directory_spelled_differently_from_the_dist_info(tmp_path: Path) -> None:
    def tamper(members: Members) -> Members:
        return rerecord(
            [(n.replace("spelled-1.0.data/", "Spelled-1.0.data/"), c) for n, c in members]
        )

    wheel = make_wheel(
        tmp_path, "spelled", "1.0", data={"scripts/spelled": "#!python\n"}, tamper=tamper
    )
    entry = add_wheel(Store.open(), wheel).entry
    assert os.listdir(entry.path / "scripts") == ["spelled"]


def test_purelib_and_platlib_merge_into_site_packages(tmp_path: Path) -> None:
    wheel_text = (
        "Wheel-Version: 1.0\nGenerator: cpk-tests\nRoot-Is-Purelib: false\n"
        "Tag: cp311-cp311-linux_x86_64\n"
    )
    wheel = make_wheel(
        tmp_path,
        "merged",
        "3.1",
        files={"merged/__init__.py": "", "merged/_native.py": "NATIVE = True\n"},
        data={"purelib/merged/pure.py": "PURE = True\n", "platlib/merged_extra.py": ""},
        tag="cp311-cp311-linux_x86_64",
        tamper=replacing(".dist-info/WHEEL", wheel_text.encode()),
    )
    entry = add_wheel(Store.open(), wheel).entry
    site = entry.path / "site-packages"
    assert sorted(os.listdir(site / "merged")) == ["__init__.py", "_native.py", "pure.py"]
    assert (site / "merged_extra.py").is_file()
    info = wheel_entry_info(entry)
    assert info["root_is_purelib"] is False
    assert info["top_level"] == ["merged", "merged-3.1.dist-info", "merged_extra.py"]
    assert sorted(os.listdir(entry.path)) == [".cpk", "site-packages"]


def test_bytecode_shipped_in_a_wheel_is_checked_but_not_installed(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "shipped",
        "1.0",
        tamper=adding([("shipped/__pycache__/__init__.cpython-311.pyc", b"stale")]),
    )
    entry = add_wheel(Store.open(), wheel).entry
    assert not (entry.path / "site-packages" / "shipped" / "__pycache__").exists()
    assert verify_entry(entry) == []


def test_expected_hash_accepts_the_index_forms(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "hashed", "1.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    for form in (digest, digest.upper(), f"sha256:{digest}", f"sha256={digest}"):
        assert add_wheel(Store.open(), wheel, expected_sha256=form).entry.name == "hashed"


# --- rejections ---------------------------------------------------------------------


def test_expected_hash_mismatch(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0")
    message = rejected(wheel, cpk_home, HashMismatchError, expected_sha256="0" * 64)
    assert f"sha256 mismatch (expected {'0' * 64}, got " in message
    assert "corrupt or truncated download?" in message
    assert "not a sha256" in rejected(wheel, cpk_home, expected_sha256="md5:abc")


def test_truncated_download_is_not_a_zip(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0")
    wheel.write_bytes(wheel.read_bytes()[:-40])
    assert "not a valid zip archive" in rejected(wheel, cpk_home)


def test_record_hash_mismatch(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        # Same length as the original, so only the hash can tell.
        evil = b"__version__ = '6.6'\n"
        return [(n, evil if n == "pkg/__init__.py" else c) for n, c in members]

    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    message = rejected(wheel, cpk_home, HashMismatchError)
    assert "'pkg/__init__.py': sha256 mismatch" in message and "from its RECORD" in message


def test_record_size_mismatch(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        out = []
        for name, content in members:
            if name.endswith("RECORD"):
                text = content.decode()
                row = next(r for r in text.splitlines() if r.startswith("pkg/__init__.py,"))
                path, digest, size = row.split(",")
                content = text.replace(row, f"{path},{digest},{int(size) + 5}").encode()
            out.append((name, content))
        return out

    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    message = rejected(wheel, cpk_home)
    assert "'pkg/__init__.py'" in message and "but RECORD says" in message


def test_file_not_listed_in_record(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path, "pkg", "1.0", tamper=lambda m: [*m, ("pkg/sneaky.py", b"import os\n")]
    )
    message = rejected(wheel, cpk_home)
    assert "pkg/sneaky.py is not mentioned in RECORD" in message


def test_missing_record(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", record=False)
    assert "pkg-1.0.dist-info/RECORD is missing" in rejected(wheel, cpk_home)


def test_record_with_a_weak_hash(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        out = []
        for name, content in members:
            if name.endswith("RECORD"):
                init = dict(members)["pkg/__init__.py"]
                weak = base64.urlsafe_b64encode(hashlib.md5(init).digest()).rstrip(b"=").decode()
                lines = [
                    f"pkg/__init__.py,md5={weak},{len(init)}"
                    if line.startswith("pkg/__init__.py,")
                    else line
                    for line in content.decode().splitlines()
                ]
                content = ("\n".join(lines) + "\n").encode()
            out.append((name, content))
        return out

    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    assert "with md5; wheels must use sha256 or stronger" in rejected(wheel, cpk_home)


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("../evil.py", "has a '..' component that escapes the wheel"),
        ("pkg/../../evil.py", "has a '..' component that escapes the wheel"),
        ("/tmp/evil.py", "is an absolute path"),
        ("C:/Windows/evil.py", "starts with a drive letter"),
        ("c:evil.py", "starts with a drive letter"),
        ("pkg\\..\\..\\evil.py", "contains a backslash"),
        ("pkg/evil\x01.py", "contains a control character"),
        ("pkg/evil\n.py", "contains a control character"),
        ("pkg//evil.py", "has an empty or '.' component"),
    ],
)
def test_member_paths_that_escape(
    tmp_path: Path, cpk_home: Path, member: str, problem: str
) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([(member, b"x = 1\n")]))
    message = rejected(wheel, cpk_home)
    assert f"member {member!r} {problem}" in message
    assert not (tmp_path / "evil.py").exists()


def test_member_name_with_nul(tmp_path: Path, cpk_home: Path) -> None:
    # zipfile cannot write a NUL in a name; write a placeholder of the same
    # length and patch the bytes of both headers.
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([("pkg/evilXpy.py", b"x\n")]))
    data = wheel.read_bytes()
    assert data.count(b"pkg/evilXpy.py") == 2  # local header and central directory
    wheel.write_bytes(data.replace(b"pkg/evilXpy.py", b"pkg/evil\x00py.py"))
    assert "member 'pkg/evil\\x00py.py' contains a NUL character" in rejected(wheel, cpk_home)


def test_duplicate_member_names(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        return [*members, ("pkg/__init__.py", b"EVIL = 1\n")]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    assert "member 'pkg/__init__.py' appears more than once" in rejected(wheel, cpk_home)


def test_two_members_installing_the_same_path(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", data={"purelib/pkg/__init__.py": "EVIL = 1\n"})
    assert "both install site-packages/pkg/__init__.py" in rejected(wheel, cpk_home)


def test_file_that_another_member_needs_as_a_directory(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "pkg",
        "1.0",
        files={"pkg/__init__.py": "", "pkg/sub": "file", "pkg/sub/mod.py": ""},
    )
    assert "is a file but 'pkg/sub/mod.py' needs it as a directory" in rejected(wheel, cpk_home)


def test_symlink_member_pointing_out_of_the_entry(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path, "pkg", "1.0", tamper=adding([("pkg/passwd", b"../../../../../etc/passwd")])
    )
    rezip(wheel, {"pkg/passwd": stat.S_IFLNK | 0o777})
    message = rejected(wheel, cpk_home)
    assert "member 'pkg/passwd' is a symlink to '../../../../../etc/passwd'" in message
    assert "points outside the wheel" in message


def test_symlink_member_inside_the_wheel_is_refused_too(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([("pkg/alias.py", b"__init__.py")]))
    rezip(wheel, {"pkg/alias.py": stat.S_IFLNK | 0o777})
    assert "is not allowed in a wheel" in rejected(wheel, cpk_home)


def test_special_file_member(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([("pkg/fifo", b"")]))
    rezip(wheel, {"pkg/fifo": stat.S_IFIFO | 0o644})
    assert "member 'pkg/fifo' is a special file" in rejected(wheel, cpk_home)


def test_zip_bomb_member_ratio_is_caught_while_extracting(tmp_path: Path, cpk_home: Path) -> None:
    zeros = bytes(64 << 20)  # 64 MiB of zeros deflate to about 64 KiB
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([("pkg/blob.bin", zeros)]))
    del zeros
    assert wheel.stat().st_size < 1 << 20
    message = rejected(wheel, cpk_home)
    assert "member 'pkg/blob.bin' expands more than 200:1 (zip bomb?)" in message


def test_zip_bomb_spread_over_many_members(tmp_path: Path, cpk_home: Path) -> None:
    # Each member stays under the size at which single ratios are judged;
    # the archive as a whole still expands far beyond the limit.
    blobs = [(f"pkg/blob{i}.bin", bytes(900_000)) for i in range(6)]
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding(blobs))
    assert "archive expands more than 200:1" in rejected(wheel, cpk_home)
    assert "archive expands more than 50:1" in rejected(wheel, cpk_home, max_ratio=50)


def test_total_size_limit_is_checked_before_anything_is_written(
    tmp_path: Path, cpk_home: Path
) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=adding([("pkg/data.txt", b"x" * 5000)]))
    message = rejected(wheel, cpk_home, max_size=4096)
    assert "expands to" in message and "more than the limit of 4096" in message
    assert not store_dir(cpk_home).exists()  # refused from the central directory alone


def test_mismatched_dist_info_name(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        return rerecord(
            [(n.replace("pkg-1.0.dist-info", "other-1.0.dist-info"), c) for n, c in members]
        )

    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    message = rejected(wheel, cpk_home)
    assert ".dist-info directory 'other-1.0.dist-info' does not match the filename's pkg 1.0" in (
        message
    )


def test_mismatched_dist_info_version(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        return rerecord(
            [(n.replace("pkg-1.0.dist-info", "pkg-2.0.dist-info"), c) for n, c in members]
        )

    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=tamper)
    assert "'pkg-2.0.dist-info' does not match" in rejected(wheel, cpk_home)


def test_metadata_naming_another_project(tmp_path: Path, cpk_home: Path) -> None:
    metadata = b"Metadata-Version: 2.1\nName: requests\nVersion: 1.0\n\n"
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=replacing(".dist-info/METADATA", metadata))
    assert "METADATA says requests 1.0, the filename pkg 1.0" in rejected(wheel, cpk_home)


def test_two_dist_info_directories(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path, "pkg", "1.0", tamper=adding([("other-1.0.dist-info/METADATA", b"x")])
    )
    message = rejected(wheel, cpk_home)
    assert "expected one .dist-info directory, found other-1.0.dist-info, pkg-1.0.dist-info" in (
        message
    )


def test_unsupported_wheel_version(tmp_path: Path, cpk_home: Path) -> None:
    text = b"Wheel-Version: 2.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    wheel = make_wheel(tmp_path, "pkg", "1.0", tamper=replacing(".dist-info/WHEEL", text))
    assert "Wheel-Version 2.0 is not supported" in rejected(wheel, cpk_home)


def test_missing_wheel_file(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path, "pkg", "1.0", tamper=lambda m: rerecord([x for x in m if "WHEEL" not in x[0]])
    )
    assert "pkg-1.0.dist-info/WHEEL is missing" in rejected(wheel, cpk_home)


def test_unknown_data_scheme(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0", data={"etc/pkg.conf": "x"})
    assert "is in no known install scheme" in rejected(wheel, cpk_home)


def test_invalid_wheel_filename(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "pkg", "1.0")
    bad = wheel.rename(tmp_path / "pkg-1.0.whl")
    assert "not a valid wheel filename" in rejected(bad, cpk_home)


def test_script_entry_point_whose_name_is_a_path(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(
        tmp_path, "pkg", "1.0", entry_points={"console_scripts": {"../../evil": "pkg:main"}}
    )
    assert "console_scripts name '../../evil' is not a plain file name" in rejected(wheel, cpk_home)


def test_rejection_keeps_an_existing_store_intact(tmp_path: Path, cpk_home: Path) -> None:
    good = add_wheel(Store.open(), make_wheel(tmp_path / "good", "good", "1.0")).entry
    before = json.dumps(sorted(os.listdir(store_dir(cpk_home) / ".sources")))
    zeros = [("pkg/blob.bin", bytes(8 << 20))]
    bad = make_wheel(tmp_path / "bad", "pkg", "1.0", tamper=adding(zeros))
    with pytest.raises(CpkError):
        add_wheel(Store.open(), bad)
    names = [n for n in os.listdir(store_dir(cpk_home)) if not n.startswith(".")]
    assert names == [good.dirname]
    assert json.dumps(sorted(os.listdir(store_dir(cpk_home) / ".sources"))) == before
    assert os.listdir(store_dir(cpk_home) / ".staging") == []
    with sqlite3.connect(store_dir(cpk_home) / ".files.sqlite") as conn:
        entries = conn.execute("SELECT DISTINCT entry FROM files").fetchall()
    assert entries == [(good.dirname,)]


def test_deflate_stream_that_is_not_one_is_corrupt(tmp_path: Path, cpk_home: Path) -> None:
    # zipfile lets zlib.error through unwrapped (found by fuzzing).
    wheel = make_wheel(tmp_path, "pkg", "1.0", files={"pkg/__init__.py": "x = 1\n" * 100})
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("pkg/__init__.py")
    data = bytearray(wheel.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + 4] = b"\xff\xff\xff\xff"  # block type 3: invalid
    wheel.write_bytes(bytes(data))
    assert "member 'pkg/__init__.py' is corrupt" in rejected(wheel, cpk_home)


def test_zip_version_zipfile_cannot_read_is_one_line(tmp_path: Path, cpk_home: Path) -> None:
    # zipfile raises NotImplementedError for it (found by fuzzing).
    wheel = make_wheel(tmp_path, "pkg", "1.0")
    data = bytearray(wheel.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 235  # "version needed to extract": 23.5
    wheel.write_bytes(bytes(data))
    assert "not a valid zip archive" in rejected(wheel, cpk_home)


def _hex_record(members: Members) -> Members:
    """RECORD digests in hex, as a popular Sphinx theme's 2022 wheel has them."""
    record_name = next(n for n, _ in members if n.endswith(".dist-info/RECORD"))
    kept = [(n, c) for n, c in members if n != record_name]
    rows = [f"{n},sha256={hashlib.sha256(c).hexdigest()},{len(c)}" for n, c in kept]
    rows.append(f"{record_name},,")
    return [*kept, (record_name, ("\n".join(rows) + "\n").encode())]


def test_record_digests_in_hex_are_accepted(tmp_path: Path, cpk_home: Path) -> None:
    wheel = make_wheel(tmp_path, "hexrec", "1.0", tamper=_hex_record)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    entry = add_wheel(Store.open(), wheel, expected_sha256=digest).entry
    assert (entry.path / "site-packages" / "hexrec" / "__init__.py").is_file()


def test_record_hex_mismatch_names_the_matching_wheel_hash(tmp_path: Path, cpk_home: Path) -> None:
    def tamper(members: Members) -> Members:
        recorded = _hex_record(members)
        evil = b"__version__ = '6.6'\n"
        return [(n, evil if n == "hexrec/__init__.py" else c) for n, c in recorded]

    wheel = make_wheel(tmp_path, "hexrec", "1.0", tamper=tamper)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    message = rejected(wheel, cpk_home, HashMismatchError, expected_sha256=digest)
    assert "'hexrec/__init__.py': sha256 mismatch (expected " in message
    assert "from its RECORD" in message
    assert "sha256 matched the published one" in message
    # Without a published hash, nothing is claimed about it.
    assert "published" not in rejected(wheel, cpk_home, HashMismatchError)
