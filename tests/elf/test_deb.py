"""Reading .deb files: real ones built by dpkg-deb, broken ones built by hand."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support.cli import tree_snapshot
from support.debs import DPKG_DEB, dpkg_build, needs_dpkg_deb
from support.hostile import ar_archive

from contentpkg.elf import deb
from contentpkg.elf.deb import extract_data, map_path, parse_relations, read_deb
from contentpkg.errors import CpkError

MULTIARCH = "x86_64-linux-gnu"

CONTROL = """\
Package: tool
Version: 1:2.5-1
Architecture: amd64
Maintainer: Test <test@example.org>
Source: tool-src (2.5-1)
Multi-Arch: foreign
Pre-Depends: libc6 (>= 2.34)
Depends: libtool1 (= 1:2.5-1), python3:any | python3-minimal (>> 3.11),
 zlib1g:amd64 (>= 1:1.2.0)
Provides: tool-compat (= 2.5), other
Description: a tool for the tests
 Longer description here,
 .
 over several lines.
"""


# --- building .deb files -------------------------------------------------------


def build_tree(root: Path) -> Path:
    """A package tree: binaries, a library symlink chain, man, doc, etc."""
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(CONTROL)
    bin_dir = root / "usr" / "bin"
    lib_dir = root / "usr" / "lib" / MULTIARCH
    man_dir = root / "usr" / "share" / "man" / "man1"
    doc_dir = root / "usr" / "share" / "doc" / "tool"
    old_bin = root / "bin"
    for d in (bin_dir, lib_dir, man_dir, doc_dir, old_bin, root / "etc" / "tool"):
        d.mkdir(parents=True)
    (bin_dir / "tool").write_text("#!/bin/sh\necho tool\n")
    (bin_dir / "tool").chmod(0o755)
    (bin_dir / "tool-helper").write_text("#!/bin/sh\necho helper\n")
    (bin_dir / "tool-helper").chmod(0o4755)  # setuid
    (old_bin / "tool-old").write_text("#!/bin/sh\necho old\n")  # pre-usrmerge path
    (old_bin / "tool-old").chmod(0o755)
    (lib_dir / "libtool.so.1.2").write_bytes(b"\x7fELF not really\n")
    os.symlink("libtool.so.1.2", lib_dir / "libtool.so.1")
    os.symlink("libtool.so.1", lib_dir / "libtool.so")
    # An absolute link, as Debian writes between top-level directories.
    os.symlink(f"/usr/lib/{MULTIARCH}/libtool.so.1.2", old_bin / "libtool-abs")
    os.symlink("../../bin/tool", root / "usr" / "share" / "tool-link")
    (man_dir / "tool.1.gz").write_bytes(gzip.compress(b".TH TOOL 1\n", mtime=0))
    (doc_dir / "copyright").write_text("Copyright: none\n")
    (root / "etc" / "tool" / "tool.conf").write_text("verbose = 1\n")
    return root


@pytest.fixture(scope="module")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if DPKG_DEB is None:
        pytest.skip("needs dpkg-deb to build .deb files")
    work = tmp_path_factory.mktemp("deb")
    return dpkg_build(build_tree(work / "tree"), work / "tool.deb", compression="xz")


def tar_bytes(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], comp: str) -> bytes:
    buf = io.BytesIO()
    mode = {"gz": "w:gz", "xz": "w:xz", "bz2": "w:bz2", "": "w"}[comp]
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info, data = entry
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(entry)
    return buf.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    return info


def dir_(name: str) -> tarfile.TarInfo:
    return member(name, tarfile.DIRTYPE, 0o755)


def file_(name: str, data: bytes = b"data\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, mode=mode), data


def symlink(name: str, target: str) -> tarfile.TarInfo:
    return member(name, tarfile.SYMTYPE, 0o777, target)


def hand_deb(
    path: Path,
    data: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
    *,
    control: str = "Package: hand\nVersion: 1.0\nArchitecture: all\nDescription: x\n",
    comp: str = "gz",
    version: bytes = b"2.0\n",
) -> Path:
    control_tar = tar_bytes([dir_("./"), file_("./control", control.encode())], "gz")
    data_tar = tar_bytes([dir_("./"), *data], comp)
    suffix = f".{comp}" if comp else ""
    path.write_bytes(
        ar_archive(
            [
                ("debian-binary", version),
                ("control.tar.gz", control_tar),
                (f"data.tar{suffix}", data_tar),
            ]
        )
    )
    return path


def unpack(path: Path, dest: Path) -> list[str]:
    dest.mkdir()
    return extract_data(read_deb(path), dest)


# --- reading control data ------------------------------------------------------


@needs_dpkg_deb
@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_read_deb_built_by_dpkg(tmp_path: Path, compression: str) -> None:
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.importorskip("zstandard")
    path = dpkg_build(build_tree(tmp_path / "tree"), tmp_path / "t.deb", compression=compression)
    pkg = read_deb(path)
    assert (pkg.name, pkg.version, pkg.architecture) == ("tool", "1:2.5-1", "amd64")
    assert pkg.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pkg.depends == [
        [("libtool1", "= 1:2.5-1")],
        [("python3", None), ("python3-minimal", ">> 3.11")],
        [("zlib1g", ">= 1:1.2.0")],
    ]
    assert pkg.pre_depends == [[("libc6", ">= 2.34")]]
    assert pkg.provides == [("tool-compat", "= 2.5"), ("other", None)]
    assert pkg.description == "a tool for the tests"
    assert pkg.multi_arch == "foreign"
    assert pkg.source == "tool-src"
    assert pkg.control["Description"].endswith("Longer description here,\n.\nover several lines.")
    assert pkg.control_field("multi-arch") == "foreign"
    assert "control" in pkg.control_files and pkg.maintainer_scripts == []
    # The data member is readable, and in the compression asked for.
    expected = {"xz": ".xz", "gzip": ".gz", "zstd": ".zst", "none": ""}[compression]
    assert pkg.data.name == f"data.tar{expected}"
    dest = tmp_path / "out"
    dest.mkdir()
    extract_data(pkg, dest)
    assert (dest / "bin" / "tool").read_text() == "#!/bin/sh\necho tool\n"


def test_parse_relations_alternatives_qualifiers_and_old_operators() -> None:
    assert parse_relations("a (<< 2), b:any | c (> 1) [amd64], d (< 3) <!nocheck>", "t") == [
        [("a", "<< 2")],
        [("b", None), ("c", ">= 1")],
        [("d", "<= 3")],
    ]
    assert parse_relations("  \n ", "t") == []
    with pytest.raises(CpkError, match=r"t: cannot parse 'a \(>= \)'"):
        parse_relations("a (>= )", "t")


def test_map_path() -> None:
    assert map_path("usr/bin/jq") == "bin/jq"
    assert map_path("usr/share/man/man1/jq.1.gz") == "share/man/man1/jq.1.gz"
    assert map_path(f"usr/lib/{MULTIARCH}/libjq.so.1") == f"lib/{MULTIARCH}/libjq.so.1"
    assert map_path("bin/sh") == "bin/sh"
    assert map_path("etc/jq.conf") == "etc/jq.conf"
    assert map_path("usr") == ""


# --- extracting ----------------------------------------------------------------


def test_extract_maps_into_a_prefix(built_deb: Path, tmp_path: Path) -> None:
    dest = tmp_path / "prefix"
    notes = unpack(built_deb, dest)
    tool = dest / "bin" / "tool"
    assert tool.read_text() == "#!/bin/sh\necho tool\n"
    assert os.stat(tool).st_mode & stat.S_IXUSR
    assert (dest / "bin" / "tool-old").read_text() == "#!/bin/sh\necho old\n"
    assert (dest / "share" / "man" / "man1" / "tool.1.gz").read_bytes().startswith(b"\x1f\x8b")
    assert (dest / "share" / "doc" / "tool" / "copyright").is_file()
    assert (dest / "etc" / "tool" / "tool.conf").read_text() == "verbose = 1\n"
    assert not (dest / "usr").exists()
    # The symlink chain stays relative and resolves inside the tree.
    lib = dest / "lib" / MULTIARCH
    assert os.readlink(lib / "libtool.so") == "libtool.so.1"
    assert os.readlink(lib / "libtool.so.1") == "libtool.so.1.2"
    assert (lib / "libtool.so").resolve() == (lib / "libtool.so.1.2").resolve()
    # The absolute link is rewritten relative to its own directory.
    assert os.readlink(dest / "bin" / "libtool-abs") == f"../lib/{MULTIARCH}/libtool.so.1.2"
    assert (dest / "bin" / "libtool-abs").read_bytes() == b"\x7fELF not really\n"
    # A relative link climbing out of usr/ (to /bin/tool) is re-aimed at the
    # mapped target, which is usr/bin/tool's place, as on a merged-/usr system.
    assert os.readlink(dest / "share" / "tool-link") == "../bin/tool"
    assert (dest / "share" / "tool-link").read_text() == "#!/bin/sh\necho tool\n"
    # setuid is dropped, the executable bits kept, and the note names the file.
    helper = os.stat(dest / "bin" / "tool-helper").st_mode
    assert not helper & (stat.S_ISUID | stat.S_ISGID) and helper & stat.S_IXUSR
    assert any("setuid" in n and "bin/tool-helper" in n for n in notes), notes
    # Nothing is left that the tree does not resolve into.
    real = dest.resolve()
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            assert full.resolve().is_relative_to(real), full


def test_extract_hard_links_and_usrmerge_twins(tmp_path: Path) -> None:
    path = hand_deb(
        tmp_path / "t.deb",
        [
            dir_("./usr/"),
            dir_("./usr/bin/"),
            file_("./usr/bin/a", b"same\n", 0o755),
            member("./usr/bin/b", tarfile.LNKTYPE, 0o755, "./usr/bin/a"),
            dir_("./bin/"),
            file_("./bin/a", b"same\n", 0o755),  # same bytes: one file
            dir_("./lib/"),
            symlink("./lib64", "usr/lib64"),  # a merged-/usr alias
        ],
    )
    dest = tmp_path / "out"
    notes = unpack(path, dest)
    assert (dest / "bin" / "b").read_text() == "same\n"
    assert os.stat(dest / "bin" / "b").st_mode & stat.S_IXUSR
    assert not os.path.lexists(dest / "lib64")
    assert any("/lib64 -> usr/lib64" in n for n in notes), notes


@pytest.mark.parametrize("comp", ["bz2", "xz", ""])
def test_other_compressions(tmp_path: Path, comp: str) -> None:
    path = hand_deb(tmp_path / "t.deb", [dir_("./usr/"), file_("./usr/x", b"x\n")], comp=comp)
    dest = tmp_path / "out"
    unpack(path, dest)
    assert (dest / "x").read_text() == "x\n"


def test_lzma_alone_data(tmp_path: Path) -> None:
    data = lzma.compress(tar_bytes([file_("./usr/x", b"x\n")], ""), format=lzma.FORMAT_ALONE)
    control = tar_bytes([file_("./control", b"Package: a\nVersion: 1\nArchitecture: all\n")], "gz")
    path = tmp_path / "t.deb"
    path.write_bytes(
        ar_archive(
            [("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.lzma", data)]
        )
    )
    dest = tmp_path / "out"
    unpack(path, dest)
    assert (dest / "x").read_text() == "x\n"


def test_maintainer_scripts_are_named_in_a_note(tmp_path: Path) -> None:
    path = tmp_path / "t.deb"
    control = tar_bytes(
        [
            file_("./control", b"Package: a\nVersion: 1\nArchitecture: all\n"),
            file_("./postinst", b"#!/bin/sh\n", 0o755),
        ],
        "gz",
    )
    data = tar_bytes([file_("./usr/x")], "gz")
    path.write_bytes(
        ar_archive(
            [("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]
        )
    )
    pkg = read_deb(path)
    assert pkg.maintainer_scripts == ["postinst"]
    dest = tmp_path / "out"
    dest.mkdir()
    assert "maintainer scripts not run: postinst" in extract_data(pkg, dest)


# --- zstd ------------------------------------------------------------------------


@pytest.fixture(params=["command", "module"])
def zstd_via(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read zstd through the zstd command (module hidden) or the zstandard module."""
    if request.param == "command":
        if shutil.which("zstd") is None:
            pytest.skip("needs the zstd command")
        monkeypatch.setitem(sys.modules, "zstandard", None)  # its import fails
    else:
        pytest.importorskip("zstandard")
    return str(request.param)


@needs_dpkg_deb
def test_zstd(tmp_path: Path, zstd_via: str) -> None:
    path = dpkg_build(build_tree(tmp_path / "tree"), tmp_path / "t.deb", compression="zstd")
    dest = tmp_path / "out"
    unpack(path, dest)
    assert (dest / "bin" / "tool").read_text() == "#!/bin/sh\necho tool\n"
    assert os.readlink(dest / "lib" / MULTIARCH / "libtool.so") == "libtool.so.1"


@needs_dpkg_deb
def test_zstd_truncated_inside_the_stream(tmp_path: Path, zstd_via: str) -> None:
    # Enough content that the cut falls inside the tar, not in its padding.
    tree = build_tree(tmp_path / "tree")
    (tree / "usr" / "share" / "big").write_bytes(os.urandom(200_000))
    good = dpkg_build(tree, tmp_path / "t.deb", compression="zstd")
    path = cut_data_member(good, tmp_path / "cut.deb")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CpkError, match=r"cut\.deb: data\.tar\.zst: truncated or corrupt"):
        extract_data(read_deb(path), dest)


def test_zstd_without_module_or_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setattr(deb.shutil, "which", lambda _name: None)
    control = tar_bytes([file_("./control", b"Package: a\nVersion: 1\nArchitecture: all\n")], "gz")
    path = tmp_path / "z.deb"
    path.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", control),
                ("data.tar.zst", b"(\xb5/\xfd not really"),
            ]
        )
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CpkError, match=r"z\.deb: data\.tar\.zst: is zstd-compressed; install"):
        extract_data(read_deb(path), dest)


# --- bad input -----------------------------------------------------------------


def cut_data_member(good: Path, out: Path) -> Path:
    """Cut the data member's compressed bytes in half, headers kept consistent."""
    pkg = read_deb(good)
    raw = good.read_bytes()
    members = []
    offset = 8
    while offset < len(raw):
        name = raw[offset : offset + 16].decode().strip()
        size = int(raw[offset + 48 : offset + 58])
        data = raw[offset + 60 : offset + 60 + size]
        if name == pkg.data.name:
            data = data[: len(data) // 2]
        members.append((name, data))
        offset += 60 + size + (size & 1)
    out.write_bytes(ar_archive(members))
    return out


@needs_dpkg_deb
@pytest.mark.parametrize("keep", [7, 40, 100, 0.5, -1])
def test_truncated_deb(built_deb: Path, tmp_path: Path, keep: float) -> None:
    raw = built_deb.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path = tmp_path / "cut.deb"
    path.write_bytes(raw[:n])
    with pytest.raises(CpkError, match=r"^\S*cut\.deb: (truncated|not a Debian package)"):
        read_deb(path)


@needs_dpkg_deb
def test_data_truncated_inside_the_compressed_stream(built_deb: Path, tmp_path: Path) -> None:
    path = cut_data_member(built_deb, tmp_path / "cut.deb")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CpkError, match=r"cut\.deb: data\.tar\.xz: truncated or corrupt"):
        extract_data(read_deb(path), dest)


@pytest.mark.parametrize("comp", ["gz", "xz", "bz2", ""])
def test_every_cut_of_the_data_member_is_an_error(tmp_path: Path, comp: str) -> None:
    """A data member cut anywhere (ar headers consistent) never unpacks quietly."""
    entries = [dir_("./usr/"), file_("./usr/a", os.urandom(3000)), file_("./usr/b", b"b" * 700)]
    plain = tar_bytes(entries, "")
    data = tar_bytes(entries, comp)
    # Uncompressed, a cut after the first end-of-archive block loses nothing.
    content = -(-len(plain.rstrip(b"\0")) // 512) * 512
    end = len(data) if comp else content + 512
    control = tar_bytes([file_("./control", b"Package: a\nVersion: 1\nArchitecture: all\n")], "gz")
    # Every block boundary too: there tarfile alone sees a complete archive.
    cuts = sorted({*range(1, end, max(1, end // 40)), *range(512, end, 512), end - 1})
    for n, cut in enumerate(cuts):
        path = tmp_path / f"cut{n}.deb"
        suffix = f".{comp}" if comp else ""
        path.write_bytes(
            ar_archive(
                [
                    ("debian-binary", b"2.0\n"),
                    ("control.tar.gz", control),
                    (f"data.tar{suffix}", data[:cut]),
                ]
            )
        )
        dest = tmp_path / f"out{n}"
        dest.mkdir()
        with pytest.raises(CpkError, match=rf"cut{n}\.deb: data\.tar{suffix}: (truncated|corrupt)"):
            extract_data(read_deb(path), dest)


def test_not_an_ar_file(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    path.write_bytes(b"PK\x03\x04 a zip file, really")
    with pytest.raises(CpkError, match=r"x\.deb: not a Debian package"):
        read_deb(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CpkError, match=r"nope\.deb: No such file"):
        read_deb(tmp_path / "nope.deb")


def test_missing_control(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    data = tar_bytes([file_("./usr/x")], "gz")
    path.write_bytes(ar_archive([("debian-binary", b"2.0\n"), ("data.tar.gz", data)]))
    with pytest.raises(CpkError, match=r"x\.deb: no control\.tar member"):
        read_deb(path)


def test_control_tar_without_control_file(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    control = tar_bytes([file_("./md5sums", b"")], "gz")
    data = tar_bytes([file_("./usr/x")], "gz")
    path.write_bytes(
        ar_archive(
            [("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]
        )
    )
    with pytest.raises(CpkError, match=r"x\.deb: control\.tar\.gz: no control file inside"):
        read_deb(path)


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ("Version: 1\nArchitecture: all\n", "no Package field"),
        ("Package: a\nArchitecture: all\n", "no Version field"),
        ("Package: a b\nVersion: 1\nArchitecture: all\n", "not a valid package name"),
        (" continued\nPackage: a\n", "line 1 continues a field that never started"),
        ("Package: a\nnot a field\n", "line 2 is not 'Field: value'"),
        ("Package: a\nVersion: 1\nArchitecture: all\nDepends: a (>= \n", "Depends: cannot"),
    ],
)
def test_bad_control(tmp_path: Path, control: str, message: str) -> None:
    path = hand_deb(tmp_path / "x.deb", [], control=control)
    with pytest.raises(CpkError, match=rf"x\.deb: .*{message}"):
        read_deb(path)


def test_unsupported_format_version(tmp_path: Path) -> None:
    path = hand_deb(tmp_path / "x.deb", [], version=b"3.0\n")
    with pytest.raises(CpkError, match=r"x\.deb: debian-binary says format '3\.0'"):
        read_deb(path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file_("../evil")], r"member '\.\./evil' contains '\.\.'"),
        ([file_("./usr/../../evil")], r"contains '\.\.'"),
        ([file_("/etc/passwd")], r"member '/etc/passwd' has an absolute name"),
        ([member("./dev/sda", tarfile.BLKTYPE)], "is a device node"),
        ([member("./dev/null", tarfile.CHRTYPE)], "is a device node"),
        ([member("./run/fifo", tarfile.FIFOTYPE)], "is a FIFO"),
        ([symlink("./usr/bin/x", "../../../etc/passwd")], "outside the package"),
        ([member("./usr/x", tarfile.LNKTYPE, link="/etc/passwd")], "hard link"),
        ([member("./usr/x", tarfile.LNKTYPE, link="./usr/later")], "hard link"),
        ([file_("./.cpk/entry.json")], "a name the store reserves"),
        (
            [symlink("./usr/lib", "share"), file_("./usr/lib/x")],
            r"lies below 'lib', which is not a directory",
        ),
        (
            [file_("./usr/bin/a", b"one\n"), file_("./bin/a", b"two\n")],
            r"'\./bin/a' and '\./usr/bin/a' both map to 'bin/a' with different content",
        ),
    ],
)
def test_bad_members_are_refused(
    tmp_path: Path, entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    path = hand_deb(tmp_path / "bad.deb", entries)
    box = tmp_path / "box"
    dest = box / "dest"
    dest.mkdir(parents=True)
    before = tree_snapshot(tmp_path)
    pkg = read_deb(path)
    with pytest.raises(CpkError, match=rf"bad\.deb: .*{message}"):
        extract_data(pkg, dest)
    # Nothing was written outside dest.
    after = tree_snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("box/dest/")} == before


# --- real packages -----------------------------------------------------------------


def _cached_deb() -> Path | None:
    cache = Path("/var/cache/apt/archives")
    debs = sorted(cache.glob("jq_*.deb")) or sorted(cache.glob("*.deb"), key=os.path.getsize)
    return debs[0] if debs else None


def test_real_deb_from_the_apt_cache(tmp_path: Path) -> None:
    path = _cached_deb()
    if path is None:
        pytest.skip("no .deb in the apt cache")
    check_real_deb(path, tmp_path)


@pytest.mark.network
def test_real_deb_downloaded(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get")
    subprocess.run(["apt-get", "download", "jq"], cwd=tmp_path, check=True, capture_output=True)
    (path,) = tmp_path.glob("jq_*.deb")
    check_real_deb(path, tmp_path)


def check_real_deb(path: Path, tmp_path: Path) -> None:
    """Our reading agrees with dpkg-deb's on fields and on every file's bytes."""
    pkg = read_deb(path)
    dest = tmp_path / "ours"
    dest.mkdir()
    extract_data(pkg, dest)
    assert not (dest / "usr").exists()
    if DPKG_DEB is None:
        return
    for name in ("Package", "Version", "Architecture"):
        shown = subprocess.run(
            [DPKG_DEB, "--field", str(path), name], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert pkg.control_field(name) == shown
    theirs = tmp_path / "theirs"
    subprocess.run([DPKG_DEB, "-x", str(path), str(theirs)], check=True)
    compared = 0
    for dirpath, _dirnames, filenames in os.walk(theirs):
        for name in filenames:
            full = Path(dirpath, name)
            ours = dest / map_path(str(full.relative_to(theirs)))
            if full.is_symlink():
                # Absolute targets were rewritten; both must resolve to the same file.
                if full.resolve().is_relative_to(theirs.resolve()):
                    assert ours.resolve().relative_to(dest.resolve()) == Path(
                        map_path(str(full.resolve().relative_to(theirs.resolve())))
                    )
                continue
            assert ours.read_bytes() == full.read_bytes(), ours
            assert bool(os.stat(ours).st_mode & 0o111) == bool(os.stat(full).st_mode & 0o111)
            compared += 1
    assert compared > 0
