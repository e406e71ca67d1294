"""The Debian archive as a source: a signed archive built and served by the test.

The archive (``support.debs.Archive``) is signed with a throwaway key made
by ``gpg``; the server is a separate process on 127.0.0.1, stopped by pid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.debs import GPG, Archive, Deb, Server
from support.elfbuild import build_exe, build_lib

from contentpkg.context import Bucket, Context
from contentpkg.elf.archive.resolve import Package, Universe, resolve
from contentpkg.elf.archive.sources import read_sources
from contentpkg.errors import NotFoundError, ResolutionError

needs_gpg = pytest.mark.skipif(GPG is None, reason="needs gpg to sign a test archive")


# -- resolution, on in-memory indexes (the resolver does no I/O) -------------


def _universe(*stanzas: dict[str, str], arch: str = "amd64") -> Universe:
    packages = []
    for s in stanzas:
        fields = {"Architecture": arch, "Version": "1.0", **s}
        fields.setdefault("Filename", f"pool/{fields['Package']}.deb")
        packages.append(Package(fields, "http://example.invalid/debian"))
    return Universe(packages, arch)


def _names(universe: Universe, *names: str, recommends: bool = False) -> list[str]:
    return [p.name for p in resolve(universe, names, recommends=recommends).packages]


def test_alternatives_take_the_first_available_or_one_already_chosen() -> None:
    u = _universe(
        {"Package": "app", "Depends": "missing-one | libb, liba"},
        {"Package": "liba", "Depends": "libc2 | libb"},
        {"Package": "libb"},
        {"Package": "libc2"},
    )
    # "missing-one" is in no index: the next alternative, libb, is taken;
    # liba's "libc2 | libb" is then met by libb, already chosen.
    assert _names(u, "app") == ["app", "libb", "liba"]


def test_virtual_packages_and_versioned_provides() -> None:
    u = _universe(
        {"Package": "app", "Depends": "mail-transport-agent, libfoo-abi (>= 2)"},
        {"Package": "postfix", "Provides": "mail-transport-agent"},
        {"Package": "libfoo1", "Provides": "libfoo-abi (= 1)"},
        {"Package": "libfoo2", "Provides": "libfoo-abi (= 2)"},
    )
    assert _names(u, "app") == ["app", "postfix", "libfoo2"]


def test_versions_follow_debian_ordering_with_epochs_and_tilde() -> None:
    u = _universe(
        {"Package": "app", "Depends": "lib (>= 1:1.0~rc1)"},
        {"Package": "lib", "Version": "9.9"},  # no epoch: older than any 1:x
        {"Package": "lib", "Version": "1:1.0~rc1"},
        {"Package": "lib", "Version": "1:0.5"},
    )
    chosen = resolve(u, ["app"]).packages
    assert [(p.name, p.version) for p in chosen] == [("app", "1.0"), ("lib", "1:1.0~rc1")]
    strict = _universe(
        {"Package": "app", "Depends": "lib (>> 1:1.0)"},
        {"Package": "lib", "Version": "1:1.0~rc1"},
    )
    with pytest.raises(ResolutionError) as err:
        resolve(strict, ["app"])
    assert "lib (>> 1:1.0)" in str(err.value) and "\n" not in str(err.value)


def test_multi_arch_qualifiers() -> None:
    u = _universe(
        {"Package": "app", "Depends": "python3:any, tool:any | tool-fallback, helper:amd64"},
        {"Package": "python3", "Multi-Arch": "allowed"},
        {"Package": "tool"},  # not Multi-Arch: allowed, so tool:any is not met
        {"Package": "tool-fallback"},
        {"Package": "helper", "Multi-Arch": "foreign"},
        {"Package": "other-arch", "Architecture": "arm64"},
    )
    assert _names(u, "app") == ["app", "python3", "tool-fallback", "helper"]
    foreign = _universe({"Package": "app", "Depends": "helper:arm64"}, {"Package": "helper"})
    with pytest.raises(ResolutionError, match="helper:arm64"):
        resolve(foreign, ["app"])
    with pytest.raises(NotFoundError, match="no such package for amd64"):
        resolve(u, ["other-arch"])


def test_base_system_policy_leaves_out_glibc_and_essential_programs_not_libraries() -> None:
    u = _universe(
        {"Package": "app", "Depends": "libc6 (>= 2.34), coreutils, zlib1g, sed | busybox"},
        {"Package": "libc6", "Section": "libs"},
        {"Package": "coreutils", "Essential": "yes", "Pre-Depends": "libc6, libacl1"},
        {"Package": "sed", "Essential": "yes", "Section": "utils"},
        {"Package": "libacl1", "Section": "libs"},
        {"Package": "zlib1g", "Section": "libs"},
        {"Package": "dpkg", "Essential": "yes", "Depends": "zlib1g"},
        {"Package": "busybox"},
    )
    result = resolve(u, ["app"])
    # zlib1g is in the Essential closure (dpkg needs it) but is a library:
    # an env dir takes no library from the system but glibc.
    assert [p.name for p in result.packages] == ["app", "zlib1g"]
    assert set(result.system) == {"libc6", "coreutils", "sed"}
    # Named by the user, an Essential package is fetched all the same.
    assert _names(u, "coreutils") == ["coreutils", "libacl1"]


def test_recommends_only_when_asked() -> None:
    u = _universe(
        {"Package": "app", "Recommends": "extra, gone"},
        {"Package": "extra"},
    )
    assert _names(u, "app") == ["app"]
    result = resolve(u, ["app"], recommends=True)
    assert [p.name for p in result.packages] == ["app", "extra"]
    assert any("gone" in n for n in result.notes)


# -- apt sources ---------------------------------------------------------------


def test_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb deb-src\nURIs: http://a.invalid/debian\nSuites: s1 s1-updates\n"
        "Components: main contrib\nSigned-By: /k/a.gpg\n\n"
        "Types: deb\nURIs: http://off.invalid\nSuites: x\nComponents: main\nEnabled: no\n"
    )
    (tmp_path / "b.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k/b.gpg] http://b.invalid/d s2 main\n"
        "deb-src http://b.invalid/d s2 main\n"
    )
    sources = read_sources([tmp_path], apt_dir=tmp_path / "no-apt")
    got = [(s.uri, s.suite, s.components, s.keyrings, s.architectures) for s in sources]
    assert got == [
        ("http://a.invalid/debian", "s1", ("main", "contrib"), (Path("/k/a.gpg"),), ()),
        ("http://a.invalid/debian", "s1-updates", ("main", "contrib"), (Path("/k/a.gpg"),), ()),
        ("http://b.invalid/d", "s2", ("main",), (Path("/k/b.gpg"),), ("amd64",)),
    ]


# -- a served, signed archive --------------------------------------------------


def _lib_debs(work: Path) -> list[Deb]:
    """hello (a real program) -> libgreet1 (a real library), plus doc packages."""
    lib = build_lib(work / "libgreet.so.1", "greet", "greetings", soname="libgreet.so.1")
    exe = build_exe(work / "hello", ["greet"], libs=[lib])
    return [
        Deb(
            "hello",
            "1:2.0-1",
            fields={"Depends": "libgreet1 (>= 1.0), libc6 (>= 2.2)"},
            files={"usr/bin/hello": exe.read_bytes()},
        ),
        Deb(
            "libgreet1",
            "1.1-1",
            fields={"Section": "libs", "Multi-Arch": "same"},
            files={"usr/lib/x86_64-linux-gnu/libgreet.so.1": lib.read_bytes()},
        ),
        Deb(
            "libgreet1",
            "1.0-1",
            fields={"Section": "libs"},
            files={"usr/lib/x86_64-linux-gnu/libgreet.so.1": lib.read_bytes()},
        ),
        Deb("libc6", "2.36-9", fields={"Section": "libs"}),
        *[
            Deb(
                f"doc{i}",
                "1.0",
                architecture="all",
                fields={"Depends": f"doc{i + 1}" if i < 5 else ""},
            )
            for i in range(6)
        ],
    ]


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    if GPG is None:
        pytest.skip("needs gpg to sign a test archive")
    if os.uname().machine != "x86_64":
        pytest.skip("the test archive is amd64")
    arch = Archive(tmp_path / "archive", debs=_lib_debs(tmp_path / "build"))
    arch.make_key()
    yield arch
    arch.stop_agent()


@pytest.fixture
def served(archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    server = Server(archive.root, tmp_path / "requests.log")
    (tmp_path / "apt").mkdir()
    sources = tmp_path / "apt" / "test.sources"
    sources.write_text(archive.sources(server.url))
    monkeypatch.setenv("CPK_APT_SOURCES", str(sources))
    yield archive, server
    server.stop()


def _cache() -> Path:
    return Context.from_environ().bucket(Bucket.DEBIAN)


def _store() -> Path:
    return Context.from_environ().store_dir


def test_fetch_resolves_downloads_verifies_and_adds(served: tuple[Archive, Server]) -> None:
    archive, server = served
    archive.build()
    dry = run_cpk("fetch", "--deb", "--dry-run", "hello")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split("\n")[:2] == ["hello 1:2.0-1", "libgreet1 1.1-1"]
    assert not any(p.endswith(".deb") for p in server.requests())
    assert not _store().exists() or not list(_store().glob("*,*"))
    proc = run_cpk("fetch", "--deb", "hello", "doc0")
    assert proc.returncode == 0, proc.stderr
    assert "from the system (not fetched): libc6" in proc.stderr
    ls = run_cpk("store", "ls", "--json", check=True).stdout
    import json

    names = sorted((e["name"], e["version"]) for e in json.loads(ls))
    # The highest libgreet1 meeting ">= 1.0"; the epoch is kept out of the entry name.
    assert names == [
        *[(f"doc{i}", "1.0") for i in range(6)],
        ("hello", "2.0-1"),
        ("libgreet1", "1.1-1"),
    ]
    debs = [p for p in server.requests() if p.endswith(".deb")]
    assert len(debs) == 8
    # By hash, as the Release says Acquire-By-Hash: yes.
    assert any("/by-hash/SHA256/" in p for p in server.requests())

    # Again: indexes revalidated, nothing downloaded, nothing added.
    before = len(server.requests())
    again = run_cpk("fetch", "--deb", "hello", "doc0")
    assert again.returncode == 0, again.stderr
    new = server.requests()[before:]
    assert [p for p in new if p.endswith(".deb")] == []
    assert [p for p in new if "Packages" in p or "by-hash" in p] == []
    assert "0 added, 8 already in the store" in again.stderr


def test_install_fetches_what_the_store_lacks_and_runs(
    served: tuple[Archive, Server], tmp_path: Path
) -> None:
    archive, _server = served
    archive.build()
    where = tmp_path / "where"
    proc = run_cpk("install", "hello", where)
    assert proc.returncode == 0, proc.stderr
    import subprocess

    assert (
        subprocess.run([where / "bin" / "hello"], capture_output=True, text=True, check=True).stdout
        == "greetings\n"
    )


def _refused(args: tuple[str, ...], message: str) -> None:
    store_before, cache_before = tree_snapshot(_store()), tree_snapshot(_cache() / "indexes")
    proc = run_cpk(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(_store()) == store_before
    assert tree_snapshot(_cache() / "indexes") == cache_before


def test_unsigned_index_refused(served: tuple[Archive, Server]) -> None:
    served[0].build(sign=False)
    _refused(("fetch", "--deb", "hello"), "not signed")


def test_index_signed_by_another_key_refused(
    served: tuple[Archive, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, server = served
    archive.build()
    other = Archive(tmp_path / "other")
    other.make_key()
    other.stop_agent()
    sources = tmp_path / "apt" / "test.sources"
    sources.write_text(archive.sources(server.url, keyring=other.keyring))
    _refused(("fetch", "--deb", "hello"), "signed by a key not in")


def test_expired_index_refused(served: tuple[Archive, Server]) -> None:
    served[0].build(valid_until=time.time() - 3600)
    _refused(("fetch", "--deb", "hello"), "expired on")


def test_index_whose_hash_differs_from_release_refused(served: tuple[Archive, Server]) -> None:
    served[0].build(tamper_packages=True)
    _refused(("fetch", "--deb", "hello"), " from the signed Release, got ")


def test_deb_whose_sha256_differs_refused(served: tuple[Archive, Server]) -> None:
    archive, _server = served
    archive.build()
    # Rebuilt after the index was written: other bytes than it vouches for.
    deb = next(d for d in archive.debs if d.name == "doc3")
    deb.files = {"usr/share/doc/doc3/README": b"tampered\n"}
    deb.build(archive.root / deb.filename())
    store_before = tree_snapshot(_store())
    proc = run_cpk("fetch", "--deb", "doc3")
    assert proc.returncode != 0
    assert "doc3_1.0_all.deb: sha256 mismatch (expected " in proc.stderr
    assert "from the index, got " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_snapshot(_store()) == store_before
    # Only verified downloads are cached (doc4 and doc5, which doc3 needs).
    import hashlib

    cached = list((_cache() / "debs").glob("*.deb"))
    assert len(cached) <= 2
    for path in cached:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem


# -- point 5: many .debs in one store add; re-add without unpacking -------------


def test_store_add_many_debs_in_parallel_and_readd_unpacks_nothing(tmp_path: Path) -> None:
    paths = [
        Deb(f"pkg{i}", f"1.{i}", architecture="all").build(tmp_path / f"pkg{i}.deb")
        for i in range(8)
    ]
    proc = run_cpk("store", "add", "--jobs", "2", *paths)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("added: ") == 8
    assert len(proc.stdout.split()) == 8
    staging = _store() / ".staging"
    staging.mkdir(exist_ok=True)
    before = os.stat(staging).st_mtime_ns, tree_snapshot(_store())
    time.sleep(0.01)  # so that a slot made and removed would move the mtime
    again = run_cpk("store", "add", *paths)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already present: ") == 8
    # No staging slot was made: nothing was unpacked, patched or hashed again.
    assert (os.stat(staging).st_mtime_ns, tree_snapshot(_store())) == before


def test_store_add_many_reports_each_bad_path_and_keeps_the_rest(tmp_path: Path) -> None:
    good = Deb("good", "1.0", architecture="all").build(tmp_path / "good.deb")
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"")
    proc = run_cpk("store", "add", good, bad)
    assert proc.returncode == 1
    assert "added: good,1.0," in proc.stderr
    assert "cpk: error: " in proc.stderr and "bad.deb: not a Debian package" in proc.stderr
    with_name = run_cpk("store", "add", "--name", "x", good, bad)
    assert with_name.returncode != 0 and "apply to one path" in with_name.stderr


def test_missing_libraries_are_named_by_package(
    served: tuple[Archive, Server], tmp_path: Path
) -> None:
    archive, server = served
    archive.build()
    # Added by hand: the .deb's own Depends name the package.
    hello = next(d for d in archive.debs if d.name == "hello")
    run_cpk("store", "add", archive.root / hello.filename(), check=True)
    proc = run_cpk("install", "hello", tmp_path / "w1")
    assert proc.returncode != 0
    assert "missing libraries: libgreet.so.1" in proc.stderr
    assert "libgreet.so.1: in package libgreet1 (a Depends of hello)" in proc.stderr
    assert not any(p.endswith("InRelease") for p in server.requests())

    # Fetched from the archive, then its library lost: the archive's closure is named.
    import shutil

    home = {"CPK_HOME": str(tmp_path / "home2")}  # a store without the hand-added hello
    run_cpk("fetch", "--deb", "hello", check=True, env=home)
    for entry in (tmp_path / "home2" / "store").glob("libgreet1,*"):
        for d, _dirs, _files in os.walk(entry):
            os.chmod(d, 0o755)
        shutil.rmtree(entry)
    proc = run_cpk("install", "hello", tmp_path / "w2", env=home)
    assert proc.returncode != 0
    assert "the store lacks these packages of the archive's dependency closure: libgreet1" in (
        proc.stderr
    )


def test_a_busy_mirror_is_asked_again(served: tuple[Archive, Server]) -> None:
    archive, server = served
    archive.build()
    deb = next(d for d in archive.debs if d.name == "doc5")
    (archive.root / (deb.filename() + ".fail-once")).touch()
    proc = run_cpk("fetch", "--deb", "doc5")
    assert proc.returncode == 0, proc.stderr
    assert [p for p in server.requests() if p.endswith(deb.filename())] != []
    # The 503 and the retry that succeeded: two requests for the one file.
    assert sum(1 for p in server.requests() if p.endswith(deb.filename())) == 2
