"""The index client against a real index on loopback, serving wheels built here."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.index import LocalIndex
from support.wheels import make_sdist, make_wheel, wheel_metadata

from contentpkg.errors import CpkError, HashMismatchError
from contentpkg.python.index.client import (
    DEFAULT_INDEX,
    IndexClient,
    index_settings,
    parse_html_page,
    parse_json_page,
)
from contentpkg.python.index.dists import DistFile
from contentpkg.python.index.http import BodyTooLarge

Factory = Callable[..., IndexClient]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def essentials(files: list[DistFile]) -> list[tuple[object, ...]]:
    """What both page formats carry (size and upload time are JSON-only)."""
    return sorted(
        (f.filename, f.url, f.hashes, f.requires_python, f.yanked, f.core_metadata, f.index)
        for f in files
    )


@pytest.fixture
def populated(local_index: LocalIndex) -> LocalIndex:
    root = local_index.root
    make_wheel(root, "alpha", "1.0")
    make_wheel(root, "alpha", "2.0", requires_python=">=3.8")
    make_sdist(root, "alpha", "2.0")
    local_index.set_requires_python("alpha-2.0-py3-none-any.whl", ">=3.8")
    local_index.yank("alpha-1.0-py3-none-any.whl", "broken <build> & more")
    make_wheel(root, "beta", "0.1")
    return local_index


# -- parsing -------------------------------------------------------------------


def test_json_and_html_pages_describe_the_same_files(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    as_json = client_factory(populated.url).project_files("Alpha")
    populated.formats = ("html",)
    as_html = client_factory(populated.url, cache_dir=tmp_path / "other").project_files("alpha")
    accepts = [r.headers.get("Accept", "") for r in populated.requests]
    assert all("application/vnd.pypi.simple.v1+json" in a for a in accepts)
    assert essentials(as_json) == essentials(as_html)
    by_name = {f.filename: f for f in as_json}
    assert set(by_name) == {
        "alpha-1.0-py3-none-any.whl",
        "alpha-2.0-py3-none-any.whl",
        "alpha-2.0.tar.gz",
    }
    old, new, sdist = (by_name[n] for n in sorted(by_name))
    assert old.yanked == "broken <build> & more"
    assert new.yanked is None and new.requires_python == ">=3.8"
    assert new.sha256 == sha256(populated.root / new.filename)
    assert new.core_metadata == {
        "sha256": hashlib.sha256(wheel_metadata(populated.root / new.filename)).hexdigest()
    }
    assert sdist.core_metadata is None
    assert new.url == f"{populated.base_url}/files/{new.filename}"  # relative URL resolved
    assert new.index == populated.url
    assert (
        by_name["alpha-2.0-py3-none-any.whl"].size == (populated.root / new.filename).stat().st_size
    )


def test_html_parsing_of_links_base_and_legacy_attributes() -> None:
    page = """<!DOCTYPE html><html><head><base href="https://files.example/pkgs/"></head><body>
    <a href="a-1.0-py3-none-any.whl#sha256=ABCDEF" data-dist-info-metadata="true">a-1.0</a>
    <a href="sub/a-1.1.tar.gz" data-requires-python="&gt;=3.9,&lt;4" data-yanked>x</a>
    <a href="/abs/a-1.2-py3-none-any.whl" data-core-metadata="sha256=11"
       data-dist-info-metadata="sha256=22">x</a>
    <a href="a-1.3.egg">egg</a><a href="..%2Fevil-1.0.tar.gz">escape</a><a>no href</a>
    </body></html>"""
    files = parse_html_page(page, "https://index.example/simple/a/", "idx")
    assert [(f.filename, f.url) for f in files] == [
        ("a-1.0-py3-none-any.whl", "https://files.example/pkgs/a-1.0-py3-none-any.whl"),
        ("a-1.1.tar.gz", "https://files.example/pkgs/sub/a-1.1.tar.gz"),
        ("a-1.2-py3-none-any.whl", "https://files.example/abs/a-1.2-py3-none-any.whl"),
    ]
    assert files[0].hashes == {"sha256": "abcdef"} and files[0].core_metadata == {}
    assert files[1].requires_python == ">=3.9,<4" and files[1].yanked == ""
    assert files[2].core_metadata == {"sha256": "11"}  # PEP 714's name wins


def test_json_page_with_newer_major_version_is_refused() -> None:
    with pytest.raises(CpkError, match=r"simple API version 2\.0 is not supported"):
        parse_json_page(b'{"meta": {"api-version": "2.0"}, "files": []}', "https://x/simple/a/")


def test_links_resolve_against_the_url_after_redirects(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    populated.redirect("/simple/beta/", "/mirror/simple/beta/")
    client = client_factory(populated.url)
    (file,) = client.project_files("beta")
    assert file.url == f"{populated.base_url}/mirror/files/{file.filename}"
    assert (
        client.download(file, tmp_path / "out").read_bytes()
        == (populated.root / file.filename).read_bytes()
    )


def test_unknown_project_is_an_empty_list(index_client: IndexClient) -> None:
    assert index_client.project_files("does-not-exist") == []


# -- find-links and several indexes ----------------------------------------------


def test_find_links_directory_file_url_and_page(
    tmp_path: Path, local_index: LocalIndex, client_factory: Factory
) -> None:
    links = tmp_path / "links"
    wheel = make_wheel(links, "gamma", "1.0")
    make_wheel(links, "other", "1.0")
    (links / "notes.txt").write_text("not a distribution")
    for location in (str(links), links.as_uri()):
        files = client_factory(find_links=[location]).project_files("gamma")
        assert [(f.filename, f.sha256) for f in files] == [(wheel.name, sha256(wheel))]
        assert files[0].url == wheel.as_uri()
    local = client_factory(find_links=[str(links)], offline=True)
    copied = local.download(local.project_files("gamma")[0], tmp_path / "out")
    assert copied.read_bytes() == wheel.read_bytes()  # file URLs need no network
    make_wheel(local_index.root, "gamma", "2.0")
    page = client_factory(find_links=[local_index.links_url]).project_files("gamma")
    assert [f.filename for f in page] == ["gamma-2.0-py3-none-any.whl"]
    merged = client_factory(local_index.url, find_links=[str(links)]).project_files("gamma")
    assert sorted(f.filename for f in merged) == [
        "gamma-1.0-py3-none-any.whl",
        "gamma-2.0-py3-none-any.whl",
    ]


def test_missing_find_links_directory_is_named(client_factory: Factory, tmp_path: Path) -> None:
    with pytest.raises(CpkError, match=r"find-links .*nowhere: no such file or directory"):
        client_factory(find_links=[str(tmp_path / "nowhere")]).project_files("x")


def test_first_index_that_has_the_project_wins(tmp_path: Path, client_factory: Factory) -> None:
    with LocalIndex(tmp_path / "private") as private, LocalIndex(tmp_path / "public") as public:
        make_wheel(private.root, "internal", "1.0")
        make_wheel(public.root, "internal", "99.0")  # a dependency-confusion attempt
        make_wheel(public.root, "requests", "2.0")
        client = client_factory(private.url, public.url)
        assert [f.filename for f in client.project_files("internal")] == [
            "internal-1.0-py3-none-any.whl"
        ]
        assert "/simple/internal/" not in public.paths()
        assert [f.index for f in client.project_files("requests")] == [public.url]
        assert client.describe() == f"{private.url} or {public.url}"


def test_local_directory_as_an_index(tmp_path: Path, client_factory: Factory) -> None:
    wheel = make_wheel(tmp_path / "simple" / "delta", "delta", "3.0")
    files = client_factory(str(tmp_path / "simple")).project_files("delta")
    assert [(f.filename, f.sha256) for f in files] == [(wheel.name, sha256(wheel))]


# -- settings --------------------------------------------------------------------


def test_index_settings_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tool = {"index-url": "https://tool/simple", "extra-index-url": ["https://tool-extra/"]}
    tool["find-links"] = ["wheels"]
    assert index_settings(None, None, {}) == ([DEFAULT_INDEX], [])
    indexes, links = index_settings(None, None, tool, project_dir=tmp_path)
    assert indexes == ["https://tool-extra/", "https://tool/simple/"]
    assert links == [(tmp_path / "wheels").as_uri()]
    monkeypatch.setenv("CPK_INDEX_URL", "https://env/simple/")
    monkeypatch.setenv("CPK_EXTRA_INDEX_URL", "https://e1/ https://e2/")
    indexes, _ = index_settings(None, None, tool)
    assert indexes == ["https://e1/", "https://e2/", "https://env/simple/"]
    indexes, links = index_settings(["https://cli/simple/"], ["https://cli/links/"], tool)
    assert (indexes, links) == (["https://cli/simple/"], ["https://cli/links/"])
    with pytest.raises(CpkError, match=r"\[tool.cpk\] extra-index-url: expected a list"):
        index_settings(None, None, {"extra-index-url": [1]})


def test_index_settings_take_the_contexts_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Given a Context's index settings, the process environment is not read."""
    from contentpkg.context import Context

    monkeypatch.setenv("CPK_INDEX_URL", "https://process/simple/")
    ctx = Context.from_environ(
        {"HOME": str(tmp_path), "CPK_INDEX_URL": "https://ctx/simple", "CPK_FIND_LINKS": "/w"}
    )
    indexes, links = index_settings(None, None, {}, index_env=ctx.index)
    assert (indexes, links) == (["https://ctx/simple/"], ["file:///w"])
    assert index_settings(None, None, {})[0] == ["https://process/simple/"]


# -- HTTP caching ------------------------------------------------------------------


def test_second_lookup_revalidates_and_gets_304(
    populated: LocalIndex, client_factory: Factory
) -> None:
    first = client_factory(populated.url).project_files("beta")
    second = client_factory(populated.url).project_files("beta")
    assert first == second
    pages = [r for r in populated.requests if r.path == "/simple/beta/"]
    assert [r.status for r in pages] == [200, 304]
    assert "If-None-Match" not in pages[0].headers and pages[1].headers["If-None-Match"]


def test_fresh_page_is_served_without_a_request(
    populated: LocalIndex, client_factory: Factory
) -> None:
    populated.cache_control = "max-age=600, public"
    client_factory(populated.url).project_files("beta")
    populated.clear_log()
    assert [f.filename for f in client_factory(populated.url).project_files("beta")] == [
        "beta-0.1-py3-none-any.whl"
    ]
    assert populated.paths() == []


def test_page_without_freshness_headers_is_fresh_for_a_while_unless_refreshed(
    populated: LocalIndex, client_factory: Factory
) -> None:
    populated.cache_control = ""  # says nothing, as PyPI's mirrors do
    client_factory(populated.url).project_files("beta")
    populated.clear_log()
    client_factory(populated.url).project_files("beta")
    assert populated.paths() == []  # within the window: no request at all
    # --refresh: every page revalidated, with its validator, and a 304 is enough.
    assert [
        f.filename for f in client_factory(populated.url, refresh=True).project_files("beta")
    ] == ["beta-0.1-py3-none-any.whl"]
    assert [
        (r.path, r.status, bool(r.headers.get("If-None-Match"))) for r in populated.requests
    ] == [("/simple/beta/", 304, True)]


def test_parsed_pages_are_kept_by_the_page_body_and_a_changed_page_is_parsed_again(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    parsed = tmp_path / "cache" / "parsed-pages-v1"
    first = client_factory(populated.url).project_files("alpha")
    assert len(list(parsed.rglob("*.marshal"))) == 1
    again = client_factory(populated.url).project_files("alpha")
    assert again == first and [f.hashes for f in again] == [f.hashes for f in first]
    assert [f.core_metadata for f in again] == [f.core_metadata for f in first]
    assert len(list(parsed.rglob("*.marshal"))) == 1  # read back, not parsed anew
    make_wheel(populated.root, "alpha", "3.0")
    names = [f.filename for f in client_factory(populated.url).project_files("alpha")]
    assert "alpha-3.0-py3-none-any.whl" in names
    assert len(list(parsed.rglob("*.marshal"))) == 2


def test_no_store_pages_are_not_cached(populated: LocalIndex, client_factory: Factory) -> None:
    populated.cache_control = "no-store"
    client_factory(populated.url).project_files("beta")
    client_factory(populated.url).project_files("beta")
    pages = [r for r in populated.requests if r.path == "/simple/beta/"]
    assert [r.status for r in pages] == [200, 200]
    assert not any("If-None-Match" in r.headers for r in pages)


def test_offline_mode_never_touches_the_network(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    offline = client_factory(populated.url, offline=True, cache_dir=tmp_path / "empty")
    with pytest.raises(CpkError) as info:
        offline.project_files("beta")
    assert (
        str(info.value) == f"{populated.url}beta/: offline mode, fetching this page is not allowed"
    )
    assert populated.paths() == []
    client_factory(populated.url).project_files("beta")  # warms the shared cache
    populated.clear_log()
    files = client_factory(populated.url, offline=True).project_files("beta")
    assert [f.filename for f in files] == ["beta-0.1-py3-none-any.whl"]
    with pytest.raises(CpkError, match=r"offline mode, downloading beta-0\.1"):
        client_factory(populated.url, offline=True).download(files[0], tmp_path / "out")
    assert populated.paths() == []


# -- retries -------------------------------------------------------------------------


def test_server_errors_resets_and_truncation_are_retried(
    populated: LocalIndex, client_factory: Factory
) -> None:
    populated.fail("/simple/beta/", times=1, status=503)
    populated.reset("/simple/beta/", times=1)
    populated.truncate("/simple/beta/", times=1)
    files = client_factory(populated.url).project_files("beta")
    assert [f.filename for f in files] == ["beta-0.1-py3-none-any.whl"]
    assert [r.status for r in populated.requests] == [503, 0, 200, 200]


def test_truncated_download_is_retried(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    client = client_factory(populated.url)
    (file,) = client.project_files("beta")
    populated.truncate(populated.file_path(file.filename), times=2)
    path = client.download(file, tmp_path / "out")
    assert sha256(path) == file.sha256
    assert sorted(os.listdir(tmp_path / "out")) == [file.filename]
    assert populated.paths().count(populated.file_path(file.filename)) == 3


def test_exhausted_retries_give_one_line(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    client = client_factory(populated.url, retries=2)
    (file,) = client.project_files("beta")
    populated.truncate(populated.file_path(file.filename), times=10)
    with pytest.raises(CpkError) as info:
        client.download(file, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{file.filename}: truncated")
    assert message.endswith("(gave up after 3 attempts)")
    assert info.value.details == [f"from {file.url}"]
    assert os.listdir(tmp_path / "out") == []
    populated.fail("/simple/alpha/", times=10, status=500)
    with pytest.raises(CpkError, match=r"/simple/alpha/: HTTP 500 .*gave up after 3 attempts"):
        client.project_files("alpha")


# -- downloads and metadata ------------------------------------------------------------


def test_hash_mismatch_is_rejected_and_leaves_nothing(
    populated: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    client = client_factory(populated.url)
    (file,) = client.project_files("beta")
    populated.corrupt(file.filename)
    with pytest.raises(HashMismatchError) as info:
        client.download(file, tmp_path / "out")
    assert (info.value.subject, info.value.expected) == (file.filename, file.sha256)
    assert str(info.value).startswith(
        f"{file.filename}: sha256 mismatch (expected {file.sha256}, got "
    )
    # Where the other bytes came from, so a bad mirror can be told from a bad cache.
    assert str(info.value).endswith(f" from {file.url})")
    assert os.listdir(tmp_path / "out") == []


def test_download_many_in_parallel_reports_progress(
    local_index: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    for i in range(6):
        make_wheel(local_index.root, f"p{i}", "1.0", files={f"p{i}/data.bin": os.urandom(50_000)})

    class Recorder:
        def __init__(self) -> None:
            self.tasks: list[tuple[str, int | None, list[int], list[str | None]]] = []

        def task(self, label: str, total: int | None = None) -> object:
            record: tuple[str, int | None, list[int], list[str | None]] = (label, total, [], [])
            self.tasks.append(record)

            class Task:
                def advance(self, amount: int) -> None:
                    record[2].append(amount)

                def done(self, message: str | None = None) -> None:
                    record[3].append(message)

            return Task()

        def note(self, message: str) -> None:
            pass

    reporter = Recorder()
    client = client_factory(local_index.url, reporter=reporter)
    files = [client.project_files(f"p{i}")[0] for i in range(6)]
    paths = client.download_many(files, tmp_path / "out")
    assert [p.name for p in paths] == [f.filename for f in files]
    assert all(sha256(p) == f.sha256 for p, f in zip(paths, files, strict=True))
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f.filename for f in files)
    assert sorted(t[0] for t in reporter.tasks) == sorted(f.filename for f in files)
    for _label, total, advances, done in reporter.tasks:
        assert sum(advances) == total and done == [f"downloaded {_label}"]


def test_metadata_comes_from_pep658_files_without_the_wheel(
    populated: LocalIndex, client_factory: Factory
) -> None:
    client = client_factory(populated.url)
    wheel = next(f for f in client.project_files("alpha") if f.filename.startswith("alpha-2.0-"))
    assert client.metadata(wheel) == wheel_metadata(populated.root / wheel.filename)
    assert populated.paths() == ["/simple/alpha/", f"/files/{wheel.filename}.metadata"]
    populated.clear_log()
    # Cached on disk by the wheel's hash: another client asks nothing.
    assert client_factory(populated.url).metadata(wheel) == wheel_metadata(
        populated.root / wheel.filename
    )
    assert populated.paths() == []


def test_metadata_without_pep658_reads_the_wheel_once(
    local_index: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    local_index.metadata_files = False
    path = make_wheel(local_index.root, "plain", "1.0", requires_dist=["alpha>=1"])
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("plain")
    assert wheel.core_metadata is None
    assert b"Requires-Dist: alpha>=1" in client.metadata(wheel)
    client.download(wheel, tmp_path / "out")  # served from the copy fetched for metadata
    assert local_index.paths() == ["/simple/plain/", f"/files/{path.name}"]


def test_metadata_without_pep658_is_read_with_range_requests(
    local_index: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    local_index.metadata_files = False
    # Big enough (and incompressible) that reading the whole wheel would show.
    files = {f"big/part{i}.bin": os.urandom(100_000) for i in range(4)}
    path = make_wheel(local_index.root, "big", "1.0", requires_dist=["alpha>=1"], files=files)
    size = path.stat().st_size
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("big")
    assert client.metadata(wheel) == wheel_metadata(path)
    ranged = [r for r in local_index.requests if r.path == f"/files/{path.name}"]
    # One range, the last 64 KiB: the zip's directory and, since wheel builders
    # write .dist-info last, the METADATA member too; the wheel is not fetched.
    assert [(r.headers.get("Range"), r.status) for r in ranged] == [(f"bytes={size - 65536}-", 206)]
    assert not any((tmp_path / "cache").rglob("*.whl"))
    # Cached by the wheel's hash: another client asks nothing.
    local_index.clear_log()
    assert client_factory(local_index.url).metadata(wheel) == wheel_metadata(path)
    assert local_index.paths() == []


def test_metadata_far_from_the_end_costs_one_more_range(
    local_index: LocalIndex, client_factory: Factory
) -> None:
    local_index.metadata_files = False
    path = local_index.root / "front-1.0-py3-none-any.whl"
    metadata = b"Metadata-Version: 2.1\nName: front\nVersion: 1.0\nRequires-Dist: alpha\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("front-1.0.dist-info/METADATA", metadata)
        zf.writestr("front/blob.bin", os.urandom(300_000))
        zf.writestr("front-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        zf.writestr("front-1.0.dist-info/RECORD", "")
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("front")
    assert client.metadata(wheel) == metadata
    ranged = [r for r in local_index.requests if r.path == f"/files/{path.name}"]
    size = path.stat().st_size
    assert [(r.headers.get("Range"), r.status) for r in ranged] == [
        (f"bytes={size - 65536}-", 206),
        ("bytes=0-32767", 206),  # the member's local header and data, from offset 0
    ]


@pytest.mark.parametrize("blob", [1_000, 300_000], ids=["whole", "by-range"])
def test_metadata_of_a_wheel_that_vendors_another_dist_info(
    local_index: LocalIndex, client_factory: Factory, blob: int
) -> None:
    """Two ``.dist-info/METADATA`` at the top: the one the file name names is
    the wheel's, whether the wheel is read whole or through range requests."""
    local_index.metadata_files = False
    path = local_index.root / "host-1.0-py3-none-any.whl"
    own = b"Metadata-Version: 2.1\nName: host\nVersion: 1.0\nRequires-Dist: alpha\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("host/blob.bin", os.urandom(blob))
        zf.writestr("guest-2.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: guest\n")
        zf.writestr("host-1.0.dist-info/METADATA", own)
        zf.writestr("host-1.0.dist-info/RECORD", "")
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("host")
    assert client.metadata(wheel) == own
    gets = [r for r in local_index.requests if r.path == f"/files/{path.name}"]
    assert all(("Range" in r.headers) == (blob > 1_000) for r in gets) and gets


def test_metadata_falls_back_to_the_wheel_when_ranges_are_not_served(
    local_index: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    local_index.metadata_files = False
    local_index.ranges = False
    files = {f"big/part{i}.bin": os.urandom(100_000) for i in range(2)}
    path = make_wheel(local_index.root, "big", "1.0", files=files)
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("big")
    assert client.metadata(wheel) == wheel_metadata(path)
    client.download(wheel, tmp_path / "out")  # the wheel fetched for metadata is reused
    wheel_requests = [r for r in local_index.requests if r.path == f"/files/{path.name}"]
    assert [("Range" in r.headers, r.status) for r in wheel_requests] == [(True, 200), (False, 200)]


def test_a_small_wheel_longer_than_declared_is_not_read_into_memory(
    local_index: LocalIndex, client_factory: Factory
) -> None:
    """A small wheel's METADATA is read from the wheel held in memory, but
    only up to the size the index declared: a longer body is cut there and
    the wheel is streamed to disk instead, where its hash decides."""
    local_index.metadata_files = False
    path = make_wheel(local_index.root, "small", "1.0", requires_dist=["alpha>=1"])
    client = client_factory(local_index.url)
    (wheel,) = client.project_files("small")
    understated = DistFile(wheel.filename, wheel.url, wheel.hashes, size=wheel.size // 4)
    assert client.metadata(understated) == wheel_metadata(path)
    gets = [r for r in local_index.requests if r.path == f"/files/{path.name}"]
    assert [("Range" in r.headers, r.status) for r in gets] == [(False, 200), (False, 200)]
    # The body checked against a limit is the same as one read whole.
    assert client.http.fetch_bytes(wheel.url, limit=wheel.size) == path.read_bytes()
    with pytest.raises(BodyTooLarge, match=f"larger than {wheel.size - 1} bytes"):
        client.http.fetch_bytes(wheel.url, limit=wheel.size - 1)


def test_a_metadata_file_past_the_cap_is_refused_in_one_line(
    populated: LocalIndex, client_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contentpkg.python.index.client as client_module

    client = client_factory(populated.url)
    wheel = next(f for f in client.project_files("alpha") if f.filename.startswith("alpha-2.0-"))
    monkeypatch.setattr(client_module, "MAX_METADATA_FILE", 16)  # real files are KiBs
    with pytest.raises(CpkError) as caught:
        client.metadata(wheel)
    assert str(caught.value) == f"{wheel.url}.metadata: larger than 16 bytes"


def test_metadata_file_with_wrong_hash_is_rejected(
    populated: LocalIndex, client_factory: Factory
) -> None:
    client = client_factory(populated.url)
    wheel = next(f for f in client.project_files("alpha") if f.filename.startswith("alpha-2.0-"))
    forged = DistFile(wheel.filename, wheel.url, wheel.hashes, core_metadata={"sha256": "00" * 32})
    with pytest.raises(CpkError, match=r"alpha-2\.0-py3-none-any\.whl\.metadata: sha256 mismatch"):
        client.metadata(forged)


def test_links_urllib_cannot_parse_are_skipped_and_a_bad_base_is_one_line() -> None:
    # urllib raises ValueError ("Invalid IPv6 URL") for these (found by fuzzing).
    page = b'<a href="http://[x/pkg-1.0-py3-none-any.whl">x</a>'
    assert parse_html_page(page, "https://i.example/simple/pkg/") == []
    listing = b'{"files": [{"url": "http://[x/pkg-1.0-py3-none-any.whl"}]}'
    assert parse_json_page(listing, "https://i.example/simple/pkg/") == []
    with pytest.raises(CpkError) as caught:
        parse_html_page(b'<base href="http://[x/"><a href="a.whl">a</a>', "https://i.example/s/")
    assert "invalid <base href>" in str(caught.value)


def test_markup_the_html_parser_asserts_on_is_one_line() -> None:
    # html.parser raises AssertionError for an unknown marked section (found by fuzzing).
    with pytest.raises(CpkError) as caught:
        parse_html_page(b"<![OCTYPE html><a href='a-1.0.tar.gz'>a</a>", "https://i.example/s/a/")
    assert "not an HTML page an index serves" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_more_threads_than_jobs_still_transfer_at_most_jobs_at_once(tmp_path: Path) -> None:
    # A fetch runs more threads than transfers, since each add also waits
    # for its wheel's bytecode; the session keeps the transfers to `jobs`.
    from contentpkg.python.index.http import HttpSession

    dists = tmp_path / "dists"
    wheels = [make_wheel(dists, f"p{i}", "1.0", files={f"p{i}/__init__.py": ""}) for i in range(6)]
    session = HttpSession(tmp_path / "cache", jobs=2)
    with LocalIndex(dists, latency=0.3) as index:

        def get(wheel: Path) -> str:
            dest = tmp_path / "got" / wheel.name
            return session.download(
                index.base_url + index.file_path(wheel.name), dest, sha256=sha256(wheel)
            )

        try:
            digests = session.map(get, wheels, threads=6)
        finally:
            session.close()
    assert digests == [sha256(w) for w in wheels]
    assert index.max_in_flight == 2
