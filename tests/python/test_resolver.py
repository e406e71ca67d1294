"""The resolver against a real index on loopback, with wheels and sdists built here."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.index import LocalIndex
from support.wheels import make_sdist, make_wheel, metadata_text

from contentpkg.errors import CpkError, ResolutionError
from contentpkg.python.index.client import IndexClient
from contentpkg.python.index.dists import DistFile, Resolution
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.python.resolve.resolver import resolve
from contentpkg.store import Store

Factory = Callable[..., IndexClient]


def versions(resolution: Resolution) -> dict[str, str]:
    return {name: pin.version for name, pin in resolution.pins.items()}


def wheel(index: LocalIndex, name: str, version: str, *deps: str, **kwargs: object) -> Path:
    return make_wheel(index.root, name, version, requires_dist=deps, **kwargs)  # type: ignore[arg-type]


# -- markers and extras ------------------------------------------------------------


def test_markers_are_evaluated_for_the_target(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(
        local_index,
        "app",
        "1.0",
        "modern; python_version >= '3'",
        "ancient; python_version < '3'",
        "exotic; sys_platform == 'plan9'",
    )
    wheel(local_index, "modern", "1.0")
    result = resolve(["app", "ancient; python_version < '3'"], index_client, target)
    assert versions(result) == {"app": "1.0", "modern": "1.0"}
    assert result.pins["app"].dependencies == ("modern",)
    assert [str(r) for r in result.requirements] == ["app", 'ancient; python_version < "3"']
    assert result.python_version == target.version and result.markers == target.markers
    # Neither the excluded dependency nor the excluded root was even looked up.
    assert not {"/simple/ancient/", "/simple/exotic/"} & set(local_index.paths())


def test_extras_add_dependencies_on_the_same_version(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    for version, helper in (("1.0", "speedup<2"), ("2.0", "speedup>=2")):
        wheel(
            local_index,
            "lib",
            version,
            "base-dep",
            f"{helper}; extra == 'fast'",
            "docs-tool; extra == 'docs'",
            provides_extra=["fast", "docs"],
        )
    for version in ("1.0", "2.0"):
        wheel(local_index, "speedup", version)
    wheel(local_index, "base-dep", "1.0")
    assert versions(resolve(["lib"], index_client, target)) == {"lib": "2.0", "base-dep": "1.0"}
    result = resolve(["lib[fast]", "lib<2"], index_client, target)
    assert versions(result) == {"lib": "1.0", "base-dep": "1.0", "speedup": "1.0"}
    assert result.pins["lib"].dependencies == ("base-dep", "speedup")
    result = resolve(["lib[FAST]>=2"], index_client, target)  # extras are normalized
    assert versions(result) == {"lib": "2.0", "base-dep": "1.0", "speedup": "2.0"}


# -- which versions are allowed -----------------------------------------------------


def test_yanked_versions_are_skipped_unless_pinned_exactly(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "pkg", "1.0")
    bad = wheel(local_index, "pkg", "1.1")
    local_index.yank(bad.name, "broken release")
    assert versions(resolve(["pkg"], index_client, target)) == {"pkg": "1.0"}
    assert versions(resolve(["pkg>=1.0"], index_client, target)) == {"pkg": "1.0"}
    result = resolve(["pkg==1.1"], index_client, target)
    assert versions(result) == {"pkg": "1.1"}
    assert result.pins["pkg"].files[0].yanked == "broken release"
    with pytest.raises(CpkError) as info:
        resolve(["pkg>1.0"], index_client, target)
    assert str(info.value) == "no usable version of pkg matches pkg>1.0"
    assert "pkg 1.1 is yanked (broken release)" in info.value.details


def test_prereleases_only_when_asked_specified_or_nothing_else(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "pre", "1.0")
    wheel(local_index, "pre", "2.0b1")
    wheel(local_index, "only-pre", "0.1a1")
    assert versions(resolve(["pre"], index_client, target)) == {"pre": "1.0"}
    assert versions(resolve(["pre"], index_client, target, prereleases=True)) == {"pre": "2.0b1"}
    assert versions(resolve(["pre>=2.0b1"], index_client, target)) == {"pre": "2.0b1"}
    assert versions(resolve(["pre>1"], index_client, target)) == {"pre": "2.0b1"}
    assert versions(resolve(["only-pre"], index_client, target)) == {"only-pre": "0.1a1"}


def test_requires_python_excludes_versions(
    local_index: LocalIndex,
    index_client: IndexClient,
    client_factory: Factory,
    target: InterpreterInfo,
    tmp_path: Path,
) -> None:
    wheel(local_index, "rp", "1.0", requires_python=">=3")
    newer = wheel(local_index, "rp", "2.0", requires_python=">=3.99")
    local_index.set_requires_python(newer.name, ">=3.99")  # as data-requires-python
    assert versions(resolve(["rp"], index_client, target)) == {"rp": "1.0"}
    assert f"/files/{newer.name}.metadata" not in local_index.paths()
    assert resolve(["rp"], index_client, target).pins["rp"].requires_python == ">=3"
    # A find-links directory publishes nothing: the metadata decides.
    links = tmp_path / "links"
    make_wheel(links, "rp", "1.0", requires_python=">=3")
    make_wheel(links, "rp", "2.0", requires_python=">=3.99")
    assert versions(resolve(["rp"], client_factory(find_links=[links]), target)) == {"rp": "1.0"}
    with pytest.raises(CpkError) as info:
        resolve(["rp>=2"], index_client, target)
    assert str(info.value) == "no usable version of rp matches rp>=2"
    assert info.value.details == [
        "requested: rp>=2",
        f"rp 2.0 requires Python >=3.99 (target is {target.version})",
    ]


def test_target_tags_choose_the_wheel(
    local_index: LocalIndex,
    index_client: IndexClient,
    make_target: Callable[..., InterpreterInfo],
) -> None:
    for tag in (
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-macosx_11_0_arm64",
        "cp311-cp311-win_amd64",
        "cp310-cp310-manylinux_2_17_x86_64",
        "py3-none-any",
    ):
        wheel(local_index, "native", "1.0", tag=tag)
    linux = make_target(["manylinux_2_17_x86_64", "linux_x86_64"])
    mac = make_target(["macosx_11_0_arm64"], sys_platform="darwin")
    riscv = make_target(["linux_riscv64"])

    def chosen(python: InterpreterInfo) -> list[str]:
        return [f.filename for f in resolve(["native"], index_client, python).pins["native"].files]

    assert chosen(linux) == [
        "native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "native-1.0-py3-none-any.whl",
    ]
    assert chosen(mac)[0] == "native-1.0-cp311-cp311-macosx_11_0_arm64.whl"
    assert chosen(riscv) == ["native-1.0-py3-none-any.whl"]


def test_sdist_when_no_wheel_fits_and_releases_without_either_are_skipped(
    local_index: LocalIndex,
    index_client: IndexClient,
    make_target: Callable[..., InterpreterInfo],
) -> None:
    wheel(local_index, "mixed", "1.0", tag="py3-none-any")
    wheel(local_index, "mixed", "2.0", tag="cp311-cp311-win_amd64")  # no sdist: skipped
    wheel(local_index, "built", "1.0", "mixed", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_sdist(local_index.root, "built", "1.0", requires_dist=["mixed"])
    asked: list[str] = []

    def sdist_metadata(file: DistFile) -> bytes:
        asked.append(file.filename)
        return metadata_text("built", "1.0", ["mixed<2"]).encode()

    linux = make_target(["manylinux_2_17_x86_64", "linux_x86_64"])
    mac = make_target(["macosx_11_0_arm64"], sys_platform="darwin")
    result = resolve(["built"], index_client, linux, sdist_metadata=sdist_metadata)
    assert versions(result) == {"built": "1.0", "mixed": "1.0"}
    assert asked == [] and result.pins["built"].files[0].filename.endswith(
        "manylinux_2_17_x86_64.whl"
    )
    assert result.pins["built"].files[-1].filename == "built-1.0.tar.gz"
    result = resolve(["built"], index_client, mac, sdist_metadata=sdist_metadata)
    assert [f.filename for f in result.pins["built"].files] == ["built-1.0.tar.gz"]
    assert asked == ["built-1.0.tar.gz"]
    # Without a builder, an sdist with dynamic (pre-2.2) metadata cannot be read.
    with pytest.raises(
        CpkError, match=r"^built-1\.0\.tar\.gz: dependencies unknown without a build"
    ):
        resolve(["built"], index_client, mac)


def test_static_sdist_metadata_is_read_without_a_build(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    path = make_sdist(local_index.root, "static", "1.0")
    # Rewrite PKG-INFO as Metadata-Version 2.2 with a dependency and nothing dynamic.
    import io
    import tarfile

    members = []
    with tarfile.open(path) as tf:
        for info in tf.getmembers():
            data = tf.extractfile(info).read()  # type: ignore[union-attr]
            if info.name.endswith("/PKG-INFO"):
                data = b"Metadata-Version: 2.2\nName: static\nVersion: 1.0\nRequires-Dist: dep\n\n"
                info.size = len(data)
            members.append((info, data))
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data))
    wheel(local_index, "dep", "1.0")
    assert versions(resolve(["static"], index_client, target)) == {"static": "1.0", "dep": "1.0"}


def test_resolution_downloads_metadata_files_only(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "top", "1.0", "mid>=1")
    wheel(local_index, "mid", "1.0", "leaf")
    wheel(local_index, "mid", "2.0", "leaf")
    wheel(local_index, "leaf", "1.0")
    assert versions(resolve(["top"], index_client, target)) == {
        "leaf": "1.0",
        "mid": "2.0",
        "top": "1.0",
    }
    fetched = local_index.paths()
    assert not [p for p in fetched if p.endswith(".whl")]
    assert "/files/mid-2.0-py3-none-any.whl.metadata" in fetched


def test_constraints_and_preferences(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    for version in ("1.0", "1.5", "2.0"):
        wheel(local_index, "lib", version)
    assert versions(resolve(["lib"], index_client, target, constraints=["lib<2"])) == {"lib": "1.5"}
    # A constraint alone adds nothing to the environment.
    assert versions(resolve([], index_client, target, constraints=["lib<2"])) == {}
    kept = resolve(["lib"], index_client, target, preferences={"lib": "1.0"}, upgrade=False)
    assert versions(kept) == {"lib": "1.0"}
    upgraded = resolve(["lib"], index_client, target, preferences={"lib": "1.0"}, upgrade=True)
    assert versions(upgraded) == {"lib": "2.0"}
    stale = resolve(["lib>=1.5"], index_client, target, preferences={"lib": "1.0"}, upgrade=False)
    assert versions(stale) == {"lib": "2.0"}


def test_hashes_restrict_files(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    old = wheel(local_index, "h", "1.0")
    wheel(local_index, "h", "2.0")
    digest = hashlib.sha256(old.read_bytes()).hexdigest()
    result = resolve(["h"], index_client, target, hashes={"h": [f"sha256:{digest}"]})
    assert versions(result) == {"h": "1.0"}


def test_prefer_store_tries_stored_versions_first(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    from contentpkg.store.add import add_built

    wheel(local_index, "cached", "2.0")
    old = wheel(local_index, "cached", "1.0")
    wheel(local_index, "named", "1.0")
    wheel(local_index, "named", "3.0")
    store = Store.open()

    def populate(path: Path) -> None:
        (path / "marker.txt").write_text("stored\n")

    # One entry found by its source hash, one by its name and version.
    source = "sha256:" + hashlib.sha256(old.read_bytes()).hexdigest()
    add_built(store, "unrelated-name", "0", "wheel", populate, source_hash=source)
    add_built(store, "named", "1.0", "wheel", lambda p: populate(p))
    assert versions(resolve(["cached", "named"], index_client, target)) == {
        "cached": "2.0",
        "named": "3.0",
    }
    preferred = resolve(["cached", "named"], index_client, target, prefer_store=Store.open())
    assert versions(preferred) == {"cached": "1.0", "named": "1.0"}


# -- failures ------------------------------------------------------------------------


def test_conflict_explains_who_wants_what(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "app", "1.0", "b<2")
    wheel(local_index, "c", "1.0", "b>=2")
    wheel(local_index, "b", "1.0")
    wheel(local_index, "b", "2.0")
    with pytest.raises(CpkError) as info:
        resolve(["app", "c"], index_client, target)
    assert str(info.value) == "conflicting requirements for b"
    assert info.value.details == [
        "app 1.0 requires b<2",
        "c 1.0 requires b>=2",
        "no version of b satisfies both",
    ]


def test_conflict_shows_the_chain_from_the_roots(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "top", "1.0", "mid>=2")
    wheel(local_index, "mid", "1.0", "leaf")
    wheel(local_index, "mid", "2.0", "leaf>=3")
    wheel(local_index, "leaf", "1.0")
    with pytest.raises(ResolutionError) as info:
        resolve(["top"], index_client, target)
    assert str(info.value) == "no version of leaf matches leaf>=3"
    assert (
        info.value.chains
        == info.value.details
        == [
            "top 1.0 requires mid>=2",
            "mid 2.0 requires leaf>=3",
            "no version of leaf matches leaf>=3 (available: 1.0)",
        ]
    )


def test_root_conflict_and_missing_versions(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    wheel(local_index, "b", "1.0")
    wheel(local_index, "b", "2.0")
    with pytest.raises(CpkError) as info:
        resolve(["b>=5"], index_client, target)
    assert str(info.value) == "no version of b matches b>=5"
    assert info.value.details == [
        "requested: b>=5",
        "no version of b matches b>=5 (available: 2.0, 1.0)",
    ]


def test_unknown_project_is_named_with_the_index(
    local_index: LocalIndex, index_client: IndexClient, target: InterpreterInfo
) -> None:
    with pytest.raises(CpkError) as info:
        resolve(["no-such-thing"], index_client, target)
    assert str(info.value) == f"no project named no-such-thing on {local_index.url}"
    wheel(local_index, "app", "1.0", "Missing_Dep>=1")
    with pytest.raises(CpkError) as info:
        resolve(["app"], index_client, target)
    assert str(info.value) == f"no project named missing-dep on {local_index.url}"
    assert info.value.details == ["app 1.0 requires Missing_Dep>=1"]


def test_invalid_requirement_is_one_line(
    index_client: IndexClient, target: InterpreterInfo
) -> None:
    with pytest.raises(CpkError, match=r"^invalid requirement 'bad name!!': "):
        resolve(["bad name!!"], index_client, target)


def test_result_is_deterministic(
    local_index: LocalIndex, client_factory: Factory, target: InterpreterInfo, tmp_path: Path
) -> None:
    wheel(local_index, "z-app", "1.0", "m", "a", "q[x]")
    wheel(local_index, "q", "1.0", "a; extra == 'x'", provides_extra=["x"])
    for name in ("m", "a"):
        wheel(local_index, name, "1.0")
        wheel(local_index, name, "1.1")
    results = [
        resolve(["z-app"], client_factory(local_index.url, cache_dir=tmp_path / f"c{i}"), target)
        for i in range(2)
    ]
    assert list(results[0].pins) == ["a", "m", "q", "z-app"]
    assert results[0].pins == results[1].pins
    assert results[0].pins["z-app"].dependencies == ("a", "m", "q")


# -- the target interpreter ------------------------------------------------------------


def test_interpreter_info_for_the_running_interpreter() -> None:
    info = interpreter_info(None)
    assert info == interpreter_info(sys.executable)
    assert info.version.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert info.implementation == sys.implementation.name
    assert info.cache_tag == sys.implementation.cache_tag
    assert (
        info.site_packages == f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    )
    assert info.markers["python_full_version"] == info.version
    assert info.tags and info.tags[-1] == "py30-none-any"


def test_interpreter_info_asks_another_interpreter_once(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    wrapper = tmp_path / "bin" / "python-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    first = interpreter_info(wrapper)
    second = interpreter_info(str(wrapper))
    assert log.read_text().splitlines() == ["run"]  # the second answer came from the cache
    running = interpreter_info(None)
    assert first == second
    assert first.executable == str(wrapper)
    assert (first.version, first.tags, first.markers) == (
        running.version,
        running.tags,
        running.markers,
    )
    cached = list((Path(os.environ["CPK_CACHE_DIR"]) / "interpreters-v2").glob("*.json"))
    # One answer for the wrapper, one for the running interpreter (cached too,
    # so cpk run's hot path reads a file instead of probing the libc).
    assert len(cached) == 2
    assert all(json.loads(c.read_text())["version"] == running.version for c in cached)
    # A changed executable (an upgrade in place) is asked again.
    wrapper.write_text(wrapper.read_text() + "# upgraded\n")
    interpreter_info(wrapper)
    assert log.read_text().splitlines() == ["run", "run"]


def test_interpreter_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(CpkError, match=r"python .*missing/python: no such file"):
        interpreter_info(tmp_path / "missing" / "python")


@pytest.mark.network
def test_resolves_from_the_real_pypi(tmp_path: Path, target: InterpreterInfo) -> None:
    with IndexClient(["https://pypi.org/simple/"], cache_dir=tmp_path / "cache") as client:
        result = resolve(["requests>=2.30", "rich"], client, target)
    expected = {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "rich", "pygments"}
    assert expected <= set(result.pins)
    for pin in result.pins.values():
        assert pin.files and all(f.sha256 for f in pin.files)
        assert pin.index == "https://pypi.org/simple/"
