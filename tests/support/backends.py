"""Build backends for tests of the project built by its own backend.

* :data:`INTREE_BACKEND`: a small PEP 517/660 backend a project carries in
  its tree (``backend-path``), that reads ``[project]`` (a ``VERSION`` file
  when the version is dynamic), builds editable and regular wheels, and
  appends one line per hook call to ``backend-calls.log`` in the project, so
  a test can count builds.
* :func:`wheel_of_installed`: a wheel made from a distribution installed in
  the interpreter running the tests (setuptools, wheel), so a loopback index
  can serve real build backends without the network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

INTREE_BACKEND = r'''
"""An in-tree PEP 517/660 backend for tests."""
import base64, hashlib, os, tomllib, zipfile

HERE = os.getcwd()


def _log(hook):
    with open(os.path.join(HERE, "backend-calls.log"), "a") as f:
        f.write(hook + "\n")
    if os.path.exists(os.path.join(HERE, "FAIL_BUILD")):
        print("intree backend: failing as asked")
        raise SystemExit(3)


def _project():
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    if "version" in project.get("dynamic", []):
        with open(os.path.join(HERE, "VERSION")) as f:
            project["version"] = f.read().strip()
    return project


def _dist(project):
    return project["name"].replace("-", "_").lower()


def _metadata(project):
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    return "\n".join(lines) + "\n\n"


def _members(project, editable):
    dist = _dist(project)
    info = f"{dist}-{project['version']}.dist-info"
    wheel = "Wheel-Version: 1.0\nGenerator: intree\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = {f"{info}/METADATA": _metadata(project), f"{info}/WHEEL": wheel}
    scripts = project.get("scripts", {})
    if scripts:
        members[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in scripts.items())
    src = os.path.join(HERE, "src") if os.path.isdir(os.path.join(HERE, "src")) else HERE
    if editable:
        members[f"_editable_{dist}.pth"] = src + "\n"
    else:
        for top, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                if name.endswith(".py") and top != HERE:
                    path = os.path.join(top, name)
                    with open(path) as f:
                        members[os.path.relpath(path, src)] = f.read()
    return info, members


def _write(directory, project, editable):
    info, members = _members(project, editable)
    name = f"{_dist(project)}-{project['version']}-py3-none-any.whl"
    rows = []
    with zipfile.ZipFile(os.path.join(directory, name), "w") as zf:
        for path, text in members.items():
            data = text.encode()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{path},sha256={digest},{len(data)}")
        rows.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _log("prepare_metadata_for_build_wheel")
    project = _project()
    info = f"{_dist(project)}-{project['version']}.dist-info"
    os.makedirs(os.path.join(metadata_directory, info))
    with open(os.path.join(metadata_directory, info, "METADATA"), "w") as f:
        f.write(_metadata(project))
    return info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _log("build_wheel")
    return _write(wheel_directory, _project(), editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _log("build_editable")
    return _write(wheel_directory, _project(), editable=True)


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError
'''

#: The ``[build-system]`` table that uses :data:`INTREE_BACKEND` from the project's tree.
INTREE_BUILD_SYSTEM = (
    '[build-system]\nrequires = []\nbuild-backend = "intree_backend"\nbackend-path = ["."]\n'
)


def add_intree_backend(root: Path, *, editable: bool = True) -> None:
    """Put the in-tree backend into root (without build_editable unless ``editable``)."""
    text = INTREE_BACKEND
    if not editable:
        text = text.replace("def build_editable(", "def _no_build_editable(")
        text = text.replace("def get_requires_for_build_editable(", "def _no_req_editable(")
    (root / "intree_backend.py").write_text(text)


def backend_calls(root: Path) -> list[str]:
    """The hooks the in-tree backend ran in root, in order."""
    try:
        return (root / "backend-calls.log").read_text().split()
    except FileNotFoundError:
        return []


_WHEEL_TEXT = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_of_installed(dest: Path, name: str) -> Path | None:
    """A py3-none-any wheel of the installed distribution ``name``, or None
    when it is not installed (or lists no files)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [f for f in dist.files or () if not str(f).startswith("..")]
    if not files:
        return None
    info = next(str(f).split("/")[0] for f in files if ".dist-info/" in str(f))
    version = dist.version
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{info.removesuffix('.dist-info').rsplit('-', 1)[0]}-{version}-py3-none-any.whl"
    rows = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            path = str(f)
            if "__pycache__" in path or path.endswith(
                ("/RECORD", "/INSTALLER", "/direct_url.json", "/REQUESTED")
            ):
                continue
            located = Path(f.locate())
            if not located.is_file():
                continue
            data = located.read_bytes()
            if path == f"{info}/WHEEL":
                data = _WHEEL_TEXT
            zf.writestr(path, data)
            rows.append(f"{path},{_record_hash(data)},{len(data)}")
        if f"{info}/WHEEL" not in {r.split(",")[0] for r in rows}:
            data = _WHEEL_TEXT
            zf.writestr(f"{info}/WHEEL", data)
            rows.append(f"{info}/WHEEL,{_record_hash(data)},{len(data)}")
        rows.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    return wheel
