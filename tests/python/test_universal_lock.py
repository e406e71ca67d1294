"""One universal pylock.toml: every extra and group, every environment, and
selection at install time without resolving again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

PYPROJECT = """\
[project]
name = "proj"
version = "0.1"
requires-python = ">=3.9"
dependencies = ["base-dep", "winonly; sys_platform == 'win32'"]

[project.optional-dependencies]
fast = ["speedy"]

[dependency-groups]
dev = ["devtool"]
docs = ["docgen"]
"""


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(root, "base-dep", "1.0", requires_dist=["shared"])
    make_wheel(root, "shared", "1.0")
    make_wheel(root, "winonly", "1.0")
    make_wheel(root, "speedy", "2.0", requires_dist=["shared", "accel; python_version < '3.10'"])
    make_wheel(root, "accel", "1.0")
    make_wheel(root, "devtool", "1.0")
    make_wheel(root, "docgen", "3.0", requires_dist=["docextra[x]"])
    make_wheel(
        root,
        "docextra",
        "1.0",
        provides_extra=["x"],
        requires_dist=["shared", "xhelper; extra == 'x'"],
    )
    make_wheel(root, "xhelper", "1.0")
    # Two builds of one version: a wheel per platform, both locked.
    make_wheel(root, "platpkg", "1.0", tag="py3-none-manylinux_2_17_x86_64")
    make_wheel(root, "platpkg", "1.0", tag="py3-none-win_amd64")
    with LocalIndex(root) as served:
        yield served


def project(tmp_path: Path, text: str = PYPROJECT) -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text(text)
    return root


def cpk(index: LocalIndex, root: Path, *args: str, python: str | None = None):
    extra = ("--python", python) if python else ()
    return run_cpk(*args[:1], "--index-url", index.url, *extra, *args[1:], cwd=root)


IMPORTS = (
    "import importlib.util as u; "
    "print(' '.join(n for n in ['base_dep','shared','winonly','speedy','accel','devtool',"
    "'docgen','docextra','xhelper','platpkg'] if u.find_spec(n)))"
)


def importable(index: LocalIndex, root: Path, *flags: str, python: str | None = None) -> set[str]:
    proc = cpk(index, root, "run", *flags, "python", "-c", IMPORTS, python=python)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_the_lock_holds_every_selection_with_markers(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path)
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    assert data["requires-python"] == ">=3.9"
    assert data["extras"] == ["fast"]
    assert data["dependency-groups"] == ["dev", "docs"]
    assert data["default-groups"] == ["dev"]
    assert "environments" not in data  # every platform and Python of the range
    markers = {p["name"]: p.get("marker") for p in data["packages"]}
    assert markers["base-dep"] is None
    assert markers["winonly"] == 'sys_platform == "win32"'
    assert markers["speedy"] == '"fast" in extras'
    # Reached from the extra, under its own marker: both conditions.
    assert markers["accel"] == '"fast" in extras and python_version < "3.10"'
    assert markers["devtool"] == '"dev" in dependency_groups'
    # An extra of a dependency, reached through a group.
    assert markers["xhelper"] == '"docs" in dependency_groups'
    # Shared by the base and by others: the base wins (always installed).
    assert markers["shared"] is None
    platpkg_free = {p["name"] for p in data["packages"]}
    assert "platpkg" not in platpkg_free
    for package in data["packages"]:
        if package.get("marker"):
            Marker(package["marker"])  # PEP 508/751 syntax
        assert "tool" not in package or "file" not in package["tool"].get("cpk", {})


def test_every_wheel_of_a_version_is_locked(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path, PYPROJECT.replace('"base-dep",', '"base-dep", "platpkg",'))
    assert cpk(index, root, "lock").returncode == 0
    data = tomllib.loads((root / "pylock.toml").read_text())
    platpkg = next(p for p in data["packages"] if p["name"] == "platpkg")
    assert sorted(w["name"] for w in platpkg["wheels"]) == [
        "platpkg-1.0-py3-none-manylinux_2_17_x86_64.whl",
        "platpkg-1.0-py3-none-win_amd64.whl",
    ]


def test_switching_selection_neither_resolves_nor_rewrites(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = project(tmp_path)
    assert importable(index, root) == {"base_dep", "shared", "devtool"}
    lock = root / "pylock.toml"
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    venv = os.readlink(root / ".venv")
    # Fetch what every selection needs, then switch with no index request.
    assert importable(index, root, "--all-extras", "--all-groups") == {
        "base_dep", "shared", "devtool", "speedy", "docgen", "docextra", "xhelper",
    }  # fmt: skip
    index.clear_log()
    assert importable(index, root, "--group", "docs") == {
        "base_dep", "shared", "devtool", "docgen", "docextra", "xhelper",
    }  # fmt: skip
    assert importable(index, root, "--extra", "fast", "--no-dev") == {
        "base_dep", "shared", "speedy",
    }  # fmt: skip
    assert importable(index, root, "--no-default-groups") == {"base_dep", "shared"}
    assert importable(index, root, "--only-group", "dev") == {"devtool"}
    assert importable(index, root, "--only-group", "docs") == {
        "docgen", "docextra", "shared", "xhelper",
    }  # fmt: skip
    assert index.paths() == []
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    # .venv holds the default selection only, whatever ran last.
    assert os.readlink(root / ".venv") == venv
    out = subprocess.run(
        [root / ".venv" / "bin" / "python", "-c", IMPORTS], capture_output=True, text=True
    )
    assert set(out.stdout.split()) == {"base_dep", "shared", "devtool"}


def test_a_noop_lock_makes_no_request(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path)
    assert cpk(index, root, "lock").returncode == 0
    lock = root / "pylock.toml"
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    index.clear_log()
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    assert index.paths() == []
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before


def test_unknown_group_is_one_line(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path)
    proc = cpk(index, root, "run", "--group", "nope", "python", "-c", "pass")
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _other_patch_python() -> str | None:
    """A second interpreter of this minor version, another patch release."""
    import sys

    for candidate in ("/usr/bin/python3", shutil.which("python3.11") or ""):
        if not candidate or not os.path.exists(candidate):
            continue
        out = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if out[:2] == [str(v) for v in sys.version_info[:2]] and out[2] != str(sys.version_info[2]):
            return candidate
    return None


def test_a_lock_installs_on_another_patch_version(tmp_path: Path, index: LocalIndex) -> None:
    other = _other_patch_python()
    if other is None:
        pytest.skip("no second interpreter of this minor version with another patch release")
    root = project(tmp_path)
    assert cpk(index, root, "lock").returncode == 0
    lock = root / "pylock.toml"
    before = lock.read_bytes()
    index.clear_log()
    # --locked: the lock made here is current for the other interpreter too.
    proc = cpk(index, root, "run", "--locked", "python", "-c", IMPORTS, python=other)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"base_dep", "shared", "devtool"}
    assert lock.read_bytes() == before
    assert not any(p.startswith("/simple/") for p in index.paths())


def test_a_lock_that_does_not_cover_the_interpreter_is_one_line(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = project(tmp_path, PYPROJECT.replace(">=3.9", ">=3.9,<3.11"))
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    for flags in ((), ("--frozen",)):
        proc = cpk(index, root, "run", *flags, "python", "-c", "pass")
        assert proc.returncode != 0
        assert "locked for Python >=3.9,<3.11" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_platform_dependencies_are_locked_not_installed(tmp_path: Path, index: LocalIndex) -> None:
    root = project(tmp_path)
    proc = cpk(index, root, "sync")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    assert "winonly" in {p["name"] for p in data["packages"]}
    assert "winonly" not in proc.stdout + proc.stderr
    assert "winonly" not in importable(index, root)


def test_fork_on_disjoint_markers(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    make_wheel(dists, "numpyish", "1.5")
    make_wheel(dists, "numpyish", "2.1")
    text = PYPROJECT.replace(
        '"base-dep",',
        '"base-dep", "numpyish<2; python_version < \'3.11\'", '
        "\"numpyish>=2; python_version >= '3.11'\",",
    )
    with LocalIndex(dists) as index:
        make_wheel(dists, "base-dep", "1.0")
        make_wheel(dists, "winonly", "1.0")
        make_wheel(dists, "devtool", "1.0")
        make_wheel(dists, "speedy", "2.0")
        make_wheel(dists, "docgen", "3.0")
        root = project(tmp_path, text)
        proc = cpk(index, root, "lock")
        assert proc.returncode == 0, proc.stderr
        data = tomllib.loads((root / "pylock.toml").read_text())
        entries = [
            (p["version"], p.get("marker")) for p in data["packages"] if p["name"] == "numpyish"
        ]
        assert entries == [
            ("1.5", 'python_version < "3.11"'),
            ("2.1", 'python_version >= "3.11"'),
        ]
        # Packages of both forks at one version are one entry, unconditional.
        assert [p.get("marker") for p in data["packages"] if p["name"] == "base-dep"] == [None]
        check = "import numpyish, sys; print(numpyish.__version__)"
        proc = cpk(index, root, "run", "python", "-c", check)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "2.1"  # this interpreter is 3.11 or newer


OLD_LOCK = """\
lock-version = "1.0"
environments = ["python_full_version == '3.0.1' and sys_platform == 'linux'"]
requires-python = "==3.0.*"
created-by = "cpk"

[[packages]]
name = "base-dep"
version = "1.0"

[[packages.wheels]]
name = "base_dep-1.0-py3-none-any.whl"
url = "http://127.0.0.1:9/files/base_dep-1.0-py3-none-any.whl"
hashes = {{sha256 = "{}"}}

[packages.tool.cpk]
file = "base_dep-1.0-py3-none-any.whl"

[tool.cpk]
inputs-fingerprint = "{}"
python = "3.0.1"
""".format("0" * 64, "f" * 64)


def test_a_lock_of_the_previous_format(tmp_path: Path, index: LocalIndex) -> None:
    """A single-environment lock made elsewhere: --frozen says in one line
    that it is not for this interpreter; otherwise it is re-locked."""
    root = project(tmp_path)
    (root / "pylock.toml").write_text(OLD_LOCK)
    proc = cpk(index, root, "run", "--frozen", "python", "-c", "pass")
    assert proc.returncode != 0
    assert "locked for Python ==3.0.*" in proc.stderr and "re-lock" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert importable(index, root) == {"base_dep", "shared", "devtool"}
    data = tomllib.loads((root / "pylock.toml").read_text())
    assert data["tool"]["cpk"]["universal"] is True


def test_a_selection_is_remembered_by_the_run_memo(tmp_path: Path, index: LocalIndex) -> None:
    """Each selection has its own memo: switching back and forth stays on the
    hot path, which loads no third-party library."""
    root = project(tmp_path)
    memo_dir = Path(os.environ["CPK_CACHE_DIR"]) / "run-memo"
    for flags in ((), ("--group", "docs"), ("--only-group", "dev")):
        assert cpk(index, root, "run", *flags, "python", "-c", "pass").returncode == 0
    memos = {m.name: m.stat().st_mtime_ns for m in memo_dir.iterdir()}
    assert len(memos) >= 3
    import sys

    for flags in (("--group", "docs"), ("--only-group", "dev")):
        warm = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "contentpkg", "run", "--index-url",
             index.url, *flags, "python", "-c", IMPORTS],
            cwd=root, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert warm.returncode == 0, warm.stderr
        assert "contentpkg.python.run.plan" not in warm.stderr  # no full path taken
        assert "packaging" not in {
            line.rsplit("|", 1)[-1].strip().split(".")[0] for line in warm.stderr.splitlines()
        }
    assert warm.stdout.split() == ["devtool"]
    assert {m.name: m.stat().st_mtime_ns for m in memo_dir.iterdir()} == memos


def test_declared_conflicts_resolve_apart(tmp_path: Path, index: LocalIndex) -> None:
    make_wheel(Path(index.root), "torchish", "1.0")
    make_wheel(Path(index.root), "torchish", "2.0")
    text = PYPROJECT.replace(
        'fast = ["speedy"]', 'fast = ["speedy"]\ncpu = ["torchish==1.0"]\ngpu = ["torchish==2.0"]'
    )
    root = project(tmp_path, text)
    proc = cpk(index, root, "lock")
    assert proc.returncode != 0  # undeclared, the two extras cannot both hold
    assert len(proc.stderr.strip().splitlines()) >= 1 and "Traceback" not in proc.stderr
    root = project(
        tmp_path, text + '\n[tool.uv]\nconflicts = [[{ extra = "cpu" }, { extra = "gpu" }]]\n'
    )
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    entries = [(p["version"], p.get("marker")) for p in data["packages"] if p["name"] == "torchish"]
    assert entries == [("1.0", '"cpu" in extras'), ("2.0", '"gpu" in extras')]
    assert [p.get("marker") for p in data["packages"] if p["name"] == "base-dep"] == [None]
    check = ("python", "-c", "import torchish; print(torchish.__version__)")
    for extra, version in (("cpu", "1.0"), ("gpu", "2.0")):
        proc = cpk(index, root, "run", "--extra", extra, *check)
        assert proc.returncode == 0 and proc.stdout.strip() == version, proc.stderr
    proc = cpk(index, root, "run", "--extra", "cpu", "--extra", "gpu", *check)
    assert proc.returncode != 0
    assert "declared conflicting" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_environments_narrow_the_lock(tmp_path: Path, index: LocalIndex) -> None:
    root = project(
        tmp_path, PYPROJECT + "\n[tool.uv]\nenvironments = [\"sys_platform == 'linux'\"]\n"
    )
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    assert data["environments"] == ["sys_platform == 'linux'"]
    assert "winonly" not in {p["name"] for p in data["packages"]}
    # An interpreter outside the environments: one line, also with --frozen.
    root = project(
        tmp_path, PYPROJECT + "\n[tool.uv]\nenvironments = [\"sys_platform == 'win32'\"]\n"
    )
    for flags in ((), ("--frozen",)):
        proc = cpk(index, root, "run", "-q", *flags, "python", "-c", "pass")
        assert proc.returncode != 0
        assert "which exclude" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_required_environments_need_wheels(tmp_path: Path, index: LocalIndex) -> None:
    text = PYPROJECT.replace('"base-dep",', '"base-dep", "platpkg",')
    required = (
        "required-environments = [\"sys_platform == 'darwin' and platform_machine == 'arm64'\"]\n"
    )
    root = project(tmp_path, text + "\n[tool.uv]\n" + required)
    proc = cpk(index, root, "lock")
    assert proc.returncode != 0
    assert "platpkg 1.0 has no wheel for the required environment" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (root / "pylock.toml").exists()
    # [tool.cpk] wins where both speak.
    root = project(
        tmp_path, text + "\n[tool.uv]\n" + required + "\n[tool.cpk]\nrequired-environments = []\n"
    )
    assert cpk(index, root, "lock").returncode == 0


def test_fork_on_disjoint_markers_deep_in_the_graph(tmp_path: Path, index: LocalIndex) -> None:
    dists = Path(index.root)
    make_wheel(
        dists,
        "lib",
        "1.0",
        requires_dist=["dep<2; python_version < '3.11'", "dep>=2; python_version >= '3.11'"],
    )
    make_wheel(dists, "dep", "1.0")
    make_wheel(dists, "dep", "2.0")
    root = project(tmp_path, PYPROJECT.replace('"base-dep",', '"base-dep", "lib",'))
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    entries = [(p["name"], p["version"], p.get("marker")) for p in data["packages"]]
    assert ("dep", "1.0", 'python_version < "3.11"') in entries
    assert ("dep", "2.0", 'python_version >= "3.11"') in entries
    assert ("lib", "1.0", None) in entries
    proc = cpk(index, root, "run", "python", "-c", "import dep; print(dep.__version__)")
    assert proc.returncode == 0 and proc.stdout.strip() == "2.0", proc.stderr


def test_newer_releases_for_newer_pythons(tmp_path: Path, index: LocalIndex) -> None:
    """As uv forks on requires-python: a release that drops the project's
    oldest Python is still locked, for the Pythons it supports."""
    dists = Path(index.root)
    make_wheel(dists, "newlib", "1.0", requires_python=">=3.9")
    newer = make_wheel(dists, "newlib", "2.0", requires_python=">=3.11")
    index.set_requires_python(newer.name, ">=3.11")
    root = project(tmp_path, PYPROJECT.replace('"base-dep",', '"base-dep", "newlib",'))
    proc = cpk(index, root, "lock")
    assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((root / "pylock.toml").read_text())
    entries = [(p["version"], p.get("marker")) for p in data["packages"] if p["name"] == "newlib"]
    assert entries == [
        ("1.0", 'python_full_version < "3.11"'),
        ("2.0", 'python_full_version >= "3.11"'),
    ]
    # What every Python shares stays one unconditional entry.
    assert [p.get("marker") for p in data["packages"] if p["name"] == "base-dep"] == [None]
    proc = cpk(index, root, "run", "python", "-c", "import newlib; print(newlib.__version__)")
    assert proc.returncode == 0 and proc.stdout.strip() == "2.0", proc.stderr


def test_a_dependency_that_drops_the_oldest_python_is_one_line(
    tmp_path: Path, index: LocalIndex
) -> None:
    newer = make_wheel(Path(index.root), "modern", "1.0", requires_python=">=3.12")
    index.set_requires_python(newer.name, ">=3.12")
    root = project(tmp_path, PYPROJECT.replace('"base-dep",', '"base-dep", "modern",'))
    proc = cpk(index, root, "lock")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "requires Python >=3.12, but the lock must serve Python 3.9" in proc.stderr


def test_a_selection_seen_before_is_decided_without_packaging(
    tmp_path: Path, index: LocalIndex
) -> None:
    """Without a memo (another command, a touched file), a selection made
    before is read from the cache: no marker is parsed, packaging not loaded."""
    import sys

    root = project(tmp_path)
    assert cpk(index, root, "run", "--group", "docs", "python", "-c", "pass").returncode == 0
    shutil.rmtree(Path(os.environ["CPK_CACHE_DIR"]) / "run-memo")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "contentpkg", "run", "--index-url", index.url,
         "--group", "docs", "python", "-c", IMPORTS],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "contentpkg.python.run.plan" in proc.stderr  # the full path was taken
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not {m for m in loaded if m.split(".")[0] == "packaging"}
    assert set(proc.stdout.split()) == {
        "base_dep", "shared", "devtool", "docgen", "docextra", "xhelper",
    }  # fmt: skip
