"""Bytecode: compiled into an entry once per interpreter, unchecked-hash,
used by imports that write nothing, safe under concurrency."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.index import LocalIndex
from support.wheels import make_wheel

import contentpkg
from contentpkg.errors import CpkError
from contentpkg.python.install.bytecode import (
    BytecodePipeline,
    bytecode_marker,
    compiled_tags,
    ensure_bytecode,
)
from contentpkg.python.install.wheel import add_wheel
from contentpkg.store import Entry, Store
from contentpkg.store.add import add_path
from contentpkg.store.verify import verify_entry

TAG = sys.implementation.cache_tag
SRC = str(Path(contentpkg.__file__).parent.parent)


def demo_entry(tmp_path: Path, extra: dict[str, str] | None = None) -> Entry:
    files = {
        "demo/__init__.py": "from demo.sub.mod import VALUE\n",
        "demo/sub/__init__.py": "",
        "demo/sub/mod.py": "VALUE = 42\n",
        "demo/README.txt": "not python\n",
        "demo_single.py": "SINGLE = True\n",
        **(extra or {}),
    }
    wheel = make_wheel(tmp_path / "wheels", "demo", "1.0", files=files)
    return add_wheel(Store.open(), wheel).entry


def pyc_files(entry: Entry) -> dict[str, bytes]:
    found = {}
    for dirpath, _, filenames in os.walk(entry.path / "site-packages"):
        for name in filenames:
            if name.endswith(".pyc"):
                full = Path(dirpath) / name
                found[full.relative_to(entry.path).as_posix()] = full.read_bytes()
    return found


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime, mode) of everything below root: any rewrite shows."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            snap[os.path.relpath(full, root)] = (st.st_ino, st.st_mtime_ns, st.st_mode)
    return snap


def dir_modes(root: Path) -> dict[str, int]:
    return {
        os.path.relpath(dirpath, root): stat.S_IMODE(os.stat(dirpath).st_mode)
        for dirpath, _, _ in os.walk(root)
    }


def assert_sealed(entry: Entry) -> None:
    for rel, mode in dir_modes(entry.path).items():
        assert mode == 0o555, rel
    for rel in pyc_files(entry):
        assert stat.S_IMODE(os.stat(entry.path / rel).st_mode) == 0o444, rel


def test_compiles_unchecked_hash_pyc_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither "do not write bytecode" nor a cache prefix may change where or
    # whether the entry's bytecode is written.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    entry = demo_entry(tmp_path)
    assert compiled_tags(entry) == []

    assert ensure_bytecode(Store.open(), entry) is True
    pycs = pyc_files(entry)
    assert sorted(pycs) == sorted(
        f"site-packages/{d}__pycache__/{m}.{TAG}.pyc"
        for d, m in [
            ("demo/", "__init__"),
            ("demo/sub/", "__init__"),
            ("demo/sub/", "mod"),
            ("", "demo_single"),
        ]
    )
    for data in pycs.values():
        assert data[:4] == importlib.util.MAGIC_NUMBER
        # PEP 552 flags word: bit 0 hash-based, bit 1 check_source; 0b01 is
        # "unchecked hash".
        assert int.from_bytes(data[4:8], "little") == 0b01
    assert not (tmp_path / "prefix").exists()
    assert compiled_tags(entry) == [TAG]
    assert_sealed(entry)
    assert verify_entry(entry) == []  # __pycache__ and the marker are not content

    before = snapshot(entry.path)
    assert ensure_bytecode(Store.open(), entry) is True
    assert snapshot(entry.path) == before  # the second call did nothing


def test_imports_use_the_bytecode_and_write_nothing(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry)
    site = entry.path / "site-packages"
    before = snapshot(entry.path)
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); "
        "import demo, demo_single; print(demo.VALUE)"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for flags in (["-I"], []):
        proc = subprocess.run(
            [sys.executable, *flags, "-v", "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout.strip() == "42"
        # importlib's verbose trace names the .pyc each code object came from.
        for rel in ("demo/__init__", "demo/sub/mod", "demo_single"):
            package, _, module = rel.rpartition("/")
            pyc = site / package / "__pycache__" / f"{module}.{TAG}.pyc"
            assert f"code object from '{pyc}'" in proc.stderr
    assert snapshot(entry.path) == before


def test_files_that_do_not_compile_are_skipped(tmp_path: Path) -> None:
    entry = demo_entry(
        tmp_path,
        {
            "demo/tests/__init__.py": "",
            "demo/tests/py2_only.py": "print 'hello'\n",
            "demo/tests/ok.py": "OK = 1\n",
        },
    )
    assert ensure_bytecode(Store.open(), entry) is True
    cache = entry.path / "site-packages" / "demo" / "tests" / "__pycache__"
    assert sorted(os.listdir(cache)) == [f"__init__.{TAG}.pyc", f"ok.{TAG}.pyc"]
    marker = json.loads(bytecode_marker(entry, TAG).read_text())
    assert marker["skipped"] == ["demo/tests/py2_only.py"]
    assert_sealed(entry)
    assert verify_entry(entry) == []


RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from contentpkg.store import Store
    from contentpkg.python.install.bytecode import ensure_bytecode

    dirname, go = sys.argv[1], sys.argv[2]
    store = Store.open()
    entry = store.entry(dirname)
    while not os.path.exists(go):
        time.sleep(0.001)
    ok = ensure_bytecode(store, entry)
    seen = {}
    for dirpath, _, files in os.walk(entry.path / "site-packages"):
        for f in files:
            if f.endswith(".pyc"):
                st = os.stat(os.path.join(dirpath, f))
                seen[os.path.join(dirpath, f)] = [st.st_ino, st.st_mtime_ns]
    print(json.dumps([ok, seen]))
    """
)


def test_concurrent_callers_compile_once(tmp_path: Path) -> None:
    modules = {f"demo/m{i:03}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(300)}
    entry = demo_entry(tmp_path, modules)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, entry.dirname, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert all(ok for ok, _ in results)
    # Each caller saw, right after its call, exactly the final files: had
    # any of them compiled after another had returned, inodes would differ.
    final = results[0][1]
    assert len(final) == 304
    assert all(seen == final for _, seen in results)
    current = {p: [os.stat(p).st_ino, os.stat(p).st_mtime_ns] for p in final}
    assert current == final
    assert_sealed(entry)
    assert verify_entry(entry) == []
    assert compiled_tags(entry) == [TAG]


def test_interrupted_compilation_is_redone(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry)
    # As if a run died after writing one torn .pyc and before its marker.
    marker = bytecode_marker(entry, TAG)
    torn = entry.path / "site-packages" / "demo" / "sub" / "__pycache__" / f"mod.{TAG}.pyc"
    os.chmod(marker.parent, 0o755)
    os.unlink(marker)
    os.chmod(marker.parent, 0o555)
    os.chmod(torn.parent, 0o755)
    torn.unlink()
    torn.write_bytes(importlib.util.MAGIC_NUMBER)
    os.chmod(torn.parent, 0o555)

    assert ensure_bytecode(Store.open(), entry)
    assert int.from_bytes(torn.read_bytes()[4:8], "little") == 0b01
    assert len(torn.read_bytes()) > 16
    assert_sealed(entry)


@dataclass(frozen=True)
class Interpreter:
    """What an interpreter probe reports (an InterpreterInfo-like object)."""

    executable: str
    cache_tag: str | None
    magic_number: str | None = None


def test_interpreter_without_bytecode_cache(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    before = snapshot(entry.path)
    assert ensure_bytecode(Store.open(), entry, Interpreter(sys.executable, None)) is False
    assert snapshot(entry.path) == before


def test_interpreter_info_of_the_running_interpreter(tmp_path: Path, target: object) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry, target) is True
    assert compiled_tags(entry) == [TAG]


def test_interpreter_given_by_path(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry, Path(sys.executable)) is True
    assert compiled_tags(entry) == [TAG]
    with pytest.raises(CpkError, match=r"no-such-python: no such file$"):
        ensure_bytecode(Store.open(), entry, tmp_path / "no-such-python")


def test_compiling_with_another_interpreter_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bytecode format other than this process's (as a pre-release of the
    # same version has) makes cpk run the interpreter's own compileall.
    entry = demo_entry(tmp_path, {"demo/py2.py": "exec 'x'\n"})
    other = Interpreter(sys.executable, TAG, magic_number="00000000")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the child ignores it (-I)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "prefix"))
    assert ensure_bytecode(Store.open(), entry, other) is True
    assert not (tmp_path / "prefix").exists()
    pycs = pyc_files(entry)
    assert len(pycs) == 4
    assert all(int.from_bytes(d[4:8], "little") == 0b01 for d in pycs.values())
    assert json.loads(bytecode_marker(entry, TAG).read_text())["skipped"] == ["demo/py2.py"]
    assert_sealed(entry)
    assert verify_entry(entry) == []


def _other_python() -> str | None:
    """An interpreter of another minor version on PATH that really runs."""
    own = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for minor in range(8, 16):
        name = f"python3.{minor}"
        path = shutil.which(name)
        if name == own or path is None:
            continue
        proc = subprocess.run([path, "-I", "-c", "pass"], capture_output=True, check=False)
        if proc.returncode == 0:
            return path
    return None


def test_compiling_for_another_python_version(tmp_path: Path) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("no other Python version on PATH")
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry, other) is True
    tags = compiled_tags(entry)
    assert len(tags) == 1 and tags[0] != TAG
    assert f"__init__.{tags[0]}.pyc" in os.listdir(
        entry.path / "site-packages" / "demo" / "__pycache__"
    )
    assert ensure_bytecode(Store.open(), entry) is True
    assert compiled_tags(entry) == sorted([tags[0], TAG])
    assert_sealed(entry)


def test_entry_in_a_read_only_layer_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = demo_entry(tmp_path)
    system = Path(os.environ["CPK_HOME"]) / "store"
    monkeypatch.setenv("CPK_HOME", str(tmp_path / "other-home"))
    monkeypatch.setenv("CPK_STORE_PATH", str(system))
    store = Store.open()
    found = store.entry(entry.dirname)
    assert found is not None and found.layer.role == "system"
    before = snapshot(found.path)
    assert ensure_bytecode(store, found) is False
    assert snapshot(found.path) == before


def test_entry_without_site_packages(tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "share").mkdir(parents=True)
    (src / "share" / "tool.py").write_text("x = 1\n")
    entry = add_path(Store.open(), src, "tree", "1").entry
    assert ensure_bytecode(Store.open(), entry) is True
    assert not (entry.path / "share" / "__pycache__").exists()
    assert compiled_tags(entry) == [TAG]
    assert verify_entry(entry) == []


def _writable(entry: Entry) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(entry.path):
        for name in [".", *dirnames, *filenames]:
            full = os.path.normpath(os.path.join(dirpath, name))
            if not os.path.islink(full) and os.lstat(full).st_mode & 0o222:
                found.append(os.path.relpath(full, entry.path))
    return sorted(set(found))


def _rewrite(path: Path, data: bytes) -> None:
    """Change a sealed store file in place, as a stray tool running as root would."""
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def test_verify_names_a_modified_pyc_that_python_would_run(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry)
    assert verify_entry(entry) == []
    marker = json.loads(bytecode_marker(entry, TAG).read_text())
    rel = f"site-packages/demo/sub/__pycache__/mod.{TAG}.pyc"
    assert sorted(marker["files"]) == sorted(pyc_files(entry))

    # Valid bytecode of other code: unchecked-hash, so Python runs it as is.
    other = tmp_path / "evil.py"
    other.write_text("VALUE = 666\n")
    evil = tmp_path / "evil.pyc"
    py_compile.compile(
        str(other), cfile=str(evil), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    _rewrite(entry.path / rel, evil.read_bytes())
    site = entry.path / "site-packages"
    ran = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(site)!r}); import demo; print(demo.VALUE)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == "666"  # what runs is not what the source says
    assert verify_entry(entry) == [f"bytecode changed: {rel}"]


def test_verify_names_bytecode_nobody_recorded(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry)
    cache = entry.path / "site-packages" / "demo" / "__pycache__"
    os.chmod(cache, 0o755)
    (cache / f"__init__.{TAG}.opt-1.pyc").write_bytes(importlib.util.MAGIC_NUMBER)
    (cache / f"__init__.{TAG}.pyc").unlink()
    os.chmod(cache, 0o555)
    problems = verify_entry(entry)
    assert f"bytecode missing: site-packages/demo/__pycache__/__init__.{TAG}.pyc" in problems
    assert (
        "bytecode not recorded by any compile: "
        f"site-packages/demo/__pycache__/__init__.{TAG}.opt-1.pyc"
    ) in problems


COMPILER = textwrap.dedent(
    """
    import sys
    from contentpkg.store import Store
    from contentpkg.python.install.bytecode import ensure_bytecode

    store = Store.open()
    ensure_bytecode(store, store.entry(sys.argv[1]))
    """
)


def test_killed_compile_is_resealed_by_the_next_one(tmp_path: Path) -> None:
    # Many modules so the compile is still running when the first .pyc shows.
    modules = {f"demo/m{i:04}.py": f"def f{i}(x):\n    return x * {i}\n" * 20 for i in range(1500)}
    entry = demo_entry(tmp_path, modules)
    cache = entry.path / "site-packages" / "demo" / "__pycache__"
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPILER, entry.dirname], env={**os.environ, "PYTHONPATH": SRC}
    )
    try:
        for _ in range(200_000):  # a hang guard, not a timing assumption
            if (cache.is_dir() and len(os.listdir(cache)) > 5) or proc.poll() is not None:
                break
            os.sched_yield()
        proc.kill()
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -9, "the compile ended before it could be killed"
    assert not bytecode_marker(entry, TAG).exists()
    left_open = _writable(entry)
    assert "site-packages/demo" in left_open
    problems = verify_entry(entry)
    assert any(p.startswith("writable (store files must be read-only): ") for p in problems)
    assert any("site-packages/demo" in p for p in problems if p.startswith("writable"))

    assert ensure_bytecode(Store.open(), entry) is True
    assert _writable(entry) == []
    assert_sealed(entry)
    assert verify_entry(entry) == []


def test_marker_directory_left_open_is_sealed_on_next_access(tmp_path: Path) -> None:
    entry = demo_entry(tmp_path)
    assert ensure_bytecode(Store.open(), entry)
    # The state a compile killed between writing its marker and sealing leaves.
    os.chmod(entry.path / ".cpk", 0o755)
    os.chmod(entry.path / "site-packages" / "demo", 0o755)
    assert any(p.startswith("writable") for p in verify_entry(entry))
    assert ensure_bytecode(Store.open(), entry) is True
    assert _writable(entry) == []
    assert verify_entry(entry) == []


def test_another_interpreters_compile_runs_compileall_and_reports_what_failed(
    tmp_path: Path,
) -> None:
    """The wrapper that makes another interpreter's compileall die with cpk
    must still compile, unchecked-hash, and name the files that did not."""
    import importlib.util as iu

    from contentpkg.python.install.bytecode import _compile_with

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "good.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "bad.py").write_text("def (:\n")

    class Named:
        dirname = "demo,1,x"

    assert _compile_with(sys.executable, tmp_path, Named()) == ["pkg/bad.py"]  # type: ignore[arg-type]
    pyc = tmp_path / "pkg" / "__pycache__" / f"good.{sys.implementation.cache_tag}.pyc"
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked (PEP 552)
    assert pyc.read_bytes()[:4] == iu.MAGIC_NUMBER


# --- compiling beside the fetch ------------------------------------------------


class HoldingIndex(LocalIndex):
    """A loopback index that answers nothing for one file until released."""

    held: str = ""
    release: threading.Event
    waiting: threading.Event  # set once a request for the held file arrived

    def _take_fault(self, path: str):  # type: ignore[no-untyped-def]
        if path == self.file_path(self.held):
            self.waiting.set()
            self.release.wait(timeout=120)  # hang guard: the test releases it
        return super()._take_fault(path)


def test_compile_starts_before_the_last_download_finishes(tmp_path: Path) -> None:
    # The "late" wheel is held back by the index: its entry cannot exist
    # until the test lets it go, so "early" compiled meanwhile proves the
    # compile is fed as entries arrive, not after the whole fetch.
    dists = tmp_path / "dists"
    make_wheel(dists, "early", "1.0", files={"early/__init__.py": "E = 1\n"})
    make_wheel(dists, "late", "1.0", files={"late/__init__.py": "L = 1\n"})
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["early", "late"]\n'
    )
    home = tmp_path / "home"
    index = HoldingIndex(dists)
    index.held, index.release, index.waiting = (
        "late-1.0-py3-none-any.whl",
        threading.Event(),
        threading.Event(),
    )
    with index:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contentpkg", "sync", "--index-url", index.url],
            cwd=project,
            env={**os.environ, "CPK_HOME": str(home), "PYTHONPATH": SRC},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            store = home / "store"
            marker = None
            deadline = time.monotonic() + 120  # hang guard, not a timing assert
            while marker is None and proc.poll() is None and time.monotonic() < deadline:
                found = list(store.glob(f"early,1.0,*/.cpk/bytecode-{TAG}"))
                marker = found[0] if found else None
                time.sleep(0.01)
            held_then = not index.release.is_set() and not list(store.glob("late,*"))
        finally:
            index.release.set()
            out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode(errors="replace")
    assert index.waiting.is_set(), "the held file was never asked for"
    assert marker is not None, "early was not compiled while late was held back"
    assert held_then
    for name in ("early", "late"):
        (entry_dir,) = store.glob(f"{name},1.0,*")
        assert (entry_dir / ".cpk" / f"bytecode-{TAG}").exists()
        assert (entry_dir / "site-packages" / name / "__pycache__" / f"__init__.{TAG}.pyc").exists()


def test_pipeline_starts_no_more_workers_than_entries_and_none_for_done_ones(
    tmp_path: Path,
) -> None:
    store = Store.open()
    entries = [
        add_wheel(store, make_wheel(tmp_path / "w", n, "1.0", files={f"{n}/__init__.py": ""})).entry
        for n in ("one", "two")
    ]
    with BytecodePipeline(store, jobs=8) as pipeline:
        pipeline.submit_many(entries)
        pipeline.submit(entries[0])  # handed in twice: compiled once
    assert 1 <= pipeline.workers_started <= 2
    assert all(compiled_tags(e) == [TAG] for e in entries)
    before = {e.dirname: snapshot(e.path) for e in entries}
    with BytecodePipeline(store, jobs=8) as again:
        again.submit_many(entries)
    assert again.workers_started == 0
    assert {e.dirname: snapshot(e.path) for e in entries} == before


def test_pipeline_error_in_a_worker_is_raised_by_the_block(tmp_path: Path) -> None:
    store = Store.open()
    entry = demo_entry(tmp_path)
    # An interpreter that cannot be started: the worker answers with the error.
    missing = types.SimpleNamespace(cache_tag="cpython-0", executable=str(tmp_path / "nopython"))
    with (
        pytest.raises(CpkError, match="nopython: no such file"),
        BytecodePipeline(store, missing, jobs=2) as pipeline,
    ):
        pipeline.submit(entry)
    assert pipeline.workers_started == 1
    assert compiled_tags(entry) == []
    assert_sealed(entry)


# --- compiled while unpacking ------------------------------------------------------


def _big_module(i: int) -> str:
    return "".join(f"def f{i}_{k}(x):\n    return [x + {k} for _ in range(3)]\n" for k in range(40))


def test_a_large_wheel_is_compiled_by_every_worker_while_it_unpacks(tmp_path: Path) -> None:
    # 160 modules of ~2.7 KiB make ten batches: the first goes to the first
    # worker while it starts, the second finds it busy and starts the other.
    modules = {f"big/m{i:03}.py": _big_module(i) for i in range(160)}
    modules.update({"big/__init__.py": "", "big/data.txt": "not python\n"})
    modules["big/sub/broken.py"] = "print 'python 2'\n"
    wheel = make_wheel(tmp_path / "wheels", "big", "1.0", files=modules)
    sources = sorted(n for n in modules if n.endswith(".py"))
    store = Store.open()
    with BytecodePipeline(store, jobs=2) as pipeline:
        entry = add_wheel(store, wheel, bytecode=pipeline).entry
        # Published compiled: handing it in again finds nothing to do.
        assert compiled_tags(entry) == [TAG]
        pipeline.submit(entry)
    assert len(pipeline.compiled_by[wheel.name]) == 2, "one worker compiled the whole wheel"
    assert pipeline.workers_started == 2
    assert pipeline.modules_compiled == len(sources)  # each module in exactly one batch
    marker = json.loads(bytecode_marker(entry, TAG).read_text())
    assert marker["skipped"] == ["big/sub/broken.py"]
    compiled = {
        f"site-packages/{os.path.dirname(s)}/__pycache__/{os.path.basename(s)[:-3]}.{TAG}.pyc"
        for s in sources
        if s != "big/sub/broken.py"
    }
    assert set(marker["files"]) == compiled
    assert set(pyc_files(entry)) == compiled
    for data in pyc_files(entry).values():
        assert data[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(data[4:8], "little") == 0b01  # unchecked hash
    assert_sealed(entry)
    assert verify_entry(entry) == []


def test_bytecode_compiled_while_unpacking_is_what_imports_run(tmp_path: Path) -> None:
    files = {"demo/__init__.py": "def where():\n    return where.__code__.co_filename\n"}
    wheel = make_wheel(tmp_path / "wheels", "demo", "1.0", files=files)
    store = Store.open()
    with BytecodePipeline(store, jobs=2) as pipeline:
        entry = add_wheel(store, wheel, bytecode=pipeline).entry
    site = entry.path / "site-packages"
    pyc = site / "demo" / "__pycache__" / f"__init__.{TAG}.pyc"
    # Compiled in a staging directory: the code names its path inside
    # site-packages, never the slot, so the bytes are the same in any store.
    assert str(entry.path).encode() not in pyc.read_bytes()
    assert b".staging" not in pyc.read_bytes()
    before = snapshot(entry.path)
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); import demo; "
        "print(demo.__cached__); print(demo.where())"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-v", "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert f"# code object from '{pyc}'" in done.stderr  # loaded from our .pyc
    # ... and the code names the path it was imported from, as a plain install's would.
    assert done.stdout.splitlines() == [str(pyc), str(site / "demo" / "__init__.py")]
    assert snapshot(entry.path) == before


def test_a_wheel_that_fails_while_compiling_leaves_nothing_and_the_pipeline_goes_on(
    tmp_path: Path,
) -> None:
    modules = {f"bad/m{i:03}.py": _big_module(i) for i in range(80)}
    wheel = make_wheel(tmp_path / "wheels", "bad", "1.0", files=modules)
    # The last member's bytes no longer match RECORD: found only after the
    # modules before it were sent to the workers.
    import zipfile

    broken = tmp_path / "broken" / wheel.name
    broken.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "bad/m079.py":
                data = data.replace(b"x + 1", b"x - 1")
            dst.writestr(info, data)
    good = make_wheel(tmp_path / "wheels", "good", "1.0", files={"good/__init__.py": "G = 1\n"})
    store = Store.open()
    with BytecodePipeline(store, jobs=2) as pipeline:
        with pytest.raises(CpkError, match=r"sha256 mismatch .* from its RECORD"):
            add_wheel(store, broken, bytecode=pipeline)
        entry = add_wheel(store, good, bytecode=pipeline).entry
    assert [e.name for e in store.entries()] == ["good"]
    assert compiled_tags(entry) == [TAG]
    staging = store.user.root / ".staging"
    assert not staging.exists() or [p for p in staging.iterdir() if p.is_dir()] == []
