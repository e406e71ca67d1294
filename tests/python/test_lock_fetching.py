"""What locking asks of an index, and what it does again: the mechanisms
behind a fast lock, asserted on a loopback index's request log."""

from __future__ import annotations

import hashlib
import json
import marshal
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.version import Version
from support.cli import run_cpk
from support.index import JSON_TYPE, LocalIndex
from support.wheels import make_wheel

from contentpkg.context import Bucket
from contentpkg.python.index.client import IndexClient, parse_json_page
from contentpkg.python.index.http import Page
from contentpkg.python.index.releases import ProjectFiles

Factory = Callable[..., IndexClient]

PLATFORMS = ("macosx_11_0_arm64", "manylinux_2_17_x86_64", "win_amd64")


@pytest.fixture
def tree(tmp_path: Path):
    """A project's dependencies three levels deep, one of them with a wheel
    per platform, served without PEP 658 files and a little late, as a
    distant index answers."""
    root = tmp_path / "dists"
    make_wheel(root, "top-a", "1.0", requires_dist=["mid-a", "mid-b"])
    make_wheel(root, "top-b", "1.0", requires_dist=["mid-c", "plat"])
    make_wheel(root, "top-b", "0.9")
    for name in ("mid-a", "mid-b", "mid-c"):
        make_wheel(root, name, "1.0", requires_dist=[f"leaf-{name[-1]}"])
        make_wheel(root, f"leaf-{name[-1]}", "1.0")
    for platform in PLATFORMS:
        make_wheel(root, "plat", "2.0", tag=f"py3-none-{platform}", requires_dist=["leaf-p"])
    make_wheel(root, "leaf-p", "1.0")
    with LocalIndex(root, metadata_files=False) as served:
        served.latency = 0.05
        yield served


def write_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["top-a", "top-b"]\n'
    )
    return root


def test_a_cold_lock_asks_for_each_page_and_each_chosen_wheel_once_in_parallel(
    tmp_path: Path, tree: LocalIndex
) -> None:
    root = write_project(tmp_path)
    proc = run_cpk("lock", "--index-url", tree.url, cwd=root)
    assert proc.returncode == 0, proc.stderr
    locked = {
        p["name"]: p["version"]
        for p in tomllib.loads((root / "pylock.toml").read_text())["packages"]
    }
    assert len(locked) == 10 and locked["top-b"] == "1.0"
    asked = Counter(r.path for r in tree.requests)
    pages = {p for p in asked if p.startswith("/simple/")}
    assert pages == {f"/simple/{name}/" for name in locked}
    assert all(asked[p] == 1 for p in asked), asked
    # Metadata comes from the wheel each package is locked by (these are
    # small, so fetched whole): one per package, and for `plat` the one
    # this machine's resolver reads, never first another platform's.
    wheels = [p for p in asked if p.startswith("/files/")]
    assert len(wheels) == len(locked)
    assert [w for w in wheels if "/plat-" in w] == [
        "/files/plat-2.0-py3-none-manylinux_2_17_x86_64.whl"
    ]
    # The look-ahead had requests in flight together, on the roots' pages
    # and every level their metadata shows.
    assert tree.max_in_flight >= 2


def test_a_warm_relock_reads_no_page_again(
    tmp_path: Path, tree: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages already read are loaded from the cache grouped by release,
    with no JSON parsed: what a warm re-lock of big projects used to spend
    most of its time on."""
    tree.latency = 0.0
    cache = tmp_path / "cache"
    first = IndexClient([tree.url], cache_dir=cache)
    calls = Counter[str]()
    real = IndexClient._json_groups

    def counted(self: IndexClient, page: Page, name: str):
        calls[page.url] += 1
        return real(self, page, name)

    monkeypatch.setattr(IndexClient, "_json_groups", counted)
    try:
        before = first.project_files("plat")
    finally:
        first.close()
    assert list(calls.values()) == [1]
    again = IndexClient([tree.url], cache_dir=cache)
    try:
        releases = again.project_releases("plat")
        assert [f.filename for f in releases.release(Version("2.0"))] == [
            f.filename for f in before
        ]
        assert again.project_files("plat") == before
    finally:
        again.close()
    assert list(calls.values()) == [1]  # the revalidated page was not parsed again


def _row(position: int, filename: str) -> tuple[object, ...]:
    return (position, filename, f"https://h/{filename}", {}, None, None, None, 1, None)


def test_releases_are_made_only_when_looked_at() -> None:
    rows = {
        "1.0": [_row(0, "p-1.0-py3-none-any.whl")],
        "2.0": [_row(1, "p-2.0-py3-none-any.whl"), _row(2, "p-2.0-bad-tags.whl")],
        "not a version": [_row(3, "p-not a version.tar.gz")],
    }
    files = ProjectFiles.loads(ProjectFiles(rows, "https://h/simple/").dumps(), "https://h/simple/")
    assert set(files.versions()) == {Version("1.0"), Version("2.0")}
    assert [f.filename for f in files.release(Version("2.0"))] == ["p-2.0-py3-none-any.whl"]
    assert list(files._made) == ["2.0"]  # 1.0's group is still serialized
    assert [f.filename for f in files.all()] == ["p-1.0-py3-none-any.whl", "p-2.0-py3-none-any.whl"]
    assert all(f.index == "https://h/simple/" for f in files.all())


def test_grouped_page_reads_like_the_full_parse(client_factory: Factory, tmp_path: Path) -> None:
    """The short way through a PEP 691 page (PyPI's shape) and the long one
    (anything else) give the files parse_json_page gives, vetted the same."""
    sha = "ab" * 32
    files = "https://files.example"

    def item(filename: str, url: str | None = None, **more: object) -> dict[str, object]:
        return {"filename": filename, "url": url or f"{files}/{filename}", "hashes": {}, **more}

    items = [
        item("pkg-1.0-py3-none-any.whl", hashes={"sha256": sha}, size=10,
             **{"requires-python": ">=3.8", "upload-time": "2024-01-01T00:00:00Z"}),
        item("pkg-1.0.tar.gz", hashes={"SHA256": sha.upper()}, yanked="broken",
             **{"core-metadata": {"sha256": sha}}),
        item("pkg-2.0-py3-none-any.whl", "../../files/pkg-2.0-py3-none-any.whl#md5=00ff",
             yanked=True, **{"core-metadata": True}),
        item("pkg-2.0-cp311-cp311-win_amd64.whl",
             "https://user:secret@files.example/pkg-2.0-cp311-cp311-win_amd64.whl",
             hashes={"sha256": sha}),
        item("other-1.0-py3-none-any.whl"),
        item("pkg-3.0-py3-none-any.egg"),
        item("pkg-3.0-notatag.whl"),
        "not a file",
    ]  # fmt: skip
    body = json.dumps({"meta": {"api-version": "1.1"}, "files": items}).encode()
    url = "https://index.example/simple/pkg/"
    client = client_factory("https://index.example/simple/", cache_dir=tmp_path / "c")
    grouped = client._parsed(Page(url, JSON_TYPE, body), "https://index.example/simple/", "pkg")
    listed = parse_json_page(body, url, "https://index.example/simple/")
    expected = [f for f in listed if f.filename.startswith("pkg-")]
    expected = client._vet(url, expected)
    assert grouped.all() == expected
    assert [(f.hashes, f.yanked, f.core_metadata) for f in grouped.all()] == [
        (f.hashes, f.yanked, f.core_metadata) for f in expected
    ]
    assert "secret" not in repr(grouped.all())
    assert client.http.credentials.header("https://files.example/x") == {
        "Authorization": "Basic dXNlcjpzZWNyZXQ="
    }
    # Read back from the cache, the credentials a link carried are known again.
    other = client_factory("https://index.example/simple/", cache_dir=tmp_path / "c")
    again = other._parsed(Page(url, JSON_TYPE, body), "https://index.example/simple/", "pkg")
    assert again.all() == expected
    assert other.http.credentials.header("https://files.example/x") != {}


def test_a_written_lock_is_read_back_without_parsing_it(tmp_path: Path, tree: LocalIndex) -> None:
    """The parse kept for a new lock is exactly what tomllib reads from it."""
    tree.latency = 0.0
    root = write_project(tmp_path)
    cache = tmp_path / "cache"
    proc = run_cpk("lock", "--index-url", tree.url, cwd=root, env={"CPK_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    blob = (root / "pylock.toml").read_bytes()
    key = hashlib.sha256(blob).hexdigest()
    kept = cache / Bucket.PARSED_LOCKS.value / f"{key}.{marshal.version}.marshal"
    assert marshal.loads(kept.read_bytes()) == tomllib.loads(blob.decode())


def test_a_current_lock_is_confirmed_without_the_network_or_the_resolver(
    tmp_path: Path, tree: LocalIndex
) -> None:
    tree.latency = 0.0
    root = write_project(tmp_path)
    assert run_cpk("lock", "--index-url", tree.url, cwd=root).returncode == 0
    tree.clear_log()
    # Other arguments than the first lock's: no memo answers, the full path does.
    proc = run_cpk(
        "lock", "--index-url", tree.url, "--project", str(root),
        cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pylock.toml is up to date (10 packages)" in proc.stderr
    assert tree.requests == []
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if "import time:" in line
    }
    # No requirement is parsed again, no HTTP stack or resolver loaded.
    assert not imported & {
        "packaging.requirements",
        "urllib3",
        "resolvelib",
        "contentpkg.python.index.client",
        "contentpkg.python.resolve.resolver",
        # Nor even the module that resolves and syncs.
        "contentpkg.python.run.sync",
    }
    assert "contentpkg.python.run.lockstate" in imported  # (the import log is real)
    # A changed input is seen: the project is locked again.
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"top-b"', '"top-b<1"'))
    proc = run_cpk("lock", "--index-url", tree.url, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (
        "top-b" in (root / "pylock.toml").read_text()
        and 'version = "0.9"' in (root / "pylock.toml").read_text()
    )


def _imports(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if "import time:" in line
    }


def test_a_current_lock_is_confirmed_from_its_memo_until_an_input_changes(
    tmp_path: Path, tree: LocalIndex
) -> None:
    """Once a lock is current, the same ``cpk lock`` says so from file stats:
    no parser, no TOML, no lock read. Any change to an input or to the lock
    itself sends it back to the full check."""
    tree.latency = 0.0
    root = write_project(tmp_path)
    args = ("lock", "--index-url", tree.url)
    assert run_cpk(*args, cwd=root).returncode == 0
    timing = {"PYTHONPROFILEIMPORTTIME": "1"}
    proc = run_cpk(*args, cwd=root, env=timing)
    assert proc.returncode == 0, proc.stderr
    assert "pylock.toml is up to date (10 packages)" in proc.stderr
    fast = _imports(proc.stderr)
    assert "contentpkg.python.run.memo" in fast  # (the import log is real)
    assert not fast & {
        "argparse",
        "tomllib",
        "contentpkg.context",
        "contentpkg.python.run.lockstate",
    }
    quiet = run_cpk("-q", *args, cwd=root)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    # The lock touched (same content, new stat): checked in full, still current.
    lock = root / "pylock.toml"
    lock.write_bytes(lock.read_bytes())
    proc = run_cpk(*args, cwd=root, env=timing)
    assert "pylock.toml is up to date (10 packages)" in proc.stderr
    assert "contentpkg.python.run.lockstate" in _imports(proc.stderr)
    # A project file appearing below the project root, where cpk is run: it
    # is the project now, and it has no lock.
    sub = root / "sub"
    sub.mkdir()
    assert run_cpk(*args, cwd=sub).returncode == 0
    (sub / "pyproject.toml").write_text(
        '[project]\nname = "sub"\nversion = "0"\ndependencies = ["leaf-a"]\n'
    )
    proc = run_cpk(*args, cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert "locked 1 package into pylock.toml" in proc.stderr
    assert (sub / "pylock.toml").is_file()
    # A changed requirement: locked again, and the memo does not say otherwise.
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"top-b"', '"top-b<1"'))
    proc = run_cpk(*args, cwd=root)
    assert "locked 6 packages into pylock.toml" in proc.stderr, proc.stderr
    assert 'version = "0.9"' in lock.read_text()


def test_no_lock_memo_is_written_for_inputs_that_changed_while_locking(
    tmp_path: Path, tree: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo's stats are taken before the inputs are read again and the
    lock checked: an edit made while ``cpk lock`` ran is never taken for
    current."""
    from contentpkg.context import Context
    from contentpkg.python.run.lockstate import current_lock, remember_current
    from contentpkg.python.run.memo import current_lock_memo
    from contentpkg.python.run.options import Options

    tree.latency = 0.0
    root = write_project(tmp_path)
    monkeypatch.setenv("CPK_CACHE_DIR", str(tmp_path / "cache"))
    assert run_cpk("lock", "--index-url", tree.url, cwd=root).returncode == 0
    monkeypatch.chdir(root)
    options = Options(ctx=Context.from_environ(), index_url=tree.url)
    args = ["--index-url", tree.url]
    outcome = current_lock(options)
    assert outcome is not None and outcome.fresh
    assert remember_current(options, args, outcome) is not None
    assert current_lock_memo(args) == ("pylock.toml", 10)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"top-b"', '"top-b<1"'))
    assert current_lock_memo(args) is None  # the edit is seen by its stat
    assert remember_current(options, args, outcome) is None  # nor remembered as current


def test_a_page_linking_a_local_file_is_refused_whole(client_factory: Factory) -> None:
    from contentpkg.errors import CpkError

    items = [
        {
            "filename": "pkg-1.0-py3-none-any.whl",
            "url": "https://f.example/pkg-1.0-py3-none-any.whl",
        },
        {"filename": "other-1.0-py3-none-any.whl", "url": "file:///etc/passwd"},
    ]
    body = json.dumps({"meta": {"api-version": "1.1"}, "files": items}).encode()
    client = client_factory("https://index.example/simple/")
    page = Page("https://index.example/simple/pkg/", JSON_TYPE, body)
    with pytest.raises(CpkError, match="never local files"):
        client._parsed(page, "https://index.example/simple/", "pkg")


def test_small_wheels_are_read_in_memory_and_kept_for_the_download(
    tree: LocalIndex, client_factory: Factory, tmp_path: Path
) -> None:
    from contentpkg.errors import HashMismatchError

    tree.latency = 0.0
    client = client_factory(tree.url)
    (wheel,) = client.project_files("leaf-a")
    assert b"Name: leaf-a" in client.metadata(wheel)
    assert [r.path for r in tree.requests] == ["/simple/leaf-a/", f"/files/{wheel.filename}"]
    archives = tmp_path / "cache" / Bucket.ARCHIVES.value
    assert not list(archives.glob(".pins.*/*"))  # nothing pinned to remove at close
    tree.clear_log()
    client.download(wheel, tmp_path / "out")  # the copy read for its metadata
    assert tree.requests == []
    (other,) = client.project_files("leaf-b")
    tree.corrupt(other.filename)
    with pytest.raises(HashMismatchError):
        client.metadata(other)


def test_wheels_are_downloaded_largest_first(
    tmp_path: Path, client_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The largest wheels take longest to download, unpack and compile:
    asked for first, they do not leave one core working alone at the end.
    Sizes grow with the names here, so name order is the wrong order."""
    import os

    from contentpkg.context import Context
    from contentpkg.python.index.dists import Pin
    from contentpkg.python.run.options import Options
    from contentpkg.python.run.sync import Session

    root = tmp_path / "dists"
    names = [f"w{i:02}" for i in range(12)]
    for i, name in enumerate(names):
        # Incompressible and above the size read whole for its metadata,
        # so every wheel is one download request of its own.
        make_wheel(root, name, "1.0", files={f"{name}/blob.bin": os.urandom((i + 3) << 16)})
    monkeypatch.setenv("CPK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with LocalIndex(root, metadata_files=False) as served:
        options = Options(ctx=Context.from_environ(), index_url=served.url)
        session = Session.open(options, None, None)
        # One transfer at a time (and four threads), so the order the index
        # sees is the order the downloads were started in.
        session._client = client = client_factory(served.url, jobs=1)
        pins = [Pin(n, "1.0", tuple(client.project_files(n))) for n in names]
        served.clear_log()
        try:
            done = session.materialize_pins(pins)
        finally:
            session.close()
        asked = [p.rsplit("/", 1)[-1].split("-", 1)[0] for p in served.paths()]
    assert sorted(m.name for m in done) == names
    assert sorted(asked) == names  # each wheel downloaded once
    largest, smallest = set(names[-4:]), set(names[:4])
    # The four threads take the four largest first; within them the order
    # is the threads' race, but none of the smallest comes before them.
    assert set(asked[:4]) == largest, asked
    assert set(asked[-4:]) == smallest, asked
