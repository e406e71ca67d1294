"""The union's ``--deb`` asks configured remotes before the Debian archive.

One machine enters a union of archive packages and pushes its store; a
second, with the registry configured, gets the same unmodified entries
from it: the archive still answers the resolution (its signed indexes),
but no ``.deb`` is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.debs import GPG, Archive, Deb, Server
from support.elfbuild import build_exe, build_lib
from support.registry import Registry, need_registry

from contentpkg.context import Bucket, Context
from contentpkg.env.union.entries import is_unmodified
from contentpkg.env.union.launch import prepare
from contentpkg.store import Store


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    if GPG is None:
        pytest.skip("needs gpg to sign a test archive")
    need_registry()
    if os.uname().machine != "x86_64":
        pytest.skip("the test archive is amd64")
    lib = build_lib(tmp_path / "libgreet.so.1", "greet", "greetings", soname="libgreet.so.1")
    exe = build_exe(tmp_path / "tool", ["greet"], libs=[lib])
    debs = [
        # A program (its RUNPATH rewritten in the patched entry, so its
        # unmodified entry is another), a library and a data package.
        Deb(
            "tool",
            "2.0-1",
            fields={"Depends": "libgreet1 (>= 1.0), tool-data"},
            files={"usr/bin/tool": exe.read_bytes()},
        ),
        Deb(
            "libgreet1",
            "1.1-1",
            fields={"Section": "libs"},
            files={"usr/lib/x86_64-linux-gnu/libgreet.so.1": lib.read_bytes()},
        ),
        Deb("tool-data", "1.0", architecture="all", files={"usr/share/tool/data": b"d\n" * 50}),
    ]
    archive = Archive(tmp_path / "archive", debs=debs)
    archive.make_key()
    archive.build()
    server = Server(archive.root, tmp_path / "requests.log")
    sources = tmp_path / "test.sources"
    sources.write_text(archive.sources(server.url))
    try:
        yield sources, server
    finally:
        server.stop()
        archive.stop_agent()


def _env(root: Path, sources: Path, remotes: str = "") -> dict[str, str]:
    return {
        "CPK_HOME": str(root / "home"),
        "CPK_CACHE_DIR": str(root / "cache"),
        "HOME": str(root),
        "CPK_APT_SOURCES": str(sources),
        "CPK_REMOTES": remotes,
    }


def _union(env: dict[str, str]) -> list[str]:
    ctx = Context.from_environ({**os.environ, **env})
    union = prepare(ctx, Store.open(ctx=ctx), [], ["tool"])
    # The ELF packages as shipped; the data package's one entry is that already.
    assert sorted(e.name for e in union.entries if is_unmodified(e)) == ["libgreet1", "tool"]
    return sorted(e.dirname for e in union.entries)


def test_enter_deb_takes_unmodified_entries_from_a_remote_before_the_archive(
    tmp_path: Path, served: tuple[Path, Server]
) -> None:
    sources, server = served
    key = tmp_path / "team.key"
    run_cpk("key", "generate", key, check=True)
    with Registry(tmp_path / "registry") as registry:
        url = f"oci://{registry.host}/union"
        one = _env(tmp_path / "one", sources)
        made = _union(one)
        assert [d.split(",")[0] for d in made] == ["libgreet1", "tool", "tool-data"]
        assert len([p for p in server.requests() if p.endswith(".deb")]) == 3
        run_cpk("store", "push", url, "--all", "--sign-key", key, env=one, check=True)

        two = _env(tmp_path / "two", sources, remotes=url)
        run_cpk("key", "trust", f"{key}.pub", env=two, check=True)
        before = len(server.requests())
        assert _union(two) == made
        assert [p for p in server.requests()[before:] if p.endswith(".deb")] == []
        debs = Context.from_environ(two).bucket(Bucket.DEBIAN) / "debs"
        assert not debs.exists() or not list(debs.glob("*.deb"))

        # Without the remote the archive serves as before.
        three = _env(tmp_path / "three", sources)
        assert _union(three) == made
        assert len([p for p in server.requests() if p.endswith(".deb")]) == 6
