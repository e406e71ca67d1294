"""The PEP 751 lock file: reproducible writing, fast and strict reading."""

from __future__ import annotations

import hashlib
import marshal
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from contentpkg.errors import CpkError, LockUnreadableError
from contentpkg.python.index.dists import DistFile, Pin, Resolution
from contentpkg.python.lock.pylock import (
    LOCK_FILENAME,
    lock_is_fresh,
    lock_to_requirements_pins,
    read_lock,
    write_lock,
)
from contentpkg.python.project import inputs_fingerprint, load_project

SRC = Path(__file__).resolve().parents[2] / "src"
INDEX = "https://index.example/simple"
MARKERS = {
    "implementation_name": "cpython",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "os_name": "posix",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dist(filename: str, *, size: int = 1000, uploaded: str | None = None) -> DistFile:
    return DistFile(
        filename=filename,
        url=f"https://files.example/{filename}#sha256={sha(filename)}",
        hashes={"sha256": sha(filename)},
        size=size,
        upload_time=uploaded,
        index=INDEX,
    )


def pin(name: str, version: str, *files: DistFile, deps: tuple[str, ...] = ()) -> Pin:
    return Pin(name=name, version=version, files=files, dependencies=deps, index=INDEX)


def resolution(*pins: Pin, requirements: tuple[str, ...] = ("app-dep",)) -> Resolution:
    return Resolution(
        pins={p.name: p for p in pins},
        requirements=[Requirement(r) for r in requirements],
        python_version="3.11.7",
        markers=dict(MARKERS),
    )


def sample() -> Resolution:
    return resolution(
        pin(
            "rich",
            "13.7.0",
            dist("rich-13.7.0-py3-none-any.whl", uploaded="2023-11-15T16:43:00.123456Z"),
            dist("rich-13.7.0.tar.gz", size=220000),
            deps=("pygments", "markdown-it-py"),
        ),
        pin("pygments", "2.17.2", dist("pygments-2.17.2-py3-none-any.whl")),
        pin(
            "markdown-it-py",
            "3.0.0",
            dist("markdown_it_py-3.0.0-py3-none-any.whl"),
            deps=("mdurl",),
        ),
        pin("mdurl", "0.1.2", dist("mdurl-0.1.2.tar.gz")),
        pin(
            "numpy",
            "1.26.2",
            # best tag first, as the resolver orders them
            dist("numpy-1.26.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            dist("numpy-1.26.2-cp311-cp311-musllinux_1_1_x86_64.whl"),
        ),
        requirements=("rich>=13", "numpy"),
    )


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    assert write_lock(lock_path, sample(), "f" * 64) is True
    lock = read_lock(lock_path)
    assert lock.fingerprint == "f" * 64
    assert lock.created_by == "cpk"
    assert lock.python_version == "3.11.7"
    names = [p.name for p in lock.packages]
    assert names == sorted(names) == ["markdown-it-py", "mdurl", "numpy", "pygments", "rich"]
    by_name = lock.by_name()

    rich = by_name["rich"]
    assert rich.version == "13.7.0"
    assert rich.is_wheel
    assert rich.filename == "rich-13.7.0-py3-none-any.whl"
    assert rich.url == "https://files.example/rich-13.7.0-py3-none-any.whl"
    assert rich.sha256 == sha("rich-13.7.0-py3-none-any.whl")
    assert rich.size == 1000
    assert rich.index == INDEX
    assert rich.dependencies == ("markdown-it-py", "pygments")
    assert rich.sdist is not None and rich.sdist.filename == "rich-13.7.0.tar.gz"
    assert rich.sdist.size == 220000
    assert rich.file.upload_time == "2023-11-15T16:43:00.123456+00:00"

    mdurl = by_name["mdurl"]
    assert not mdurl.is_wheel
    assert mdurl.filename == "mdurl-0.1.2.tar.gz"
    assert mdurl.wheels == ()

    numpy = by_name["numpy"]
    assert len(numpy.wheels) == 2
    # The chosen file is the resolver's first choice, whatever the sort order.
    assert numpy.filename.startswith("numpy-1.26.2-cp311-cp311-manylinux")

    assert lock_to_requirements_pins(lock) == {
        "markdown-it-py": "3.0.0",
        "mdurl": "0.1.2",
        "numpy": "1.26.2",
        "pygments": "2.17.2",
        "rich": "13.7.0",
    }


def test_second_write_is_byte_identical_and_reports_no_change(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    assert write_lock(lock_path, sample(), "a" * 64)
    first = lock_path.read_bytes()
    mtime = lock_path.stat().st_mtime_ns
    # The same resolution, its pins given in another order.
    shuffled = sample()
    shuffled.pins = dict(reversed(list(shuffled.pins.items())))
    assert write_lock(lock_path, shuffled, "a" * 64) is False
    assert lock_path.read_bytes() == first
    assert lock_path.stat().st_mtime_ns == mtime
    # Another process writes the same bytes too (no hidden state, no clock).
    other = tmp_path / "other" / LOCK_FILENAME
    other.parent.mkdir()
    code = (
        "import sys; sys.path[:0] = sys.argv[3:];"
        "from test_lockfile import sample; from contentpkg.python.lock.pylock import write_lock;"
        "write_lock(__import__('pathlib').Path(sys.argv[1]), sample(), sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(other), "a" * 64, str(Path(__file__).parent), str(SRC)],
        check=True,
    )
    assert other.read_bytes() == first
    # A new fingerprint is a change.
    assert write_lock(lock_path, sample(), "b" * 64) is True
    assert not list(tmp_path.glob(".tmp-*"))  # fs.write_atomic left no temporary file


def test_lock_follows_pep_751(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    write_lock(lock_path, sample(), "c" * 64)
    text = lock_path.read_text()
    data = tomllib.loads(text)
    assert data["lock-version"] == "1.0"
    assert data["created-by"] == "cpk"
    assert data["requires-python"] == "==3.11.*"
    assert data["environments"] == [
        "implementation_name == 'cpython' and platform_machine == 'x86_64' and "
        "platform_system == 'Linux' and python_full_version == '3.11.7' and "
        "sys_platform == 'linux'"
    ]
    # The keys in the order the spec lists them.
    assert list(data)[:4] == ["lock-version", "environments", "requires-python", "created-by"]
    for package in data["packages"]:
        assert isinstance(package["name"], str)
        assert isinstance(package["version"], str)
        assert "wheels" in package or "sdist" in package
        for file in [*package.get("wheels", []), package.get("sdist")]:
            if file is None:
                continue
            assert set(file) <= {"name", "upload-time", "url", "path", "size", "hashes"}
            assert file["hashes"]["sha256"]
            assert "#" not in file["url"]
    rich = next(p for p in data["packages"] if p["name"] == "rich")
    assert rich["dependencies"] == [{"name": "markdown-it-py"}, {"name": "pygments"}]
    upload = rich["wheels"][0]["upload-time"]
    assert upload.year == 2023 and upload.utcoffset().total_seconds() == 0
    assert data["tool"]["cpk"]["inputs-fingerprint"] == "c" * 64
    assert data["tool"]["cpk"]["requirements"] == ["numpy", "rich>=13"]
    assert str(tmp_path) not in text


def test_local_files_and_directories_are_relative(tmp_path: Path) -> None:
    project = tmp_path / "A"
    project.mkdir()
    wheel = tmp_path / "wheels" / "b-1.0-py3-none-any.whl"
    local = DistFile(
        filename=wheel.name,
        url=wheel.as_uri(),
        hashes={"sha256": sha("b")},
        index=str(wheel.parent),
    )
    res = resolution(
        Pin(name="b", version="1.0", files=(local,)),
        Pin(name="c", version="0.1", files=()),
        Pin(name="a", version="0.0.1", files=(), dependencies=("b", "c")),
    )
    lock_path = project / LOCK_FILENAME
    write_lock(
        lock_path,
        res,
        "d" * 64,
        directories={"a": (project, True), "C": (tmp_path / "C", False)},
    )
    text = lock_path.read_text()
    assert str(tmp_path) not in text
    data = tomllib.loads(text)
    packages = {p["name"]: p for p in data["packages"]}
    assert packages["a"]["directory"] == {"path": ".", "editable": True}
    assert "version" not in packages["a"]
    assert packages["c"]["directory"] == {"path": "../C", "editable": False}
    assert packages["b"]["wheels"][0]["path"] == "../wheels/b-1.0-py3-none-any.whl"
    assert "index" not in packages["b"]  # a find-links directory is not an index

    lock = read_lock(lock_path).by_name()
    assert lock["a"].directory == project and lock["a"].editable
    assert lock["a"].file is None and not lock["a"].is_wheel
    assert lock["c"].directory == tmp_path / "C" and not lock["c"].editable
    assert lock["b"].url == wheel.as_uri()
    assert lock_to_requirements_pins(read_lock(lock_path)) == {"b": "1.0"}


def test_write_rejects_what_it_cannot_lock(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    no_hash = DistFile(filename="x-1-py3-none-any.whl", url="https://f/x-1-py3-none-any.whl")
    with pytest.raises(CpkError, match=r"package x: x-1-py3-none-any.whl has no sha256"):
        write_lock(lock_path, resolution(Pin(name="x", version="1", files=(no_hash,))), "e")
    with pytest.raises(CpkError, match="package y: the resolution has no file for it"):
        write_lock(lock_path, resolution(Pin(name="y", version="1", files=())), "e")
    dangling = pin("z", "1", dist("z-1-py3-none-any.whl"), deps=("missing",))
    with pytest.raises(CpkError, match="package z: depends on missing"):
        write_lock(lock_path, resolution(dangling), "e")
    assert not lock_path.exists()


def test_foreign_lock_is_not_overwritten_unless_forced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    lock_path.write_text('lock-version = "1.0"\ncreated-by = "pip"\n' + VALID_PACKAGE)
    with pytest.raises(CpkError, match="written by pip, not cpk; not replacing it"):
        write_lock(lock_path, sample(), "f" * 64)
    assert "pip" in lock_path.read_text()
    assert write_lock(lock_path, sample(), "f" * 64, force=True)
    assert not caplog.records  # a lock that reads is replaced without a word
    # A lock broken by a merge conflict is regenerated without force, and
    # that is said: the file may hold a hand edit.
    lock_path.write_text("<<<<<<< HEAD\n" + lock_path.read_text())
    assert write_lock(lock_path, sample(), "f" * 64)
    assert read_lock(lock_path).fingerprint == "f" * 64
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"{lock_path}: lock file is not valid TOML")
    assert said.endswith("; replacing it")


def test_stale_detection(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    assert lock_is_fresh(lock_path, "1" * 64) is False  # no lock yet
    write_lock(lock_path, sample(), "1" * 64)
    assert lock_is_fresh(lock_path, "1" * 64) is True
    assert lock_is_fresh(lock_path, "2" * 64) is False


AB = "ab" * 32  # a well-formed sha256 (the reader checks the digits)
VALID_PACKAGE = f"""
[[packages]]
name = "attrs"
version = "23.1.0"
wheels = [{{url = "https://f/attrs-23.1.0-py3-none-any.whl", hashes = {{sha256 = "{AB}"}}}}]
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("this is = = not toml", "lock file is not valid TOML"),
        ('created-by = "x"\npackages = []\n', "not a PEP 751 lock file (no lock-version)"),
        (
            'lock-version = "2.0"\ncreated-by = "x"\npackages = []\n',
            "lock-version 2.0 is not supported (cpk reads 1.x)",
        ),
        ('lock-version = "1.0"\ncreated-by = "x"\n', "lock file has no [[packages]] array"),
        (
            'lock-version = "1.0"\n' + VALID_PACKAGE.replace(f'{{sha256 = "{AB}"}}', "{}"),
            "package attrs: wheel attrs-23.1.0-py3-none-any.whl has no hashes",
        ),
        (
            'lock-version = "1.0"\n' + VALID_PACKAGE.replace(f', hashes = {{sha256 = "{AB}"}}', ""),
            "package attrs: wheel attrs-23.1.0-py3-none-any.whl has no hashes",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n',
            "package x: no wheels, sdist or directory",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nversion = "1"\n',
            "a [[packages]] entry has no name",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n'
            'vcs = {type = "git", url = "https://g/x", commit-id = "abc"}\n',
            "package x: vcs needs a full commit-id",
        ),
        (
            'lock-version = "1.0"\n[[packages]]\nname = "x"\nversion = "1"\n'
            'vcs = {type = "hg", url = "https://g/x", commit-id = "abc"}\n',
            "package x: only git vcs sources are supported",
        ),
        (
            'lock-version = "1.0"\n' + VALID_PACKAGE + '[packages.tool.cpk]\nfile = "other.whl"\n',
            "package attrs: the chosen file other.whl is not among its files",
        ),
    ],
)
def test_malformed_locks_are_one_line_errors(tmp_path: Path, text: str, problem: str) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    lock_path.write_text(text)
    with pytest.raises(LockUnreadableError) as caught:
        read_lock(lock_path)
    message = str(caught.value)
    assert message.startswith(f"{lock_path}: ")
    assert problem in message
    assert "\n" not in message
    with pytest.raises(CpkError):
        lock_is_fresh(lock_path, "x")


def test_foreign_lock_is_readable(tmp_path: Path) -> None:
    """A minimal lock from another tool: newer minor version, no [tool.cpk]."""
    lock_path = tmp_path / LOCK_FILENAME
    lock_path.write_text('lock-version = "1.3"\ncreated-by = "other"\n' + VALID_PACKAGE)
    lock = read_lock(lock_path)
    assert lock.fingerprint is None
    assert lock.lock_version == "1.3"
    assert lock.packages[0].filename == "attrs-23.1.0-py3-none-any.whl"  # name from the url
    assert lock.packages[0].sha256 == "ab" * 32
    assert lock_is_fresh(lock_path, "x") is False


def test_cached_read_equals_fresh_read(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    cache = tmp_path / "cache"
    write_lock(lock_path, sample(), "f" * 64)
    fresh = read_lock(lock_path)
    cold = read_lock(lock_path, cache_dir=cache)
    (cached,) = (cache / "locks").iterdir()
    warm = read_lock(lock_path, cache_dir=cache)
    for lock in (cold, warm):
        assert lock.fingerprint == fresh.fingerprint
        for a, b in zip(lock.packages, fresh.packages, strict=True):
            assert (a.name, a.version, a.file, a.wheels, a.sdist, a.dependencies) == (
                b.name,
                b.version,
                b.file,
                b.wheels,
                b.sdist,
                b.dependencies,
            )
    # The cache is keyed by the lock's bytes: what it holds is what a read
    # returns, and any change to the lock misses it.
    data = marshal.loads(cached.read_bytes())
    data["tool"]["cpk"]["inputs-fingerprint"] = "from the cache"
    cached.write_bytes(marshal.dumps(data))
    assert read_lock(lock_path, cache_dir=cache).fingerprint == "from the cache"
    assert lock_is_fresh(lock_path, "from the cache", cache_dir=cache)
    write_lock(lock_path, sample(), "e" * 64)
    assert read_lock(lock_path, cache_dir=cache).fingerprint == "e" * 64
    # A corrupt cache entry is ignored and rewritten.
    for entry in (cache / "locks").iterdir():
        entry.write_bytes(b"\x00garbage")
    assert read_lock(lock_path, cache_dir=cache).fingerprint == "e" * 64
    # Malformed locks are errors with or without a cache.
    lock_path.write_text('lock-version = "2.0"\npackages = []\n')
    with pytest.raises(CpkError, match=r"lock-version 2\.0 is not supported"):
        read_lock(lock_path, cache_dir=cache)
    with pytest.raises(CpkError, match=r"lock-version 2\.0 is not supported"):
        read_lock(lock_path, cache_dir=cache)


def test_reading_imports_nothing_heavy(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILENAME
    write_lock(lock_path, sample(), "f" * 64)
    code = (
        "import sys; from contentpkg.python.lock.pylock import read_lock;"
        "read_lock(sys.argv[1]);"
        "bad = [m for m in ('packaging', 'tomli_w', 'resolvelib', 'rich', 'urllib3')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(lock_path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.stdout.strip() == "[]"


def test_freshness_check_imports_nothing_heavy(tmp_path: Path) -> None:
    """What ``cpk run`` does before exec: load the inputs without validating
    them (the lock was made from validated ones), fingerprint, compare."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "a"\ndependencies = ["rich>=13", "numpy"]\n'
    )
    fingerprint = inputs_fingerprint(load_project(tmp_path), python_version="3.11.7")
    write_lock(tmp_path / LOCK_FILENAME, sample(), fingerprint)
    code = (
        "import sys; from pathlib import Path;"
        "from contentpkg.python.lock.pylock import read_lock;"
        "from contentpkg.python.project import ("
        "find_project, load_project, inputs_fingerprint);"
        "root = find_project(Path(sys.argv[1]));"
        "fp = inputs_fingerprint(load_project(root, validate=False), python_version='3.11.7');"
        "lock = read_lock(root / 'pylock.toml', cache_dir=Path(sys.argv[1]) / 'cache');"
        "print(lock.fingerprint == fp, [m for m in ('packaging', 'tomli_w', 'resolvelib',"
        " 'rich', 'urllib3') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.stdout.strip() == "True []"


def big_resolution(count: int) -> Resolution:
    pins = []
    for i in range(count):
        name = f"package-{i:03d}"
        wheels = [
            dist(f"package_{i:03d}-1.{i}.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
            dist(f"package_{i:03d}-1.{i}.0-py3-none-any.whl", uploaded="2024-02-03T04:05:06Z"),
        ]
        deps = tuple(f"package-{j:03d}" for j in range(i + 1, min(i + 4, count)))
        pins.append(
            pin(name, f"1.{i}.0", *wheels, dist(f"package_{i:03d}-1.{i}.0.tar.gz"), deps=deps)
        )
    return resolution(*pins)


def test_a_warm_lock_read_parses_no_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parse cache is what keeps a 100-package lock off ``cpk run``'s path:
    count the TOML parses instead of timing them (timings flake on a loaded
    machine; a cache that is never used shows up as a count)."""
    lock_path = tmp_path / LOCK_FILENAME
    write_lock(lock_path, big_resolution(100), "f" * 64)
    parses: list[int] = []
    real_loads = tomllib.loads

    def counting_loads(text: str, **kwargs: Any) -> dict[str, Any]:
        parses.append(len(text))
        return real_loads(text, **kwargs)

    monkeypatch.setattr(tomllib, "loads", counting_loads)
    cache = tmp_path / "cache"
    uncached = read_lock(lock_path)
    cold = read_lock(lock_path, cache_dir=cache)
    assert len(parses) == 2  # no cache given, then an empty cache
    warm = [read_lock(lock_path, cache_dir=cache) for _ in range(5)]
    assert len(parses) == 2  # five warm reads, no parse
    assert len(cold.packages) == 100

    def facts(lock: Any) -> list[tuple[str, str, str | None, list[str]]]:
        return [(p.name, p.version, p.sha256, [w.sha256 for w in p.wheels]) for p in lock.packages]

    assert all(facts(w) == facts(cold) == facts(uncached) for w in warm)
    # The cache is keyed by the lock's bytes: an edit is parsed afresh.
    lock_path.write_text(lock_path.read_text() + "# edited by hand\n")
    read_lock(lock_path, cache_dir=cache)
    assert len(parses) == 3
