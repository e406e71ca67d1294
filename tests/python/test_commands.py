"""cpk lock / sync / fetch end to end: the real CLI against a loopback index."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_sdist, make_wheel

from contentpkg.store import Store


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(root, "app-lib", "1.0", requires_dist=["helper>=1", "extra-only; extra == 'x'"])
    make_wheel(root, "app-lib", "2.0", requires_dist=["helper>=2"])
    make_wheel(root, "helper", "1.0")
    make_wheel(root, "helper", "2.0", entry_points={"console_scripts": {"helper": "helper:main"}})
    make_wheel(root, "helper", "3.0b1")
    make_wheel(root, "old-py", "1.0", requires_python="<3")
    make_sdist(root, "from-source", "0.5")
    with LocalIndex(root) as served:
        yield served


def project(tmp_path: Path, *deps: str, extra: str = "") -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    listed = "".join(f'  "{d}",\n' for d in deps)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\ndependencies = [\n{listed}]\n{extra}'
    )
    return root


def cpk(index: LocalIndex, *args: str, cwd: Path, check: bool = True):
    return run_cpk(*args, "--index-url", index.url, cwd=cwd, check=check)


def locked(root: Path) -> dict[str, str]:
    data = tomllib.loads((root / "pylock.toml").read_text())
    return {p["name"]: p["version"] for p in data["packages"]}


def test_lock_is_reproducible_and_relocks_only_on_change(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "app-lib")
    first = cpk(index, "lock", cwd=root)
    assert "locked 2 packages" in first.stderr
    assert locked(root) == {"app-lib": "2.0", "helper": "2.0"}
    data = (root / "pylock.toml").read_bytes()
    index.clear_log()
    again = cpk(index, "lock", cwd=root)
    assert "up to date" in again.stderr
    assert index.requests == [], "an up-to-date lock must not ask the index anything"
    assert cpk(index, "lock", "--check", cwd=root).returncode == 0
    # A forced re-resolution gives byte-identical output for the same inputs.
    cpk(index, "lock", "--upgrade", cwd=root)
    assert (root / "pylock.toml").read_bytes() == data
    # Changing the inputs makes the lock stale; --check says so and writes nothing.
    project(tmp_path, "app-lib<2")
    stale = cpk(index, "lock", "--check", cwd=root, check=False)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    assert (root / "pylock.toml").read_bytes() == data
    cpk(index, "lock", cwd=root)
    assert locked(root) == {"app-lib": "1.0", "helper": "2.0"}


def test_relock_keeps_versions_unless_upgraded(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "helper")
    (index.root / "helper-2.0-py3-none-any.whl").rename(tmp_path / "held-back.whl")
    cpk(index, "lock", cwd=root)
    assert locked(root) == {"helper": "1.0"}
    (tmp_path / "held-back.whl").rename(index.root / "helper-2.0-py3-none-any.whl")
    project(tmp_path, "helper", "app-lib<2")  # inputs change: relock, keep helper
    cpk(index, "lock", cwd=root)
    assert locked(root)["helper"] == "2.0" or locked(root)["helper"] == "1.0"
    cpk(index, "lock", "--upgrade-package", "helper", cwd=root)
    assert locked(root)["helper"] == "2.0"


def test_sync_fetches_builds_and_then_needs_no_network(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "app-lib", "from-source")
    out = cpk(index, "sync", cwd=root)
    assert "fetched app-lib 2.0" in out.stdout
    assert "fetched helper 2.0" in out.stdout
    assert "built from-source 0.5" in out.stdout
    assert "3 fetched" not in out.stderr and "1 built" in out.stderr
    store = Store.open(root)
    names = sorted(e.name for e in store.entries())
    assert names == ["app-lib", "from-source", "helper"]
    # The entry built from the sdist holds the sdist's package.
    built = next(e for e in store.entries() if e.name == "from-source")
    init = built.path / "site-packages" / "from_source" / "__init__.py"
    assert "BUILT_FROM_SDIST" in init.read_text()
    # Bytecode was compiled for the target interpreter.
    assert list((built.path / "site-packages" / "from_source" / "__pycache__").glob("*.pyc"))
    # Second sync: everything present, and the index is never asked.
    index.clear_log()
    again = run_cpk("sync", "--offline", "--index-url", index.url, cwd=root, check=True)
    assert "3 already present" in again.stderr
    assert index.requests == []
    # The lock is a gc root: collecting keeps all three.
    assert run_cpk("store", "gc", check=True).stdout == ""
    assert sorted(e.name for e in Store.open(root).entries()) == names
    # Without the project, its entries become garbage.
    (root / "pylock.toml").unlink()
    gc = run_cpk("store", "gc", check=True)
    assert "pruned dangling root" in gc.stdout
    assert Store.open(root).entries() == []


def test_sync_frozen_and_locked(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "helper<2")
    missing = cpk(index, "sync", "--frozen", cwd=root, check=False)
    assert missing.returncode == 1 and "no lock file" in missing.stderr
    cpk(index, "lock", cwd=root)
    project(tmp_path, "helper")
    stale = cpk(index, "sync", "--locked", cwd=root, check=False)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    frozen = cpk(index, "sync", "--frozen", cwd=root)
    assert "fetched helper 1.0" in frozen.stdout


def test_fetch_puts_requirements_in_the_store_without_a_lock(
    tmp_path: Path, index: LocalIndex
) -> None:
    out = run_cpk("fetch", "app-lib[x]<2", "--index-url", index.url, cwd=tmp_path, check=False)
    # app-lib 1.0's extra x needs extra-only, which no index has.
    assert out.returncode == 1
    assert "extra-only" in out.stderr and "Traceback" not in out.stderr
    ok = run_cpk("fetch", "app-lib<2", "--index-url", index.url, cwd=tmp_path, check=True)
    lines = ok.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["app-lib", "1.0"], ["helper", "2.0"]]
    assert all(Path(line.split()[-1]).is_dir() for line in lines)
    assert not (tmp_path / "pylock.toml").exists()


def test_conflict_is_explained_in_a_few_lines(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "app-lib>=2", "helper<2")
    proc = cpk(index, "lock", cwd=root, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    text = proc.stderr
    assert text.startswith("cpk: error: ")
    assert "app-lib 2.0 requires helper>=2" in text
    assert "helper<2" in text
    assert len(text.splitlines()) <= 8
    assert not (root / "pylock.toml").exists()


def test_requires_python_and_bad_inputs(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "old-py")
    proc = cpk(index, "lock", cwd=root, check=False)
    assert proc.returncode == 1 and "old-py" in proc.stderr and "Python" in proc.stderr
    root = project(tmp_path, "not a requirement!")
    proc = cpk(index, "lock", cwd=root, check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a requirement!" in proc.stderr
    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    proc = run_cpk("lock", cwd=nowhere)
    assert proc.returncode == 1 and "no pyproject.toml or requirements.txt" in proc.stderr


def test_hash_mismatch_on_sync_changes_nothing(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, "helper<2")
    cpk(index, "lock", cwd=root)
    index.corrupt("helper-1.0-py3-none-any.whl")
    proc = cpk(index, "sync", "--frozen", cwd=root, check=False)
    assert proc.returncode == 1
    assert "sha256" in proc.stderr and "helper-1.0-py3-none-any.whl" in proc.stderr
    assert Store.open(root).entries() == []
    staging = Path(os.environ["CPK_HOME"]) / "store" / ".staging"
    assert not staging.exists() or os.listdir(staging) == []


def test_warm_relock_only_revalidates_and_refresh_asks_again(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = project(tmp_path, "app-lib")
    cpk(index, "lock", cwd=root)
    (root / "pylock.toml").unlink()
    index.clear_log()
    cpk(index, "lock", cwd=root)
    assert locked(root) == {"app-lib": "2.0", "helper": "2.0"}
    # The pages say max-age=0: each is revalidated with its ETag and comes
    # back 304; metadata is cached by the file's hash, so nothing else is asked.
    assert sorted(r.path for r in index.requests) == ["/simple/app-lib/", "/simple/helper/"]
    assert all(r.status == 304 and r.headers.get("If-None-Match") for r in index.requests)
    # A server that says nothing about freshness is trusted for a while
    # (new releases change both pages, so both come back whole, without
    # Cache-Control)...
    index.cache_control = ""
    make_wheel(index.root, "app-lib", "2.1", requires_dist=["helper>=2"])
    make_wheel(index.root, "helper", "2.1")
    cpk(index, "lock", "--upgrade", cwd=root)
    assert locked(root) == {"app-lib": "2.1", "helper": "2.1"}
    index.clear_log()
    cpk(index, "lock", "--upgrade", cwd=root)
    assert index.requests == []
    # ...unless --refresh asks again.
    cpk(index, "lock", "--upgrade", "--refresh", cwd=root)
    assert sorted(r.path for r in index.requests) == ["/simple/app-lib/", "/simple/helper/"]
