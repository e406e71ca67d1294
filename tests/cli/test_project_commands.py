"""cpk init, add, remove, tree and export through the real CLI, against a loopback index."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

PYPROJECT = """\
# The project's own comment, kept by every edit.
[project]
name = "proj"   # aligned on purpose
version = "0.1"
dependencies = [
    # the web part
    "app-lib>=1",  # why: the app
]

[tool.other]
keep = 'single quotes'
"""


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(root, "app-lib", "1.0", requires_dist=["helper>=1"])
    make_wheel(root, "helper", "1.0")
    make_wheel(root, "helper", "2.0")
    make_wheel(root, "tester", "1.0", requires_dist=["helper"])
    make_wheel(root, "extra-dep", "1.0")
    with LocalIndex(root) as served:
        yield served


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def cpk(index: LocalIndex, *args: str, cwd: Path, check: bool = True):
    return run_cpk(*args, "--index-url", index.url, cwd=cwd, check=check)


def locked(root: Path) -> dict[str, str]:
    data = tomllib.loads((root / "pylock.toml").read_text())
    return {p["name"]: p["version"] for p in data["packages"]}


def test_add_and_remove_keep_comments_and_formatting(proj: Path, index: LocalIndex) -> None:
    cpk(index, "add", "tester", cwd=proj)
    text = (proj / "pyproject.toml").read_text()
    # Only the array changed: every comment, alignment and quoting stays.
    assert text == PYPROJECT.replace(
        '    "app-lib>=1",  # why: the app\n', '    "app-lib>=1",  # why: the app\n    "tester",\n'
    )
    assert locked(proj) == {"app-lib": "1.0", "helper": "2.0", "tester": "1.0"}
    cpk(index, "add", "--dev", "extra-dep==1.0", cwd=proj)
    data = tomllib.loads((proj / "pyproject.toml").read_text())
    assert data["dependency-groups"] == {"dev": ["extra-dep==1.0"]}
    cpk(index, "add", "--optional", "fast", "helper<2", cwd=proj)
    data = tomllib.loads((proj / "pyproject.toml").read_text())
    assert data["project"]["optional-dependencies"] == {"fast": ["helper<2"]}
    # Adding a listed package again replaces its line in place.
    cpk(index, "add", "tester>=1", cwd=proj)
    assert '    "tester>=1",\n' in (proj / "pyproject.toml").read_text()

    cpk(index, "remove", "tester", cwd=proj)
    cpk(index, "remove", "--dev", "extra-dep", cwd=proj)
    cpk(index, "remove", "--optional", "fast", "helper", cwd=proj)
    text = (proj / "pyproject.toml").read_text()
    assert text.startswith(PYPROJECT.split("[tool.other]")[0])
    assert "keep = 'single quotes'" in text
    # Re-locking keeps the versions it can (helper<2 came with the extra).
    assert locked(proj) == {"app-lib": "1.0", "helper": "1.0"}


def test_a_failed_add_changes_nothing(proj: Path, index: LocalIndex) -> None:
    cpk(index, "lock", cwd=proj)
    before = (proj / "pyproject.toml").read_bytes(), (proj / "pylock.toml").read_bytes()
    failed = cpk(index, "add", "helper>=5", cwd=proj, check=False)
    assert failed.returncode == 1
    assert "cpk: error:" in failed.stderr and "Traceback" not in failed.stderr
    after = (proj / "pyproject.toml").read_bytes(), (proj / "pylock.toml").read_bytes()
    assert after == before
    # Without a lock before, none is left behind either.
    (proj / "pylock.toml").unlink()
    assert cpk(index, "add", "no-such-package", cwd=proj, check=False).returncode == 1
    assert not (proj / "pylock.toml").exists()
    assert (proj / "pyproject.toml").read_bytes() == before[0]


def test_remove_names_what_is_missing_and_points_env_dirs_to_uninstall(
    proj: Path, index: LocalIndex, tmp_path: Path
) -> None:
    missing = cpk(index, "remove", "tester", cwd=proj, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith(
        "tester: not in [project].dependencies of " + str(proj / "pyproject.toml")
    )
    old = run_cpk("remove", "jq", "--from", tmp_path / "tools", cwd=proj)
    assert old.returncode == 1 and "cpk uninstall" in old.stderr
    assert old.stderr.count("\n") == 1
    # The old form with the env dir as an argument (an env dir has .cpk/).
    (tmp_path / "tools" / ".cpk").mkdir(parents=True)
    positional = run_cpk("remove", "jq", tmp_path / "tools", cwd=proj)
    assert (positional.returncode, positional.stderr) == (1, old.stderr)
    assert (proj / "pyproject.toml").read_text() == PYPROJECT


def test_editable_add_writes_a_source(proj: Path, index: LocalIndex, tmp_path: Path) -> None:
    lib = proj / "libs" / "mylib"
    lib.mkdir(parents=True)
    (lib / "pyproject.toml").write_text('[project]\nname = "mylib"\nversion = "0.1"\n')
    cpk(index, "add", "--editable", "libs/mylib", "--no-sync", cwd=proj)
    data = tomllib.loads((proj / "pyproject.toml").read_text())
    assert "mylib" in data["project"]["dependencies"]
    assert data["tool"]["cpk"]["sources"]["mylib"] == {"path": "libs/mylib", "editable": True}


def test_init_makes_a_project_cpk_can_lock(tmp_path: Path, index: LocalIndex) -> None:
    made = run_cpk("init", "new-app", cwd=tmp_path, check=True)
    root = tmp_path / "new-app"
    assert "Initialized application 'new-app'" in made.stderr
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert data["project"]["name"] == "new-app"
    assert data["project"]["requires-python"].startswith(">=3.")
    assert ".venv" in (root / ".gitignore").read_text().splitlines()
    again = run_cpk("init", "new-app", cwd=tmp_path)
    assert again.returncode == 1 and "already" in again.stderr
    run_cpk("init", "--lib", "--directory", tmp_path, "lib-one", check=True)
    assert (tmp_path / "lib-one" / "src" / "lib_one" / "__init__.py").is_file()
    cpk(index, "add", "app-lib", cwd=root)
    assert locked(root) == {"app-lib": "1.0", "helper": "2.0"}
    # init's empty list grows one requirement a line.
    assert 'dependencies = [\n    "app-lib",\n]\n' in (root / "pyproject.toml").read_text()


def test_tree_and_export_agree_with_the_lock(proj: Path, index: LocalIndex) -> None:
    cpk(index, "add", "tester", cwd=proj)
    tree = cpk(index, "tree", cwd=proj).stdout.splitlines()
    assert tree == [
        "app-lib v1.0",
        "└── helper v2.0",
        "tester v1.0",
        "└── helper v2.0",
    ]
    assert cpk(index, "tree", "--depth", "0", cwd=proj).stdout.split() == [
        "app-lib",
        "v1.0",
        "tester",
        "v1.0",
    ]
    inverted = cpk(index, "tree", "--invert", "helper", cwd=proj).stdout.splitlines()
    assert inverted == ["helper v2.0", "├── app-lib v1.0", "└── tester v1.0"]
    make_wheel(index.root, "tester", "1.5", requires_dist=["helper"])
    outdated = cpk(index, "tree", "--outdated", cwd=proj).stdout
    assert "tester v1.0 (latest: v1.5)" in outdated

    lock = tomllib.loads((proj / "pylock.toml").read_text())
    exported = cpk(index, "export", cwd=proj).stdout
    pins = [line for line in exported.splitlines() if "==" in line]
    assert [p.split(" ")[0] for p in pins] == [
        f"{p['name']}=={p['version']}" for p in lock["packages"]
    ]
    for package in lock["packages"]:
        for wheel in package["wheels"]:
            assert f"--hash=sha256:{wheel['hashes']['sha256']}" in exported
    as_lock = tomllib.loads(cpk(index, "export", "--format", "pylock.toml", cwd=proj).stdout)
    assert as_lock["packages"] == lock["packages"]


def test_export_evaluates_package_markers(proj: Path, index: LocalIndex) -> None:
    cpk(index, "lock", cwd=proj)
    text = (proj / "pylock.toml").read_text()
    # A universal lock's markers: helper only with the group 'g' (which the
    # lock declares, as a lock of a project with that group would).
    text = text.replace(
        'name = "helper"\n', 'name = "helper"\nmarker = "\'g\' in dependency_groups"\n'
    ).replace("dependency-groups = []\n", 'dependency-groups = ["g"]\n')
    (proj / "pylock.toml").write_text(text)
    plain = cpk(index, "export", "--frozen", cwd=proj).stdout
    assert "helper==" not in plain and "app-lib==1.0" in plain
    grouped = cpk(index, "export", "--frozen", "--group", "g", cwd=proj).stdout
    assert "helper==2.0" in grouped


def test_bad_requirement_and_bad_depth_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    run_cpk("init", tmp_path / "proj", check=True)
    root = tmp_path / "proj"
    before = (root / "pyproject.toml").read_bytes()
    added = run_cpk("add", "bad req!!", cwd=root)
    assert added.returncode == 1
    assert added.stderr.strip().splitlines() == [
        "cpk: error: 'bad req!!': not a valid requirement"
        " (Expected semicolon (after name with no version specifier) or end)"
    ]
    assert (root / "pyproject.toml").read_bytes() == before
    tree = run_cpk("tree", "--depth", "-1", cwd=root)
    assert tree.returncode == 2
    last = tree.stderr.strip().splitlines()[-1]
    assert last.endswith("'-1' is not a number of levels (0 or more)")
    assert "Traceback" not in tree.stderr


GROUPED = """\
[project]
name = "proj"
version = "0.1"
dependencies = ["app-lib"]

[dependency-groups]
dev = ["tester"]
lint = ["extra-dep"]

[tool.uv]
default-groups = ["lint"]
"""


def test_tree_and_export_take_the_default_groups_as_sync_does(
    proj: Path, index: LocalIndex
) -> None:
    (proj / "pyproject.toml").write_text(GROUPED)
    cpk(index, "lock", cwd=proj)

    def names(*flags: str) -> tuple[set[str], set[str]]:
        tree = cpk(index, "tree", "--frozen", *flags, cwd=proj).stdout.splitlines()
        exported = cpk(index, "export", "--frozen", *flags, cwd=proj).stdout.splitlines()
        return (
            {line.lstrip("│├└─ ").split(" ")[0] for line in tree},
            {line.split("==")[0] for line in exported if "==" in line},
        )

    # [tool.uv] default-groups replaces dev: lint comes, dev does not.
    default = {"app-lib", "helper", "extra-dep"}
    assert names() == (default, default)
    everything = default | {"tester"}
    assert names("--all-groups") == (everything, everything)
    assert names("--no-default-groups") == ({"app-lib", "helper"}, {"app-lib", "helper"})
    assert names("--only-group", "dev") == ({"tester", "helper"}, {"tester", "helper"})
    unknown = cpk(index, "export", "--frozen", "--group", "docs", cwd=proj, check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "cpk: error: no dependency group named 'docs' (declared: dev, lint)"
    )
