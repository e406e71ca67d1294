"""Fuzzing every reader of outside Python input with hypothesis.

The wheel/zip reader, the ``pylock.toml`` reader, the requirements-file
reader and both index page parsers get arbitrary bytes and mutations of a
valid input. What must hold: each returns or raises :class:`CpkError`
(never another exception, which the CLI would print as a traceback), and
finishes (pytest-timeout is the hang guard). The default run keeps each
fuzzer to a few seconds (``EXAMPLES`` examples); the ``slow`` variants run
``SLOW_EXAMPLES``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.wheels import make_wheel

from contentpkg.errors import CpkError
from contentpkg.python.index.client import parse_html_page, parse_json_page
from contentpkg.python.install.wheel import add_wheel
from contentpkg.python.lock.pylock import read_lock
from contentpkg.python.project.requirements import RequirementsReader
from contentpkg.store import Store

EXAMPLES = 200
SLOW_EXAMPLES = 2000
PAGE_URL = "https://index.example/simple/pkg/"

SEED_LOCK = b"""lock-version = "1.0"
environments = ["python_version >= '3.11'"]
requires-python = ">=3.11"
created-by = "cpk"

[[packages]]
name = "six"
version = "1.16.0"
index = "https://pypi.org/simple/"

[[packages.wheels]]
name = "six-1.16.0-py2.py3-none-any.whl"
url = "https://files.example/six-1.16.0-py2.py3-none-any.whl"
size = 11053
hashes = {sha256 = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"}

[packages.tool.cpk]
file = "six-1.16.0-py2.py3-none-any.whl"
"""

SEED_REQUIREMENTS = b"""# a comment
--index-url https://index.example/simple/
--extra-index-url https://other.example/simple/
six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
requests[socks]>=2.31 ; python_version >= "3.8"
-e ./local#egg=local
attrs @ https://files.example/attrs-23.1.0-py3-none-any.whl
"""

SEED_JSON = json.dumps(
    {
        "meta": {"api-version": "1.1"},
        "name": "pkg",
        "files": [
            {
                "filename": "pkg-1.0-py3-none-any.whl",
                "url": "../../files/pkg-1.0-py3-none-any.whl",
                "hashes": {"sha256": "ab" * 32},
                "requires-python": ">=3.8",
                "core-metadata": {"sha256": "cd" * 32},
                "yanked": "broken",
                "size": 1234,
            }
        ],
    }
).encode()

SEED_HTML = (
    b'<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
    b'<base href="https://files.example/"></head><body>'
    b'<a href="pkg-1.0-py3-none-any.whl#sha256=' + b"ab" * 32 + b'" '
    b'data-requires-python="&gt;=3.8" data-core-metadata="sha256=' + b"cd" * 32 + b'" '
    b'data-yanked="">pkg-1.0-py3-none-any.whl</a></body></html>'
)


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """seed with bytes flipped, cut, repeated or spliced in, and plain noise."""

    def apply(ops: list[tuple[int, int, bytes]]) -> bytes:
        data = bytearray(seed)
        for kind, pos, chunk in ops:
            if not data:
                break
            at = pos % len(data)
            if kind == 0:
                data[at] ^= chunk[0] if chunk else 0xFF
            elif kind == 1:
                del data[at : at + len(chunk) + 1]
            elif kind == 2:
                data[at:at] = chunk
            else:
                data[at:at] = bytes(data[at : at + 64]) * (len(chunk) % 5 + 1)
        return bytes(data)

    op = st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.binary(max_size=16))
    return st.one_of(
        st.lists(op, min_size=1, max_size=8).map(apply),
        st.binary(max_size=2048),
    )


def _fuzz(
    strategy: st.SearchStrategy[bytes], examples: int
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    chosen = settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    return lambda fn: chosen(given(data=strategy)(fn))


def _only_cpk_error(call: Callable[[], object]) -> None:
    try:
        call()
    except CpkError as exc:
        assert "\n" not in str(exc), str(exc)


# -- wheels -------------------------------------------------------------------------


def _seed_wheel(tmp: Path) -> bytes:
    wheel = make_wheel(
        tmp,
        "pkg",
        "1.0",
        files={"pkg/__init__.py": "x = 1\n", "pkg/data.txt": "hello " * 50},
        entry_points={"console_scripts": {"pkg": "pkg:main"}},
        data={"scripts/tool": "#!python\nprint(1)\n"},
    )
    return wheel.read_bytes()


def _check_wheel(tmp: Path, data: bytes) -> None:
    wheel = tmp / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(data)
    # A small size limit keeps a lucky bomb cheap; the check is the same.
    _only_cpk_error(lambda: add_wheel(Store.open(), wheel, max_size=4 << 20))


def _zip_structure_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Valid zips whose members' headers lie: modes, sizes, names, methods."""

    def rebuild(changes: list[tuple[int, int, int]]) -> bytes:
        src = zipfile.ZipFile(io.BytesIO(seed))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            items = src.infolist()
            for n, info in enumerate(items):
                content = src.read(info)
                for which, field, value in changes:
                    if which % len(items) != n:
                        continue
                    if field == 0:
                        info.external_attr = (value & 0xFFFF) << 16
                    elif field == 1:
                        info.filename = info.filename + "/" * (value % 2) + "x" * (value % 3)
                    elif field == 2:
                        info.compress_type = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)[value % 2]
                    elif field == 3:
                        content = content[: value % (len(content) + 1)]
                zf.writestr(info, content)
        return out.getvalue()

    change = st.tuples(st.integers(0, 20), st.integers(0, 3), st.integers(0, 0xFFFF))
    return st.lists(change, min_size=1, max_size=4).map(rebuild)


def _wheel_strategy(tmp: Path) -> st.SearchStrategy[bytes]:
    seed = _seed_wheel(tmp / "seed")
    return st.one_of(_mutations(seed), _zip_structure_mutations(seed))


@pytest.mark.timeout(120)
def test_fuzz_wheel_reader(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(_wheel_strategy(tmp_path), EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_wheel(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (EXAMPLES) // 2, len(seen)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_wheel_reader_long(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(_wheel_strategy(tmp_path), SLOW_EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_wheel(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (SLOW_EXAMPLES) // 2, len(seen)


# -- pylock.toml --------------------------------------------------------------------


def _check_lock(tmp: Path, data: bytes) -> None:
    path = tmp / "pylock.toml"
    path.write_bytes(data)
    _only_cpk_error(lambda: read_lock(path))


_TOML_TEXT = st.lists(
    st.sampled_from(
        [*'[]{}=".,\n #abc123-_', "packages", "wheels", "hashes", "lock-version", "name"]
    ),
    max_size=120,
).map(lambda parts: "".join(parts).encode())


@pytest.mark.timeout(120)
def test_fuzz_lock_reader(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(st.one_of(_mutations(SEED_LOCK), _TOML_TEXT), EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_lock(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (EXAMPLES) // 2, len(seen)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_lock_reader_long(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(st.one_of(_mutations(SEED_LOCK), _TOML_TEXT), SLOW_EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_lock(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (SLOW_EXAMPLES) // 2, len(seen)


# -- requirements files -----------------------------------------------------------


def _check_requirements(tmp: Path, data: bytes) -> None:
    path = tmp / "requirements.txt"
    path.write_bytes(data)
    _only_cpk_error(lambda: RequirementsReader(validate=True).read(path, None))


_REQ_TEXT = st.lists(
    st.sampled_from([*"abc-_.=<>!~;[]@:/\\ \n\t#\"'", "-r ", "-e ", "--hash=", "requirements.txt"]),
    max_size=100,
).map(lambda parts: "".join(parts).encode())


@pytest.mark.timeout(120)
def test_fuzz_requirements_reader(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(st.one_of(_mutations(SEED_REQUIREMENTS), _REQ_TEXT), EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_requirements(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (EXAMPLES) // 2, len(seen)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_requirements_reader_long(tmp_path: Path) -> None:
    seen: list[int] = []

    @_fuzz(st.one_of(_mutations(SEED_REQUIREMENTS), _REQ_TEXT), SLOW_EXAMPLES)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_requirements(tmp_path, data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (SLOW_EXAMPLES) // 2, len(seen)


# -- index pages ------------------------------------------------------------------


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=20,
    )


def _page_files() -> st.SearchStrategy[bytes]:
    """Structurally plausible JSON pages with values of every wrong type."""
    keys = ["filename", "url", "hashes", "requires-python", "core-metadata", "yanked", "size"]
    item = st.dictionaries(st.sampled_from(keys), _json_values(), max_size=7)
    meta = st.one_of(_json_values(), st.just({"api-version": "1.1"}))
    page = st.fixed_dictionaries({"meta": meta, "files": st.lists(item, max_size=4)})
    return page.map(lambda p: json.dumps(p).encode())


def _check_pages(data: bytes) -> None:
    _only_cpk_error(lambda: parse_json_page(data, PAGE_URL))
    _only_cpk_error(lambda: parse_html_page(data, PAGE_URL))


_PAGES = st.one_of(_mutations(SEED_JSON), _mutations(SEED_HTML), _page_files())


@pytest.mark.timeout(120)
def test_fuzz_index_page_parsers() -> None:
    seen: list[int] = []

    @_fuzz(_PAGES, EXAMPLES * 2)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_pages(data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (EXAMPLES * 2) // 2, len(seen)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_index_page_parsers_long() -> None:
    seen: list[int] = []

    @_fuzz(_PAGES, SLOW_EXAMPLES * 2)
    def run(data: bytes) -> None:
        seen.append(len(data))
        _check_pages(data)

    run()
    # Hypothesis stops early only when it has exhausted the strategy.
    assert len(seen) >= (SLOW_EXAMPLES * 2) // 2, len(seen)


def test_seeds_are_valid_inputs(tmp_path: Path) -> None:
    """The mutations start from inputs the readers accept, or they test little."""
    path = tmp_path / "pylock.toml"
    path.write_bytes(SEED_LOCK)
    assert len(read_lock(path).packages) == 1
    assert len(parse_json_page(SEED_JSON, PAGE_URL)) == 1
    assert len(parse_html_page(SEED_HTML, PAGE_URL)) == 1
    (tmp_path / "local").mkdir()
    req = tmp_path / "requirements.txt"
    req.write_bytes(SEED_REQUIREMENTS)
    reader = RequirementsReader(validate=True)
    reader.read(req, None)
    assert len(reader.requirements) >= 3
    seed = tmp_path / "seed"
    wheel = seed / "pkg-1.0-py3-none-any.whl"
    _seed_wheel(seed)
    assert add_wheel(Store.open(), wheel).created
    assert os.path.isdir(Store.open().user.root)
