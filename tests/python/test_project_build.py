"""The project itself, built by its own PEP 517 backend (and what comes with it).

Real backends come from the loopback index as wheels made from what the test
interpreter has installed (setuptools, wheel); an in-tree backend
(``backend-path``) counts its own hook calls. Compiled extensions use the
system ``cc``.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from support.backends import (
    INTREE_BUILD_SYSTEM,
    add_intree_backend,
    backend_calls,
    wheel_of_installed,
)
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel


@pytest.fixture(scope="module")
def backend_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """setuptools and wheel as wheels, made from this interpreter's installs."""
    dists = tmp_path_factory.mktemp("backends")
    # setuptools before 70.1 builds wheels with the wheel package, which
    # needs packaging.
    for name in ("setuptools", "wheel", "packaging"):
        if wheel_of_installed(dists, name) is None:
            pytest.skip(f"{name} is not installed here to serve as a build backend")
    return dists


@pytest.fixture
def index(tmp_path: Path, backend_wheels: Path):
    root = tmp_path / "dists"
    root.mkdir()
    for wheel in backend_wheels.iterdir():
        shutil.copy(wheel, root / wheel.name)
    make_wheel(root, "beta", "1.0")
    # A test tool that needs the project it tests, and a decoy release of
    # that project on the index, which must never be used.
    make_wheel(
        root, "checker", "1.0", requires_dist=["selfproj"],
        files={"checker/__init__.py": "import selfproj\nSEEN = selfproj.WHERE\n"},
    )  # fmt: skip
    make_wheel(root, "selfproj", "9.9", files={"selfproj/__init__.py": "WHERE = 'index'\n"})
    with LocalIndex(root) as served:
        yield served


def cpk(index: LocalIndex, root: Path, *args: str, **kw):
    return run_cpk("run", "--index-url", index.url, *args, cwd=root, **kw)


def py(index: LocalIndex, root: Path, code: str, *options: str):
    return cpk(index, root, *options, "python", "-c", code)


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@needs_cc
def test_c_extension_is_compiled_in_place_and_imports(tmp_path: Path, index: LocalIndex) -> None:
    root = tmp_path / "cext"
    (root / "cext").mkdir(parents=True)
    (root / "cext" / "__init__.py").write_text("from cext._speed import add\n")
    (root / "cext" / "_speed.c").write_text(
        "#include <Python.h>\n"
        "static PyObject *add(PyObject *s, PyObject *a) {\n"
        '  long x, y; if (!PyArg_ParseTuple(a, "ll", &x, &y)) return NULL;\n'
        "  return PyLong_FromLong(x + y); }\n"
        'static PyMethodDef m[] = {{"add", add, METH_VARARGS, ""}, {0}};\n'
        'static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "_speed", 0, -1, m};\n'
        "PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&d); }\n"
    )
    (root / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(ext_modules=[Extension('cext._speed', ['cext/_speed.c'])])\n"
    )
    (root / "pyproject.toml").write_text(
        '[project]\nname = "cext"\nversion = "1.0"\n'
        '[build-system]\nrequires = ["setuptools>=64", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n'
        '[tool.setuptools]\npackages = ["cext"]\n'
    )
    proc = py(index, root, "import cext, cext._speed as s; print(cext.add(2, 3), s.__file__)")
    assert proc.returncode == 0, proc.stderr
    total, where = proc.stdout.split()
    assert total == "5"
    # Compiled in place, in the checkout, as pip and uv do for editables.
    assert Path(where).parent == root / "cext"


def test_dynamic_version_comes_from_the_backend_normalised(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = tmp_path / "dynver"
    (root / "src" / "dynver").mkdir(parents=True)
    (root / "src" / "dynver" / "__init__.py").write_text('__version__ = "3.1.0.dev"\n')
    (root / "pyproject.toml").write_text(
        '[project]\nname = "dynver"\ndynamic = ["version"]\ndependencies = ["beta"]\n'
        '[build-system]\nrequires = ["setuptools>=64", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n'
        '[tool.setuptools.dynamic]\nversion = {attr = "dynver.__version__"}\n'
    )
    code = (
        "import dynver, beta, importlib.metadata as m;"
        "print(m.version('dynver'), dynver.__version__)"
    )
    proc = py(index, root, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3.1.0.dev0", "3.1.0.dev"]


def test_setup_cfg_only_project_is_found_and_built(tmp_path: Path, index: LocalIndex) -> None:
    root = tmp_path / "cfgonly"
    (root / "cfgonly").mkdir(parents=True)
    (root / "cfgonly" / "__init__.py").write_text("VALUE = 42\n")
    (root / "setup.cfg").write_text(
        "[metadata]\nname = cfgonly\nversion = 2.0\n"
        "[options]\npackages = cfgonly\ninstall_requires =\n    beta\n"
    )
    (root / "sub").mkdir()
    code = (
        "import cfgonly, beta, importlib.metadata as m;print(m.version('cfgonly'), cfgonly.VALUE)"
    )
    proc = py(index, root / "sub", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2.0", "42"]
    lock = tomllib.loads((root / "pylock.toml").read_text())
    assert [p["name"] for p in lock["packages"]] == ["beta"]


def intree_project(tmp_path: Path, name: str = "intree", deps: str = "") -> Path:
    root = tmp_path / name
    (root / "src" / name).mkdir(parents=True)
    (root / "src" / name / "__init__.py").write_text(
        "WHERE = 'checkout'\ndef cli():\n    print(WHERE)\n"
    )
    add_intree_backend(root)
    (root / "VERSION").write_text("1.5\n")
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\ndynamic = ["version"]\ndependencies = [{deps}]\n'
        f'[project.scripts]\n{name}-cli = "{name}:cli"\n' + INTREE_BUILD_SYSTEM
    )
    return root


def test_in_tree_backend_builds_once_and_again_when_setup_py_changes(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = intree_project(tmp_path)
    (root / "setup.py").write_text("# read by nothing; a build input all the same\n")
    code = "import intree, importlib.metadata as m; print(m.version('intree'), intree.WHERE)"
    first = py(index, root, code)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["1.5", "checkout"]
    assert backend_calls(root) == ["prepare_metadata_for_build_wheel", "build_editable"]
    # Unchanged inputs: neither the memo's warm path nor a cold one builds.
    assert py(index, root, code).stdout.split() == ["1.5", "checkout"]
    assert py(index, root, code, "--offline").stdout.split() == ["1.5", "checkout"]
    assert len(backend_calls(root)) == 2
    # A changed setup.py (and the version it may compute) rebuilds next run.
    (root / "setup.py").write_text("# changed\n")
    (root / "VERSION").write_text("1.6\n")
    again = py(index, root, code)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["1.6", "checkout"]
    assert backend_calls(root)[2:] == ["prepare_metadata_for_build_wheel", "build_editable"]
    # A file listed in [tool.uv] cache-keys is a build input too.
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text + '[tool.uv]\ncache-keys = ["VERSION"]\n')
    assert py(index, root, code).returncode == 0
    calls = len(backend_calls(root))
    (root / "VERSION").write_text("1.7\n")
    assert py(index, root, code).stdout.split() == ["1.7", "checkout"]
    assert len(backend_calls(root)) == calls + 2


def test_backend_without_build_editable_installs_a_wheel_and_says_so(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = intree_project(tmp_path)
    add_intree_backend(root, editable=False)
    proc = py(index, root, "import intree; print(intree.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert "has no build_editable hook" in proc.stderr and "not editable" in proc.stderr
    assert "build_wheel" in backend_calls(root)
    assert not proc.stdout.strip().startswith(os.fspath(root))


def test_build_failure_is_one_line_naming_project_backend_and_log(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = intree_project(tmp_path)
    (root / "FAIL_BUILD").write_text("")
    proc = py(index, root, "pass")
    assert proc.returncode != 0
    first = proc.stderr.splitlines()[0]
    assert "building project intree with intree_backend failed" in first
    log = Path(first.rsplit("the backend's output is in ", 1)[1].split()[0])
    assert "failing as asked" in log.read_text()
    assert "Traceback" not in proc.stderr


def test_no_editable_puts_the_built_wheel_into_the_store(tmp_path: Path, index: LocalIndex) -> None:
    root = intree_project(tmp_path)
    proc = py(index, root, "import intree; print(intree.__file__)", "--no-editable")
    assert proc.returncode == 0, proc.stderr
    home = Path(os.environ["CPK_HOME"])
    assert Path(proc.stdout.strip()).resolve().is_relative_to((home / "store").resolve())
    assert "build_wheel" in backend_calls(root)
    listed = run_cpk("store", "ls", "intree", check=True).stdout
    assert "intree" in listed and "1.5" in listed


def test_the_project_satisfies_requirements_on_its_own_name(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = intree_project(tmp_path, "selfproj")
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(
        text.replace('dynamic = ["version"]\n', 'version = "0.3"\n')
        + '[dependency-groups]\ndev = ["checker"]\n'
    )
    code = "import checker, importlib.metadata as m; print(checker.SEEN, m.version('selfproj'))"
    proc = py(index, root, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["checkout", "0.3"]
    lock = tomllib.loads((root / "pylock.toml").read_text())
    locked = {p["name"]: p for p in lock["packages"]}
    assert "directory" in locked["selfproj"] and "wheels" not in locked["selfproj"]
    # Through --with too: the tool's own requirement must not shadow the checkout.
    static = text.replace('dynamic = ["version"]\n', 'version = "0.3"\n')
    (root / "pyproject.toml").write_text(static)
    with_tool = py(index, root, code, "--with", "checker")
    assert with_tool.returncode == 0, with_tool.stderr
    assert with_tool.stdout.split() == ["checkout", "0.3"]
    # A dynamic version: the backend's metadata stands for the checkout.
    (root / "pyproject.toml").write_text(text + '[dependency-groups]\ndev = ["checker"]\n')
    dynamic = py(index, root, code)
    assert dynamic.returncode == 0, dynamic.stderr
    assert dynamic.stdout.split() == ["checkout", "1.5"]


def test_a_command_outside_the_environment_is_named_or_refused(
    tmp_path: Path, index: LocalIndex
) -> None:
    root = intree_project(tmp_path)
    outside = shutil.which("sh")
    assert outside is not None
    for _ in range(2):  # the full path, then the memo's warm path
        proc = cpk(index, root, "sh", "-c", "echo ran")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ran"
        assert (
            f"cpk: warning: sh is not in the environment; running {outside} from PATH, "
            "outside it" in proc.stderr
        )
    strict = cpk(index, root, "--strict-command", "sh", "-c", "echo ran")
    assert strict.returncode != 0 and strict.stdout == ""
    assert "sh is not in the environment; refusing to run" in strict.stderr
    by_env = cpk(index, root, "sh", "-c", "echo ran", env={"CPK_STRICT_COMMAND": "1"})
    assert by_env.returncode != 0 and by_env.stdout == ""
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text + "[tool.cpk]\nstrict-command = true\n")
    for _ in range(2):
        by_setting = cpk(index, root, "sh", "-c", "echo ran")
        assert by_setting.returncode != 0 and by_setting.stdout == ""
    # The project's own script is in the environment: no warning.
    inside = cpk(index, root, "intree-cli")
    assert inside.returncode == 0, inside.stderr
    assert "not in the environment" not in inside.stderr
    assert inside.stdout.strip() == "checkout"


def test_overlay_dist_info_is_the_backends(tmp_path: Path, index: LocalIndex) -> None:
    root = intree_project(tmp_path)
    code = (
        "import importlib.metadata as m, json; d = m.distribution('intree');"
        "print(json.dumps([d.read_text('direct_url.json'), d.read_text('INSTALLER')]))"
    )
    proc = py(index, root, code)
    assert proc.returncode == 0, proc.stderr
    direct_url, installer = json.loads(proc.stdout)
    assert json.loads(direct_url) == {"url": root.as_uri(), "dir_info": {"editable": True}}
    assert installer.strip() == "cpk"


def test_versions_cpk_writes_are_normalised(tmp_path: Path, index: LocalIndex) -> None:
    make_wheel(index.root, "devpkg", "3.1.0.dev")
    root = tmp_path / "uses"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "uses"\nversion = "0"\ndependencies = ["devpkg"]\n'
    )
    proc = py(index, root, "import devpkg, importlib.metadata as m; print(m.version('devpkg'))")
    assert proc.returncode == 0, proc.stderr
    lock = tomllib.loads((root / "pylock.toml").read_text())
    assert [p["version"] for p in lock["packages"] if p["name"] == "devpkg"] == ["3.1.0.dev0"]
    listed = run_cpk("store", "ls", "devpkg", check=True).stdout
    assert "3.1.0.dev0" in listed and "3.1.0.dev " not in listed + " "


def test_a_pyproject_that_declares_nothing_is_an_error(tmp_path: Path, index: LocalIndex) -> None:
    root = tmp_path / "tools-only"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    proc = py(index, root, "pass")
    assert proc.returncode != 0
    assert "nothing says what this project needs" in proc.stderr
    assert not (root / ".venv").exists()


def test_backend_metadata_fills_the_dynamic_fields(tmp_path: Path) -> None:
    from contentpkg.python.build.project import complete_inputs, parse_metadata
    from contentpkg.python.project import load_project

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "dyn"\ndynamic = ["version", "dependencies", "optional-dependencies"]\n'
        '[dependency-groups]\ndev = ["gamma"]\n' + INTREE_BUILD_SYSTEM
    )
    inputs = load_project(tmp_path, extras=["Test"])
    assert inputs.dynamic and inputs.extras == ("test",)
    meta = parse_metadata(
        b"Metadata-Version: 2.1\nName: dyn\nVersion: 2.0.dev\n"
        b"Requires-Dist: alpha>=1\nProvides-Extra: test\nProvides-Extra: docs\n"
        b"Requires-Dist: pytest (>=7); extra == 'test'\n"
        b'Requires-Dist: tomli; python_version < "3.11" and extra == "test"\n'
        b'Requires-Dist: dyn[docs]; extra == "test"\n'
        b'Requires-Dist: sphinx; extra == "docs"\n\n',
        "dyn",
    )
    done = complete_inputs(inputs, meta)
    assert done.requirements == [
        "alpha>=1", "pytest (>=7)", 'tomli; python_version < "3.11"', "sphinx", "gamma",
    ]  # fmt: skip
    assert done.dynamic == () and done.name == "dyn" and done.version is None
    with pytest.raises(Exception, match="no extra named 'nope'"):
        complete_inputs(load_project(tmp_path, extras=["nope"]), meta)
