"""Views behave like a plain virtualenv (issue 4).

The yardstick is not our idea of a virtualenv but a real one: the same
wheels, served by one local index, are installed by pip into a plain
``python -m venv`` and by ``cpk run`` into a view, and one probe script is
run in each. The probe prints what it observes with machine paths
normalised away (module names, versions, file lists relative to
site-packages or to ``sys.prefix``), so the outputs can be compared item by
item.

cpk is probed twice: through a project that is itself a package (it gets a
per-project overlay on the shared view, see ``overlay.py``) and through a
``requirements.txt`` project (it runs in the view itself). Both lists are
declared in the same order, so both use the same view.

Everything expensive (building the wheels, compiling the C extension, the
pip venv, the cpk runs) happens once per module; each test compares one
behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.backends import INTREE_BUILD_SYSTEM, add_intree_backend
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel

# --- the distributions ------------------------------------------------------------

#: The extended-path ``__init__.py`` of pkgutil-style namespace packages, as
#: the Python Packaging User Guide gives it; every portion ships these bytes.
PKGUTIL_INIT = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"

#: The ``__init__.py`` of pkg_resources-style namespace packages.
PKG_RESOURCES_INIT = "__import__('pkg_resources').declare_namespace(__name__)\n"


def nspkg_pth_line(pkg: str) -> str:
    """One line of a ``*-nspkg.pth`` file, exactly as setuptools writes it.

    Copied from ``setuptools/namespaces.py`` (``Installer._nspkg_tmpl`` and
    ``_get_root``, unchanged from setuptools 31 to 69), which ``bdist_wheel``
    uses for ``namespace_packages=[...]``: such wheels ship this file and no
    ``<pkg>/__init__.py``. The line reads ``sitedir`` from the frame of
    ``site.addpackage``, so it only works when ``site`` processes the .pth
    from the directory the package is in.
    """
    tmpl = (
        "import sys, types, os",
        "has_mfs = sys.version_info > (3, 5)",
        "p = os.path.join(%(root)s, *%(pth)r)",
        "importlib = has_mfs and __import__('importlib.util')",
        "has_mfs and __import__('importlib.machinery')",
        (
            "m = has_mfs and "
            "sys.modules.setdefault(%(pkg)r, "
            "importlib.util.module_from_spec("
            "importlib.machinery.PathFinder.find_spec(%(pkg)r, "
            "[os.path.dirname(p)])))"
        ),
        ("m = m or sys.modules.setdefault(%(pkg)r, types.ModuleType(%(pkg)r))"),
        "mp = (m or []) and m.__dict__.setdefault('__path__',[])",
        "(p not in mp) and mp.append(p)",
    )
    values = {
        "root": "sys._getframe(1).f_locals['sitedir']",
        "pth": tuple(pkg.split(".")),
        "pkg": pkg,
    }
    return ";".join(tmpl) % values + "\n"


def with_executable_scripts(wheel: Path) -> Path:
    """Give the wheel's ``.data/scripts/`` members mode 0755 (and the
    regular-file type bits), as bdist_wheel does: pip keeps a script's mode
    from the archive, and only when the type says "regular file"."""
    import stat
    import zipfile

    members = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if "/scripts/" in info.filename and ".data/" in info.filename:
                info.external_attr = (stat.S_IFREG | 0o755) << 16
            members.append((info, zf.read(info)))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, content in members:
            zf.writestr(info, content)
    return wheel


def _portion(dist: str, package: str, sub: str, init: str | None, **extra: Any) -> Path:
    files: dict[str, str] = {f"{package}/{sub}/__init__.py": f"NAME = {dist!r}\n"}
    if init is not None:
        files[f"{package}/__init__.py"] = init
    return make_wheel(extra.pop("dest"), dist, "1.0", files=files, **extra)


CEXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int vend_value(void);
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(vend_value()); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__cext(void) { return PyModule_Create(&module); }
"""

#: auditwheel names vendored libraries with a hash and puts them in
#: ``<pkg>.libs/`` beside the package, as numpy's wheels do.
VENDORED = "libvend-0a1b2c3d.so"


def build_cext_wheel(dest: Path, work: Path) -> str | None:
    """A platform wheel whose extension finds a vendored library via $ORIGIN.

    Returns why it cannot be built here (no compiler, no Python headers), or
    None once the wheel is in dest.
    """
    from packaging.tags import sys_tags

    cc = shutil.which("cc")
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if cc is None:
        return "no C compiler (cc) on PATH"
    if not (Path(include) / "Python.h").is_file() or not suffix:
        return f"no Python headers in {include}"
    work.mkdir(parents=True)
    (work / "vend.c").write_text("int vend_value(void) { return 42; }\n")
    (work / "cext.c").write_text(CEXT_C)
    lib = work / VENDORED
    ext = work / f"_cext{suffix}"
    steps = [
        [cc, "-shared", "-fPIC", "-o", lib, f"-Wl,-soname,{VENDORED}", work / "vend.c"],
        [
            cc, "-shared", "-fPIC", f"-I{include}", "-o", ext, work / "cext.c",
            f"-L{work}", f"-l:{VENDORED}",
            # RUNPATH (not RPATH), relative to the extension's directory.
            "-Wl,-rpath,$ORIGIN/../cext.libs", "-Wl,--enable-new-dtags",
        ],
    ]  # fmt: skip
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"cannot compile the C extension: {proc.stderr.strip()[:200]}"
    tag = str(next(iter(sys_tags())))
    make_wheel(
        dest,
        "cext",
        "1.0",
        tag=tag,
        files={
            "cext/__init__.py": "from cext._cext import answer\n",
            f"cext/_cext{suffix}": ext.read_bytes(),
            f"cext.libs/{VENDORED}": lib.read_bytes(),
        },
    )
    return None


def setuptools_wheel() -> Path | None:
    """The setuptools wheel this interpreter's ``python -m venv`` seeds.

    ``pkg_resources`` and the pkg_resources-style namespaces need setuptools
    in the environment, and the tests may not reach PyPI. ``ensurepip``
    knows the very wheel ``venv`` installs (3.11 and older), so both sides
    get the same bytes: CPython's own build bundles it in
    ``ensurepip/_bundled``, Debian's takes it from ``WHEEL_PKG_DIR``
    (``/usr/share/python-wheels``) and ships no ``_bundled`` at all, so ask
    ``ensurepip`` rather than look in one place.
    """
    import ensurepip

    get_packages = getattr(ensurepip, "_get_packages", None)  # private, as in 3.11
    if get_packages is not None:
        package = get_packages().get("setuptools")
        if package is not None:
            if package.wheel_path:
                return Path(package.wheel_path)
            return Path(ensurepip.__file__).parent / "_bundled" / package.wheel_name
        return None
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    found = sorted(bundled.glob("setuptools-*.whl"))
    return found[-1] if found else None


def build_dists(dest: Path, work: Path) -> tuple[list[str], dict[str, str]]:
    """Every wheel the parity tests install; returns (requirements, skips)."""
    skips: dict[str, str] = {}
    # PEP 420: three portions of one namespace, none with nsx/__init__.py.
    for sub in "abc":
        _portion(f"nsx-{sub}", "nsx", sub, None, dest=dest)
    # pkgutil-style: the same __init__.py bytes in every portion.
    for sub in ("one", "two"):
        _portion(f"nsp-{sub}", "nsp", sub, PKGUTIL_INIT, dest=dest)
    # pkg_resources-style, as bdist_wheel packs namespace_packages=["nsy"]:
    # no nsy/__init__.py, one -nspkg.pth per distribution.
    for sub in ("one", "two"):
        make_wheel(
            dest,
            f"nsy-{sub}",
            "1.0",
            files={
                f"nsy/{sub}/__init__.py": f"NAME = 'nsy-{sub}'\n",
                f"nsy_{sub}-1.0-py3.11-nspkg.pth": nspkg_pth_line("nsy"),
            },
        )
    # pkg_resources.declare_namespace in the __init__.py of every portion.
    for sub in ("one", "two"):
        _portion(f"nsr-{sub}", "nsr", sub, PKG_RESOURCES_INIT, dest=dest,
                 requires_dist=["setuptools"])  # fmt: skip
    # .pth files: one adds a directory (relative to site-packages), one runs an import.
    make_wheel(
        dest,
        "pthpath",
        "1.0",
        files={"pthpath.pth": "pthpath_extra\n", "pthpath_extra/pthmod.py": "WHERE = 'pth'\n"},
    )
    make_wheel(
        dest,
        "pthhook",
        "1.0",
        files={
            "pthhook.pth": "import pthhook_mod\n",
            "pthhook_mod.py": "import sys\nsys.cpk_parity_pth_hook = __name__\n",
        },
    )
    # A single-file top-level module, as six is.
    make_wheel(dest, "sixish", "1.0", files={"sixish.py": "VERSION = '1.0'\n"})
    metapkg = make_wheel(
        dest,
        "metapkg",
        "1.0",
        files={
            "metapkg/__init__.py": "__version__ = '1.0'\n",
            "metapkg/__main__.py": (
                "import sys\nprint('metapkg main', sys.argv[1:], sys.prefix != sys.base_prefix)\n"
            ),
            "metapkg/cli.py": (
                "import sys\n"
                "def main():\n    print('meta-tool', sys.argv[1:])\n    return 3\n"
                "def gui():\n    print('meta-gui ran')\n"
            ),
            "metapkg/plugins.py": "def one():\n    return 1\ndef two():\n    return 2\n",
            "metapkg/sub/__init__.py": "",
            "metapkg/data/hello.txt": "hello from metapkg\n",
        },
        data={
            "scripts/meta-script": (
                "#!python\nimport metapkg\nprint('meta-script', metapkg.__version__)\n"
            ),
            "data/share/metapkg/readme.txt": "metapkg data file\n",
            "headers/metapkg.h": "#define METAPKG 1\n",
        },
        entry_points={
            "console_scripts": {"meta-tool": "metapkg.cli:main"},
            "gui_scripts": {"meta-gui": "metapkg.cli:gui"},
            "cpk.parity.plugins": {"one": "metapkg.plugins:one", "two": "metapkg.plugins:two"},
        },
    )
    with_executable_scripts(metapkg)
    # Two distributions installing one path: clash/shared.py differs (a
    # conflict), clash/__init__.py is the same bytes (no conflict).
    for who in ("first", "second"):
        make_wheel(
            dest,
            f"clash-{who}",
            "1.0",
            files={"clash/__init__.py": PKGUTIL_INIT, "clash/shared.py": f"WHO = {who!r}\n"},
        )
    requirements = [
        "metapkg",
        "nsx-a",
        "nsx-b",
        "nsx-c",
        "nsp-one",
        "nsp-two",
        "nsy-one",
        "nsy-two",
        "pthpath",
        "pthhook",
        "sixish",
    ]
    wheel = setuptools_wheel()
    if wheel is None:
        skips["setuptools"] = (
            f"ensurepip of Python {sys.version_info[0]}.{sys.version_info[1]} provides no "
            "setuptools wheel (none is seeded into venvs from 3.12 on)"
        )
    else:
        shutil.copy(wheel, dest / wheel.name)
        requirements += ["nsr-one", "nsr-two", "setuptools"]
    why = build_cext_wheel(dest, work / "cext")
    if why is None:
        requirements.append("cext")
    else:
        skips["cext"] = why
    return requirements, skips


# --- the probe --------------------------------------------------------------------

PROBE = textwrap.dedent(
    r'''
    """Print what this environment looks like, without machine paths."""
    import importlib, importlib.metadata as md, importlib.resources as res, importlib.util
    import json, os, pkgutil, re, shutil, site, subprocess, sys, sysconfig, warnings

    OURS = set(json.loads(os.environ["PARITY_OURS"]))

    def norm(path):
        """A path inside some site-packages as SITE/..., else relative to sys.prefix."""
        if path is None:
            return None
        path = os.fspath(path)
        marker = os.sep + "site-packages"
        if marker in path:
            return "SITE" + path[path.rindex(marker) + len(marker):]
        if path == sys.prefix or path.startswith(sys.prefix + os.sep):
            return "PREFIX" + path[len(sys.prefix):]
        return "OTHER"

    def canon(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    def guard(key, fn):
        try:
            out[key] = fn()
        except Exception as exc:  # the comparison shows which side failed
            out[key] = f"error: {type(exc).__name__}: {exc}"

    out = {}

    def pep420():
        import nsx.a, nsx.b, nsx.c
        return {
            "names": [nsx.a.NAME, nsx.b.NAME, nsx.c.NAME],
            "file": getattr(nsx, "__file__", None),
            "path": [norm(p) for p in nsx.__path__],
            "path_type": type(nsx.__path__).__name__,
            "submodules": sorted(m.name for m in pkgutil.iter_modules(nsx.__path__)),
            "resources": sorted(p.name for p in res.files("nsx").iterdir()),
        }

    def pkgutil_style():
        import nsp.one, nsp.two
        return {
            "names": [nsp.one.NAME, nsp.two.NAME],
            "file": norm(nsp.__file__),
            "path": [norm(p) for p in nsp.__path__],
        }

    def nspkg_pth():
        made_at_startup = "nsy" in sys.modules  # the -nspkg.pth lines ran in site
        import nsy.one, nsy.two
        return {
            "at_startup": made_at_startup,
            "names": [nsy.one.NAME, nsy.two.NAME],
            "path": [norm(p) for p in nsy.__path__],
            "path_type": type(nsy.__path__).__name__,
        }

    def declare_namespace():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nsr.one, nsr.two
        return {"names": [nsr.one.NAME, nsr.two.NAME], "path": [norm(p) for p in nsr.__path__]}

    def pth_files():
        import pthmod
        extra = [norm(p) for p in sys.path if p.endswith("pthpath_extra")]
        return {
            "module": norm(pthmod.__file__),
            "sys_path": extra,
            "hook": getattr(sys, "cpk_parity_pth_hook", None),
        }

    def metadata():
        dists = {}
        for d in md.distributions():
            dists.setdefault(canon(d.metadata["Name"]), []).append(d.version)
        files, missing = {}, {}
        for name in sorted(OURS):
            listed = md.files(name) or []
            # Installer bookkeeping and bytecode are not the wheel's content.
            files[name] = sorted(
                str(f) for f in listed
                if "__pycache__" not in f.parts
                and f.name not in ("INSTALLER", "REQUESTED", "direct_url.json")
            )
            missing[name] = sorted(str(f) for f in listed if not f.locate().exists())
        eps = md.entry_points(group="cpk.parity.plugins")
        scripts = sorted(
            (ep.group, ep.name, ep.value, canon(ep.dist.name))
            for group in ("console_scripts", "gui_scripts")
            for ep in md.entry_points(group=group)
            if canon(ep.dist.name) in OURS
        )
        return {
            "distributions": {k: sorted(v) for k, v in dists.items()},
            "versions": {n: md.version(n) for n in sorted(OURS)},
            "plugins": sorted((ep.name, ep.value, ep.load()()) for ep in eps),
            "scripts": scripts,
            "files": files,
            "missing": missing,
            "packages_distributions": {
                k: sorted(canon(v) for v in vs) for k, vs in md.packages_distributions().items()
            },
            "locate_data": md.distribution("metapkg")
            .locate_file("metapkg/data/hello.txt").read_text(),
        }

    def resources():
        root = res.files("metapkg")
        return {
            "text": root.joinpath("data/hello.txt").read_text(),
            "children": sorted(p.name for p in root.iterdir() if p.name != "__pycache__"),
            "is_file": root.joinpath("data", "hello.txt").is_file(),
        }

    def iter_modules():
        import metapkg
        top = sorted(
            (m.name, m.ispkg) for m in pkgutil.iter_modules()
            if norm(getattr(m.module_finder, "path", None) or "").startswith("SITE")
        )
        inner = sorted((m.name, m.ispkg) for m in pkgutil.iter_modules(metapkg.__path__))
        walked = sorted(m.name for m in pkgutil.walk_packages(metapkg.__path__, "metapkg."))
        return {"top": top, "inner": inner, "walked": walked}

    def pkg_resources_():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pkg_resources
        ws = pkg_resources.working_set
        return {
            "working_set": sorted((canon(d.project_name), d.version) for d in ws),
            "locations": sorted(
                (canon(d.project_name), norm(d.location)) for d in ws
                if canon(d.project_name) in OURS
            ),
            "plugins": sorted(
                ep.name for ep in pkg_resources.iter_entry_points("cpk.parity.plugins")
            ),
            "resource": pkg_resources.resource_string("metapkg", "data/hello.txt").decode(),
            "require": sorted(canon(d.project_name) for d in pkg_resources.require("nsr-one")),
        }

    def scripts():
        found = {}
        for name in ("meta-tool", "meta-gui", "meta-script"):
            path = shutil.which(name)
            if path is None:
                found[name] = None
                continue
            with open(path, "rb") as f:
                shebang = f.readline().decode().strip()
            proc = subprocess.run([path, "x"], capture_output=True, text=True)
            found[name] = {
                "where": norm(path),
                "shebang": "#!" + str(norm(shebang[2:])),
                "out": proc.stdout,
                "status": proc.returncode,
            }
        dash_m = subprocess.run(
            [sys.executable, "-m", "metapkg", "arg"], capture_output=True, text=True
        )
        found["-m"] = {"out": dash_m.stdout, "status": dash_m.returncode}
        return found

    def cext():
        import cext, cext._cext
        return {"answer": cext.answer(), "file": norm(cext._cext.__file__)}

    def isolation():
        sites = []
        for sp in site.getsitepackages():
            inside = sp.startswith(sys.prefix + os.sep)
            held = ("metapkg", "sixish.py", "nsx")
            sites.append({
                "rel": os.path.relpath(sp, sys.prefix) if inside else None,
                "ours": sorted(n for n in held if os.path.exists(os.path.join(sp, n))),
            })
        return {
            "in_venv": sys.prefix != sys.base_prefix,
            "enable_user_site": site.ENABLE_USER_SITE,
            "user_site_on_path": site.getusersitepackages() in sys.path,
            "no_user_site_flag": sys.flags.no_user_site,
            "pytest_importable": importlib.util.find_spec("pytest") is not None,
            "getsitepackages": sites,
            "purelib": os.path.relpath(sysconfig.get_paths()["purelib"], sys.prefix),
            "executable": norm(sys.executable),
            "site_dirs_on_path": sum(p.endswith("site-packages") for p in sys.path),
        }

    def data_scheme():
        return {
            "share": os.path.isfile(os.path.join(sys.prefix, "share", "metapkg", "readme.txt")),
            "header": os.path.isfile(os.path.join(
                sys.prefix, "include", "site", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                "metapkg", "metapkg.h",
            )),
        }

    def bytecode():
        import sixish, metapkg
        found = {}
        for mod in (sixish, metapkg):
            cached = mod.__cached__
            found[mod.__name__] = {
                "cached": norm(cached),
                "exists": os.path.isfile(cached),
                "real": os.path.realpath(cached),
            }
        return found

    guard("pep420", pep420)
    guard("pkgutil", pkgutil_style)
    guard("nspkg_pth", nspkg_pth)
    guard("pth", pth_files)
    guard("metadata", metadata)
    guard("resources", resources)
    guard("iter_modules", iter_modules)
    guard("scripts", scripts)
    guard("isolation", isolation)
    guard("data_scheme", data_scheme)
    guard("bytecode", bytecode)
    if "setuptools" in OURS:
        guard("declare_namespace", declare_namespace)
        guard("pkg_resources", pkg_resources_)
    if "cext" in OURS:
        guard("cext", cext)
    print(json.dumps(out, sort_keys=True))
    '''
)


# --- the environments -------------------------------------------------------------


@dataclass
class Parity:
    """Everything the tests compare, built once per module."""

    requirements: list[str]
    skips: dict[str, str]
    index: LocalIndex
    venv: Path
    cpk_env: dict[str, str]
    venv_env: dict[str, str]
    project: Path  # pyproject, installable: runs in an overlay on the view
    plain: Path  # requirements.txt: runs in the view itself
    first_run: subprocess.CompletedProcess[str]
    seeded: list[str] = field(default_factory=list)  # what ``python -m venv`` installed
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def only_venv(self) -> set[str]:
        """Distributions only the venv has by construction: what ``venv``
        seeded and the requirements do not name (pip; setuptools too where
        this interpreter's seeded wheel could not be found to serve)."""
        return set(self.seeded) - set(self.requirements)

    def venv_only_modules(self) -> set[str]:
        """Top-level names that belong only to :attr:`only_venv` distributions."""
        owners = self.probes["venv"]["metadata"]["packages_distributions"]
        return {mod for mod, dists in owners.items() if set(dists) <= self.only_venv}

    def cpk(self, root: Path, *command: str) -> subprocess.CompletedProcess[str]:
        return run_cpk("run", "--index-url", self.index.url, *command, cwd=root, env=self.cpk_env)

    def in_venv(self, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=cwd, env=self.venv_env, capture_output=True, text=True, timeout=120
        )


def _clean_environ() -> dict[str, str]:
    """This process's environment, minus what would bend pip or the venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # no find-links or index from the machine's config
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


#: Lists the distributions a fresh venv holds, by canonical name.
SEEDED_PROBE = (
    "import importlib.metadata as md, json, re\n"
    "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()"
    " for d in md.distributions()})))\n"
)


def _pip_venv(where: Path, dists: Path, requirements: list[str]) -> tuple[Path, list[str]]:
    """A plain venv of this interpreter with the requirements installed by pip.

    Also returns what ``python -m venv`` put there before pip ran: the
    baseline differs between interpreters (pip alone from 3.12; pip and
    setuptools before, Debian's own setuptools on Debian's Python), and
    the comparison must start from what a venv of *this* one holds.
    """
    base = _clean_environ()
    subprocess.run([sys.executable, "-m", "venv", where], check=True, env=base, timeout=120)
    python = where / "bin" / "python"
    seeded = subprocess.run(
        [python, "-c", SEEDED_PROBE], capture_output=True, text=True, env=base, timeout=60,
        check=True,
    )  # fmt: skip
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--find-links", dists, *requirements],
        capture_output=True, text=True, env=base, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return where, json.loads(seeded.stdout)


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    root = tmp_path_factory.mktemp("parity")
    dists = root / "dists"
    requirements, skips = build_dists(dists, root / "work")
    ours = sorted({*requirements, *(["cext"] if "cext" not in skips else [])})
    venv, seeded = _pip_venv(root / "venv", dists, requirements)

    cpk_env = {
        "CPK_HOME": str(root / "cpk-home"),
        "CPK_CACHE_DIR": str(root / "cpk-cache"),
        "PARITY_OURS": json.dumps(ours),
    }
    venv_env = _clean_environ()
    venv_env.update(
        PARITY_OURS=json.dumps(ours),
        VIRTUAL_ENV=str(venv),
        PATH=os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", os.defpath)]),
    )
    project = root / "proj"
    (project / "src" / "proj").mkdir(parents=True)
    (project / "src" / "proj" / "__init__.py").write_text("")
    listed = "".join(f'  "{r}",\n' for r in requirements)
    # A [build-system] makes the project a package: it runs in an overlay,
    # built by its own backend (carried in the tree).
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\ndependencies = [\n{listed}]\n'
        + INTREE_BUILD_SYSTEM
    )
    add_intree_backend(project)
    plain = root / "plain"
    plain.mkdir()
    (plain / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    probe_dir = root / "probe"
    probe_dir.mkdir()
    for where in (project, plain, probe_dir):
        (where / "probe.py").write_text(PROBE)

    with LocalIndex(dists) as index:
        state = Parity(
            requirements, skips, index, venv, cpk_env, venv_env, project, plain,
            first_run=run_cpk(
                "run", "--index-url", index.url, "python", "-c", "pass",
                cwd=project, env=cpk_env,
            ),
            seeded=seeded,
        )  # fmt: skip
        assert state.first_run.returncode == 0, state.first_run.stderr
        for name, proc in (
            ("venv", state.in_venv(str(venv / "bin" / "python"), "probe.py", cwd=probe_dir)),
            ("overlay", state.cpk(project, "python", "probe.py")),
            ("view", state.cpk(plain, "python", "probe.py")),
        ):
            assert proc.returncode == 0, f"{name}: {proc.stderr}"
            state.probes[name] = json.loads(proc.stdout)
        yield state


CPK_KINDS = ["overlay", "view"]


def compare(parity: Parity, kind: str, key: str) -> tuple[Any, Any]:
    venv, ours = parity.probes["venv"][key], parity.probes[kind][key]
    for side, value in (("venv", venv), (kind, ours)):
        assert not (isinstance(value, str) and value.startswith("error:")), f"{side}: {value}"
    return venv, ours


def _without(mapping: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in names}


#: What only the overlay has by construction: the editable project (what
#: only the venv has depends on the interpreter: ``Parity.only_venv``).
ONLY_OVERLAY = ("proj",)


# --- namespaces and .pth files ----------------------------------------------------


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pep420_namespace_split_over_three_distributions(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "pep420")
    assert venv["names"] == ["nsx-a", "nsx-b", "nsx-c"]
    # One portion in both: the venv's one directory, the view's one merged
    # real directory (never one sys.path-like entry per distribution).
    assert venv["path"] == ours["path"] == ["SITE/nsx"]
    assert ours == venv


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pkgutil_style_namespace(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "pkgutil")
    assert venv["names"] == ["nsp-one", "nsp-two"] and venv["path"] == ["SITE/nsp"]
    assert ours == venv


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_setuptools_nspkg_pth_namespace(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "nspkg_pth")
    assert venv["at_startup"] is True and venv["path"] == ["SITE/nsy"]
    assert ours == venv


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pkg_resources_declare_namespace(parity: Parity, kind: str) -> None:
    if "setuptools" in parity.skips:
        pytest.skip(parity.skips["setuptools"])
    venv, ours = compare(parity, kind, "declare_namespace")
    assert venv["names"] == ["nsr-one", "nsr-two"]
    assert ours == venv


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pth_files_add_paths_and_run_imports(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "pth")
    assert venv == {
        "module": "SITE/pthpath_extra/pthmod.py",
        "sys_path": ["SITE/pthpath_extra"],
        "hook": "pthhook_mod",
    }
    assert ours == venv


# --- metadata, resources, module iteration ----------------------------------------


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_importlib_metadata(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "metadata")
    only = ONLY_OVERLAY if kind == "overlay" else ()
    only_venv = parity.only_venv
    assert "pip" in only_venv
    assert _without(ours["distributions"], *only) == _without(venv["distributions"], *only_venv)
    assert ours["versions"] == venv["versions"]
    assert venv["plugins"] == [["one", "metapkg.plugins:one", 1], ["two", "metapkg.plugins:two", 2]]
    assert ours["plugins"] == venv["plugins"]
    assert ours["scripts"] == venv["scripts"]
    assert ours["locate_data"] == venv["locate_data"] == "hello from metapkg\n"
    # Every file a distribution lists is where locate_file says.
    assert venv["missing"] == {n: [] for n in venv["missing"]}
    assert ours["missing"] == venv["missing"]
    assert ours["files"] == venv["files"]
    pip_only = parity.venv_only_modules()
    assert ours["packages_distributions"] == _without(venv["packages_distributions"], *pip_only)


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_importlib_resources(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "resources")
    assert venv["text"] == "hello from metapkg\n"
    assert ours == venv


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pkgutil_iter_modules(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "iter_modules")
    top = [m for m in venv["top"] if m[0] not in parity.venv_only_modules()]
    assert ["metapkg", True] in top and ["sixish", False] in top
    # The view's own import finder is a top-level module of its site-packages,
    # as setuptools' _distutils_hack is of the venv's (left out just above).
    assert ["_cpk_finder", False] in ours["top"]
    assert [m for m in ours["top"] if m[0] != "_cpk_finder"] == top
    assert ours["inner"] == venv["inner"]
    assert ours["walked"] == venv["walked"]


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_pkg_resources_working_set(parity: Parity, kind: str) -> None:
    if "setuptools" in parity.skips:
        pytest.skip(parity.skips["setuptools"])
    venv, ours = compare(parity, kind, "pkg_resources")
    only = ONLY_OVERLAY if kind == "overlay" else ()
    drop_venv = [d for d in venv["working_set"] if d[0] not in parity.only_venv]
    assert [d for d in ours["working_set"] if d[0] not in only] == drop_venv
    assert ours["locations"] == venv["locations"]
    assert ours["plugins"] == venv["plugins"] == ["one", "two"]
    assert ours["resource"] == venv["resource"]
    assert ours["require"] == venv["require"] == ["nsr-one", "setuptools"]


# --- programs ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_console_gui_and_data_scripts_and_dash_m(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "scripts")
    assert venv["meta-tool"] == {
        "where": "PREFIX/bin/meta-tool",
        "shebang": "#!PREFIX/bin/python",
        "out": "meta-tool ['x']\n",
        "status": 3,
    }
    assert venv["-m"] == {"out": "metapkg main ['arg'] True\n", "status": 0}
    assert ours == venv


def test_cpk_run_execs_console_scripts_and_dash_m(parity: Parity) -> None:
    """The same programs named as cpk run's command, not found by the probe."""
    for root in (parity.project, parity.plain):
        tool = parity.cpk(root, "meta-tool", "y")
        assert (tool.stdout, tool.returncode) == ("meta-tool ['y']\n", 3)
        dash_m = parity.cpk(root, "python", "-m", "metapkg", "z")
        assert dash_m.stdout == "metapkg main ['z'] True\n", dash_m.stderr
    venv_tool = parity.in_venv("meta-tool", "y", cwd=parity.venv)
    assert (venv_tool.stdout, venv_tool.returncode) == ("meta-tool ['y']\n", 3)


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_c_extension_with_vendored_library(parity: Parity, kind: str) -> None:
    if "cext" in parity.skips:
        pytest.skip(parity.skips["cext"])
    venv, ours = compare(parity, kind, "cext")
    assert venv["answer"] == 42
    assert ours == venv


# --- the environment itself -------------------------------------------------------


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_isolation_and_site_packages(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "isolation")
    site_dir = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    assert venv["in_venv"] is True
    assert venv["enable_user_site"] is False and venv["user_site_on_path"] is False
    assert venv["pytest_importable"] is False
    held = ["metapkg", "nsx", "sixish.py"]
    # The venv's own site-packages holds the packages. Whatever else this
    # interpreter lists is the interpreter's business and holds none of them
    # (Debian's Python adds local/lib/pythonX.Y/dist-packages,
    # lib/python3/dist-packages and lib/pythonX.Y/dist-packages, none of which
    # a venv creates); a view must list the same.
    first, *extra = venv["getsitepackages"]
    assert first == {"rel": site_dir, "ours": held}
    assert [s["ours"] for s in extra] == [[] for _ in extra]
    for key in ("in_venv", "enable_user_site", "user_site_on_path", "no_user_site_flag",
                "pytest_importable", "purelib", "executable"):  # fmt: skip
        assert ours[key] == venv[key], key
    if kind == "view":
        # Not installable: the project runs in the view itself, exactly one
        # site-packages, holding every package.
        assert ours["getsitepackages"] == venv["getsitepackages"]
        assert ours["site_dirs_on_path"] == venv["site_dirs_on_path"] == 1
    else:
        # The overlay's own site-packages (the editable project) comes
        # first; the shared view's, which holds the packages, is listed too.
        assert ours["getsitepackages"][0] == {"rel": site_dir, "ours": []}
        assert [s["ours"] for s in ours["getsitepackages"][1:] if s["ours"]] == [held]
        assert [s for s in ours["getsitepackages"] if s["rel"] != site_dir and s["rel"]] == extra
        assert ours["site_dirs_on_path"] == 2


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_data_and_headers_under_the_prefix(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "data_scheme")
    assert venv == {"share": True, "header": True}
    assert ours == venv


# --- conflicts and bytecode (cpk's own documented behaviour) ------------------------


def test_same_bytes_from_two_distributions_is_no_conflict(parity: Parity) -> None:
    """nsp/__init__.py and nsr/__init__.py ship in two dists each, same bytes."""
    assert "warning" not in parity.first_run.stderr, parity.first_run.stderr


def _clash_project(parity: Parity, name: str, *deps: str) -> Path:
    root = parity.project.parent / name
    root.mkdir()
    listed = "".join(f'"{d}", ' for d in deps)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1"\ndependencies = [{listed}]\n'
    )
    return root


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_conflicting_file_is_reported_once_and_first_declared_wins(
    parity: Parity, order: tuple[str, str]
) -> None:
    winner, loser = order
    root = _clash_project(parity, f"clash-{winner}-wins", *(f"clash-{o}" for o in order))
    probe = "import clash.shared; print(clash.shared.WHO)"
    proc = parity.cpk(root, "python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == winner
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr  # clash/__init__.py: same bytes, not reported
    assert "clash/shared.py" in warnings[0]
    assert f"clash-{winner}" in warnings[0] or f"clash_{winner}" in warnings[0]
    assert f"clash-{loser}" in warnings[0] or f"clash_{loser}" in warnings[0]
    assert warnings[0].index(winner) < warnings[0].index(loser)
    again = parity.cpk(root, "python", "-c", probe)
    assert again.stdout.strip() == winner
    assert "warning" not in again.stderr  # reported once, when the view was built


@pytest.mark.parametrize("kind", CPK_KINDS)
def test_imports_use_the_entries_bytecode(parity: Parity, kind: str) -> None:
    venv, ours = compare(parity, kind, "bytecode")
    store = os.path.realpath(Path(parity.cpk_env["CPK_HOME"]))
    for module in ("sixish", "metapkg"):
        assert venv[module]["exists"] is True
        assert ours[module]["cached"] == venv[module]["cached"]
        assert ours[module]["exists"] is True, module
        # The .pyc is the entry's own, reached through the view's links.
        assert ours[module]["real"].startswith(store + os.sep), ours[module]["real"]


def test_bytecode_is_loaded_not_compiled(parity: Parity) -> None:
    """``python -v`` says "code object from <pyc>" only when the pyc was used;
    the entries' are unchecked-hash (PEP 552), so no source stat decides."""
    for root in (parity.project, parity.plain):
        proc = parity.cpk(root, "python", "-v", "-c", "import sixish, metapkg, nsp.one")
        assert proc.returncode == 0, proc.stderr
        for pyc in (
            f"__pycache__/sixish.{sys.implementation.cache_tag}.pyc",
            f"metapkg/__pycache__/__init__.{sys.implementation.cache_tag}.pyc",
            f"nsp/__pycache__/__init__.{sys.implementation.cache_tag}.pyc",
            f"nsp/one/__pycache__/__init__.{sys.implementation.cache_tag}.pyc",
        ):
            used = [
                line for line in proc.stderr.splitlines()
                if line.startswith("# code object from") and line.rstrip("'").endswith(pyc)
            ]  # fmt: skip
            assert used, f"{pyc} not loaded:\n{proc.stderr[-3000:]}"
            path = used[0].split("'")[1]
            flags = int.from_bytes(Path(path).read_bytes()[4:8], "little")
            assert flags == 0b01, f"{pyc}: not an unchecked-hash pyc (flags {flags})"


def test_bytecode_is_taken_from_the_source_that_won(tmp_path: Path) -> None:
    """In a merged directory each ``.pyc`` comes from its source's provider.

    Entries hold unchecked-hash bytecode, never compared with the source, so
    a ``.pyc`` from the losing distribution would run the loser's code
    under the winner's file name. Here the winner has no bytecode for the
    conflicting module (as an entry in a read-only layer may not): none is
    linked, and the import compiles the winner's source in memory.
    """
    from contentpkg.python.envs.views import link_merged

    tag = sys.implementation.cache_tag
    for who in ("first", "second"):
        pkg = tmp_path / who / "pkg"
        (pkg / "__pycache__").mkdir(parents=True)
        (pkg / "__init__.py").write_text(PKGUTIL_INIT)
        (pkg / "mod.py").write_text(f"WHO = {who!r}\n")
        (pkg / "__pycache__" / f"__init__.{tag}.pyc").write_bytes(who.encode())
        if who == "second":
            (pkg / "__pycache__" / f"mod.{tag}.pyc").write_bytes(b"second")
    dest = tmp_path / "site"
    dest.mkdir()
    conflicts: list = []
    providers = [(who, tmp_path / who) for who in ("first", "second")]
    link_merged(dest, providers, conflicts, "")
    cache = dest / "pkg" / "__pycache__"
    assert sorted(os.listdir(cache)) == [f"__init__.{tag}.pyc"]
    assert (cache / f"__init__.{tag}.pyc").read_bytes() == b"first"
    assert (dest / "pkg" / "mod.py").read_text() == "WHO = 'first'\n"
    # Bytecode is derived: only the source is a conflict.
    assert [(c.path, c.winner, c.loser) for c in conflicts] == [("pkg/mod.py", "first", "second")]


def test_a_view_made_again_from_its_plan_is_the_view_that_was_built(parity: Parity) -> None:
    """The plain project's view (namespaces merged, ``.data``, headers,
    scripts, a C extension), deleted and made again by ``cpk run`` from its
    plan in the pool: the same tree, the same inodes, the same answers."""
    from contentpkg.fs import remove_tree
    from contentpkg.python.envs.replay import LINKS, PLAN_PREFIX

    def tree(root: Path) -> list[tuple]:
        out = []
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                kind = "dir" if os.path.isdir(path) and not os.path.islink(path) else st.st_ino
                out.append((os.path.relpath(path, root), st.st_mode, kind))
        return sorted(out)

    view = Path(os.readlink(parity.plain / ".venv"))
    plan = Path(parity.cpk_env["CPK_HOME"]) / LINKS / f"{PLAN_PREFIX}{view.name}"
    before, planned = tree(view), plan.stat()
    remove_tree(view)
    (parity.plain / ".venv").unlink()
    proc = parity.cpk(parity.plain, "python", "probe.py")
    assert proc.returncode == 0, proc.stderr
    assert "Composed environment in" in proc.stderr
    assert tree(view) == before
    assert (plan.stat().st_ino, plan.stat().st_mtime_ns) == (planned.st_ino, planned.st_mtime_ns)
    assert json.loads(proc.stdout) == parity.probes["view"]
