"""Requirements files and paths as inputs: what pip reads, what ``cpk run --with*`` takes.

The reader's features one by one (nested ``-r``, ``-c`` constraints, ``-e``
paths, ``--hash`` checked, index lines used, markers, continuations,
``${VAR}``), then end to end against a loopback index: a requirements-only
project locks and runs, and ``--with-requirements``, ``--with-editable`` and
``--with .`` add to a run without touching the project's lock.
"""

from __future__ import annotations

import hashlib
import textwrap
import tomllib
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

from contentpkg.errors import CpkError
from contentpkg.python.project import load_project
from contentpkg.python.project.requirements import RequirementsReader, read_with


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def checkout(root: Path, name: str, version: str = "1.0", deps: str = "") -> Path:
    (root / "src" / name).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{deps}]\n'
    )
    (root / "src" / name / "__init__.py").write_text(f"WHERE = {str(root)!r}\n")
    return root


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(root, "gamma", version)
    make_wheel(root, "delta", "1.0")
    make_wheel(root, "needs-gamma", "1.0", requires_dist=["gamma"])
    with LocalIndex(root) as served:
        yield served


# -- the reader ----------------------------------------------------------------


def test_nested_files_constraints_markers_continuations_and_variables(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "more.txt", "delta  # a comment\n-c pins.txt\n")
    write(tmp_path / "sub" / "pins.txt", "gamma<3\n# constraints only narrow\n")
    req = write(
        tmp_path / "requirements.txt",
        r"""
        needs-gamma \
            >=1.0 ; python_version >= "3"
        -r sub/more.txt
        old ; python_version < "3"
        rich==${RICH_VERSION}
        keep-${lower}
        """,
    )
    reader = RequirementsReader(validate=False, environ={"RICH_VERSION": "13.7.1"})
    reader.read(req, None)
    inputs = reader.inputs(tmp_path, req, _no_index(), {})
    assert inputs.requirements == [
        'needs-gamma >=1.0 ; python_version >= "3"',
        "delta",
        'old ; python_version < "3"',
        "rich==13.7.1",
        "keep-${lower}",  # pip expands upper-case names only
    ]
    assert inputs.constraints == ["gamma<3"]
    assert inputs.files == (req, tmp_path / "sub" / "more.txt", tmp_path / "sub" / "pins.txt")


def _no_index():
    from contentpkg.python.project import IndexSettings

    return IndexSettings()


def test_constraints_files_name_versions_only(tmp_path: Path) -> None:
    write(tmp_path / "c.txt", "-e ./x\n")
    req = write(tmp_path / "requirements.txt", "-c c.txt\n")
    with pytest.raises(CpkError, match=r"c\.txt:1: -e has no meaning in a constraints file"):
        load_project(req)
    write(tmp_path / "c.txt", "gamma @ https://example.org/gamma-1.0.tar.gz\n")
    with pytest.raises(CpkError, match="a constraint names a version, not a URL"):
        load_project(req)


def test_editable_git_line_installs_the_commit_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    req = write(tmp_path / "requirements.txt", "-e git+https://example.org/r.git@v1#egg=thing\n")
    assert load_project(req).requirements == ["thing @ git+https://example.org/r.git@v1#egg=thing"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{req}:1: -e git+https://example.org/r.git@v1#egg=thing: installed from its locked "
        "commit, not as an editable checkout (clone it and use -e PATH to edit it)"
    ]


def test_bare_urls_read_as_pip_reads_them(tmp_path: Path) -> None:
    req = write(
        tmp_path / "requirements.txt",
        "git+https://example.org/r.git@v1#egg=thing\n"
        "https://example.org/files/gamma-1.0-py3-none-any.whl\n",
    )
    assert load_project(req).requirements == [
        "thing @ git+https://example.org/r.git@v1#egg=thing",
        "gamma @ https://example.org/files/gamma-1.0-py3-none-any.whl",
    ]
    write(req, "https://example.org/x.tar.gz\n")
    with pytest.raises(CpkError, match=r"requirements\.txt:1: .*name the project"):
        load_project(req)


def test_with_values_are_requirement_lines_in_the_working_directory(tmp_path: Path) -> None:
    lib = checkout(tmp_path / "lib", "libby")
    write(tmp_path / "extra.txt", "delta\n-c pins.txt\n")
    write(tmp_path / "pins.txt", "gamma<2\n")
    reader = read_with(["gamma", "./lib", "-e lib", "-r extra.txt"], tmp_path)
    assert reader.requirements == ["gamma", "libby", "libby", "delta"]
    assert reader.sources["libby"].path == lib
    assert reader.sources["libby"].editable  # the -e came last
    assert reader.constraints == ["gamma<2"]
    with pytest.raises(CpkError, match=r"--with-requirements: cannot read .*missing\.txt"):
        read_with(["-r missing.txt"], tmp_path)
    with pytest.raises(CpkError, match=r"--with-editable: nowhere is not a directory"):
        read_with(["-e nowhere"], tmp_path)


# -- end to end ------------------------------------------------------------------


def cpk(index: LocalIndex, *args: str, cwd: Path, check: bool = True):
    return run_cpk(args[0], "--index-url", index.url, *args[1:], cwd=cwd, check=check)


def locked(path: Path) -> dict[str, str]:
    data = tomllib.loads(path.read_text())
    return {p["name"]: p.get("version", "") for p in data["packages"]}


def test_requirements_only_project_locks_runs_and_checks_hashes(
    tmp_path: Path, index: LocalIndex
) -> None:
    project = tmp_path / "proj"
    write(
        project / "requirements.txt",
        'needs-gamma\n-c constraints.txt\ndelta ; python_version < "3"\n',
    )
    write(project / "constraints.txt", "gamma<3\n")
    cpk(index, "lock", cwd=project)
    assert locked(project / "pylock.toml") == {"needs-gamma": "1.0", "gamma": "2.0"}
    out = cpk(index, "run", "python", "-c", "import gamma; print(gamma.__version__)", cwd=project)
    assert out.stdout.strip() == "2.0"

    # A second requirements file gets its own lock, beside the first.
    first = (project / "pylock.toml").read_bytes()
    write(project / "requirements-dev.txt", "-r requirements.txt\ndelta\n")
    cpk(index, "lock", "--project", "requirements-dev.txt", cwd=project)
    assert (project / "pylock.toml").read_bytes() == first
    dev_lock = locked(project / "pylock.requirements-dev.toml")
    assert set(dev_lock) == {"needs-gamma", "gamma", "delta"}

    # --hash: only a file with that hash may be used.
    wheel = index.root / "delta-1.0-py3-none-any.whl"
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    write(project / "requirements.txt", f"delta==1.0 --hash=sha256:{good}\n")
    cpk(index, "lock", cwd=project)
    assert locked(project / "pylock.toml") == {"delta": "1.0"}
    write(project / "requirements.txt", f"delta==1.0 --hash=sha256:{'0' * 64}\n")
    refused = cpk(index, "lock", cwd=project, check=False)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr


def test_index_lines_of_a_requirements_file_are_used(tmp_path: Path, index: LocalIndex) -> None:
    project = tmp_path / "proj"
    write(project / "requirements.txt", f"--index-url {index.url}\ndelta\n")
    done = run_cpk("lock", cwd=project, check=True)
    assert "locked 1 package" in done.stderr
    assert any(r.path.startswith("/simple/delta") for r in index.requests)


def test_with_requirements_editable_and_dot(tmp_path: Path, index: LocalIndex) -> None:
    project = tmp_path / "proj"
    write(project / "pyproject.toml", '[project]\nname = "app"\nversion = "1"\n')
    write(project / "src" / "app" / "__init__.py", "")
    write(tmp_path / "extra.txt", "gamma\n-c pins.txt\n")
    write(tmp_path / "pins.txt", "gamma<2\n")
    lib = checkout(tmp_path / "lib", "libby", deps='"delta"')
    cpk(index, "lock", cwd=project)
    lock_bytes = (project / "pylock.toml").read_bytes()

    probe = "import gamma, libby, delta; print(gamma.__version__, libby.WHERE)"
    out = cpk(
        index, "run", "--with-requirements", "../extra.txt", "--with-editable", "../lib",
        "python", "-c", probe, cwd=project,
    )  # fmt: skip
    assert out.stdout.split() == ["1.0", str(lib)]
    assert (project / "pylock.toml").read_bytes() == lock_bytes  # --with never locks the project

    # An edit in the editable checkout is seen at once.
    (lib / "src" / "libby" / "__init__.py").write_text("WHERE = 'edited'\n")
    out = cpk(
        index, "run", "--with", "gamma", "--with-editable", "../lib", "python", "-c", probe,
        cwd=project,
    )  # fmt: skip
    assert out.stdout.split() == ["3.0", "edited"]

    # --with . : the checkout in the working directory, beside another project.
    out = cpk(
        index, "run", "--project", str(project), "--with", ".",
        "python", "-c", "import libby; print(libby.WHERE)", cwd=lib,
    )  # fmt: skip
    assert out.stdout.strip() == "edited"


def test_variables_in_a_requirements_file_are_read_on_every_run(
    tmp_path: Path, index: LocalIndex
) -> None:
    project = tmp_path / "proj"
    write(project / "requirements.txt", "gamma==${GAMMA_VERSION}\n")
    code = "import gamma; print(gamma.__version__)"
    probe = ("run", "--index-url", index.url, "python", "-c", code)
    for version in ("1.0", "2.0", "1.0"):
        out = run_cpk(*probe, cwd=project, env={"GAMMA_VERSION": version}, check=True)
        assert out.stdout.strip() == version
