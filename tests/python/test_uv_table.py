"""``[tool.uv]``: what uv's project settings change is honoured, the rest is named.

Against loopback indexes with the real ``cpk``: path, editable and workspace
sources, a package pinned to an explicit ``[[tool.uv.index]]`` (two
indexes), constraint and override dependencies changing the resolution, one
warning line for the keys cpk ignores, and ``[tool.cpk]`` winning where both
tables speak.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

from contentpkg.errors import CpkError
from contentpkg.python.project import load_project


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def member(root: Path, name: str, deps: str = "") -> Path:
    write(
        root / "pyproject.toml",
        f'[project]\nname = "{name}"\nversion = "0.1"\ndependencies = [{deps}]\n',
    )
    write(root / "src" / name / "__init__.py", f"NAME = {name!r}\n")
    return root


def locked(root: Path) -> dict[str, dict]:
    data = tomllib.loads((root / "pylock.toml").read_text())
    return {p["name"]: p for p in data["packages"]}


@pytest.fixture
def public(tmp_path: Path):
    root = tmp_path / "public"
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(root, "gamma", version)
    make_wheel(root, "strict", "1.0", requires_dist=["gamma<2"])
    make_wheel(root, "needs-gamma", "1.0", requires_dist=["gamma"])
    with LocalIndex(root) as served:
        yield served


@pytest.fixture
def private(tmp_path: Path):
    root = tmp_path / "private"
    make_wheel(root, "gamma", "9.0")
    with LocalIndex(root) as served:
        yield served


def project(root: Path, deps: str, uv: str, index: LocalIndex) -> Path:
    write(
        root / "pyproject.toml",
        f"""
        [project]
        name = "app"
        version = "1"
        dependencies = [{deps}]

        [[tool.uv.index]]
        name = "public"
        url = "{index.url}"
        default = true
        """,
    )
    with (root / "pyproject.toml").open("a") as f:
        f.write(textwrap.dedent(uv))
    return root


def test_path_editable_and_workspace_sources(tmp_path: Path, public: LocalIndex) -> None:
    member(tmp_path / "libs" / "b", "b", '"gamma<2"')
    member(tmp_path / "ws" / "packages" / "m", "m")
    root = project(
        tmp_path / "ws",
        '"b", "m"',
        """
        [tool.uv.sources]
        b = { path = "../libs/b", editable = true }
        m = { workspace = true }

        [tool.uv.workspace]
        members = ["packages/*"]
        """,
        public,
    )
    # A member names a sibling: found through the workspace root above it.
    sibling = member(tmp_path / "ws" / "packages" / "n", "n", '"m"')
    with (sibling / "pyproject.toml").open("a") as f:
        f.write("[tool.uv.sources]\nm = { workspace = true }\n")
    assert load_project(sibling).sources["m"].path == tmp_path / "ws" / "packages" / "m"

    run_cpk("lock", cwd=root, check=True)
    packages = locked(root)
    assert packages["b"]["directory"] == {"path": "../libs/b", "editable": True}
    assert packages["m"]["directory"] == {"path": "packages/m", "editable": True}
    assert packages["gamma"]["version"] == "1.0"
    out = run_cpk("run", "python", "-c", "import b, m; print(b.NAME, m.NAME)", cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["b", "m"]


def test_a_package_pinned_to_an_explicit_index(
    tmp_path: Path, public: LocalIndex, private: LocalIndex
) -> None:
    explicit = f"""
        [[tool.uv.index]]
        name = "private"
        url = "{private.url}"
        explicit = true
        """
    # Explicit: never asked for anything not pinned to it.
    root = project(tmp_path / "a", '"gamma"', explicit, public)
    run_cpk("lock", cwd=root, check=True)
    assert locked(root)["gamma"]["version"] == "3.0"
    assert private.requests == []

    root = project(
        tmp_path / "b",
        '"gamma", "needs-gamma"',
        explicit + '\n[tool.uv.sources]\ngamma = { index = "private" }\n',
        public,
    )
    public.clear_log()
    run_cpk("lock", cwd=root, check=True)
    packages = locked(root)
    assert packages["gamma"]["version"] == "9.0"
    assert packages["gamma"]["wheels"][0]["url"].startswith(private.base_url)
    assert not any(r.path.startswith("/simple/gamma") for r in public.requests)
    out = run_cpk("run", "python", "-c", "import gamma; print(gamma.__version__)", cwd=root)
    assert out.stdout.strip() == "9.0", out.stderr

    write(root / "pyproject.toml", (root / "pyproject.toml").read_text().replace(
        'index = "private"', 'index = "nope"'
    ))  # fmt: skip
    bad = run_cpk("lock", cwd=root)
    assert bad.returncode == 1
    assert "no [[tool.uv.index]] named 'nope' (declared: private, public)" in bad.stderr


def test_constraint_and_override_dependencies(tmp_path: Path, public: LocalIndex) -> None:
    uv = '[tool.uv]\nconstraint-dependencies = ["gamma<3"]\n'
    root = project(tmp_path / "c", '"needs-gamma"', uv, public)
    run_cpk("lock", cwd=root, check=True)
    assert locked(root)["gamma"]["version"] == "2.0"

    # strict says gamma<2; the override replaces that requirement.
    root = project(
        tmp_path / "o", '"strict"', '[tool.uv]\noverride-dependencies = ["gamma>=3"]\n', public
    )
    run_cpk("lock", cwd=root, check=True)
    assert locked(root)["gamma"]["version"] == "3.0"
    # Changing the override makes the lock stale.
    write(root / "pyproject.toml", (root / "pyproject.toml").read_text().replace(">=3", "<2"))
    assert run_cpk("lock", "--check", cwd=root).returncode == 1
    run_cpk("lock", cwd=root, check=True)
    assert locked(root)["gamma"]["version"] == "1.0"


def test_ignored_keys_warn_in_one_line(tmp_path: Path, public: LocalIndex) -> None:
    root = project(
        tmp_path / "w",
        '"gamma"',
        '[tool.uv]\ndev-dependencies = ["x"]\nno-build = true\ncache-dir = ".c"\n'
        "default-groups = []\nmade-up-key = 1\n",
        public,
    )
    out = run_cpk("lock", cwd=root, check=True)
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"cpk: warning: {root / 'pyproject.toml'}: [tool.uv] dev-dependencies, made-up-key, "
        "no-build are ignored by cpk"
    ]


def test_tool_cpk_wins_where_both_speak(tmp_path: Path) -> None:
    member(tmp_path / "mine", "b")
    member(tmp_path / "theirs", "b")
    write(
        tmp_path / "p" / "pyproject.toml",
        """
        [project]
        name = "p"
        version = "1"
        dependencies = ["b", "gamma"]

        [tool.cpk]
        index-url = "https://cpk.example/simple"
        sources = { b = { path = "../mine" } }

        [tool.uv]
        index-url = "https://uv.example/simple"
        extra-index-url = ["https://extra.example/simple"]
        sources = { b = { path = "../theirs" }, gamma = { git = "https://g.example/gamma" } }
        """,
    )
    inputs = load_project(tmp_path / "p")
    assert inputs.index.index_url == "https://cpk.example/simple"
    assert inputs.index.extra_index_urls == ("https://extra.example/simple",)
    assert inputs.sources["b"].path == tmp_path / "mine"
    assert inputs.requirements == ["b", "gamma @ git+https://g.example/gamma"]


def test_unsupported_source_shapes_are_one_line(tmp_path: Path) -> None:
    pyproject = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "p"\nversion = "1"\n'
        '[tool.uv.sources]\nx = [{ path = "a", marker = "sys_platform == \'linux\'" }]\n',
    )
    with pytest.raises(CpkError, match=r"\[tool\.uv\.sources\]\.x: a list of sources"):
        load_project(pyproject)
    write(pyproject, '[project]\nname = "p"\nversion = "1"\n[tool.uv.sources]\nx = { wat = 1 }\n')
    with pytest.raises(CpkError, match="expected one of path, git, url, workspace or index"):
        load_project(pyproject)
