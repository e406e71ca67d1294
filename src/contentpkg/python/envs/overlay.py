"""Per-project overlays: the project itself, editable, on top of a shared view.

Views are shared by every project with the same lock, so they cannot hold
what belongs to one checkout: the project's own package (installed from the
editable wheel its own backend built, as ``uv run`` and ``pip install -e``
install it: see :mod:`contentpkg.python.build.project`) and local checkouts
used in place (``[tool.cpk.sources]`` with a path). The project's wheel is
installed here, never into the store: an editable install points at a
mutable checkout and belongs to it alone. An overlay is a tiny
virtualenv-shaped directory per project:

* the files of the project's editable wheel (its ``.pth`` or import hook,
  its ``.dist-info`` with entry points, its scripts), installed with
  ``installer``, plus PEP 610 ``direct_url.json``;

* ``pyvenv.cfg`` and ``bin/python``, like the view's;
* in site-packages, one ``.pth`` line that adds the view's site-packages
  with ``site.addsitedir`` (so the view's own ``.pth`` files run too: two
  site directories on ``sys.path`` whatever the number of packages) and
  names the view's prefix in ``site.PREFIXES`` (so ``site.getsitepackages()``
  lists the directory that holds the packages, as in a virtualenv), one
  ``.pth`` path per editable source tree, and a ``.dist-info`` per editable
  project (static PEP 621 metadata, PEP 610 ``direct_url.json`` marking it
  editable), so ``importlib.metadata`` and entry points see it;
* ``bin/`` with every console script, written for the overlay's python;
* a link to each data-scheme directory of the view (``share/``, ``etc/``,
  ``include/``...), since packages find their data under ``sys.prefix``
  (``sys.prefix/share/jupyter``, ``sysconfig.get_path("data")``) and the
  overlay, not the view, is ``sys.prefix``.

Its key covers the view, the project's build key and the checkouts' paths
and metadata files, so an existing overlay is current and the hot path only
checks that it exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import InvalidInputError
from contentpkg.fs import discard, make_tmp_dir, publish_dir
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.names import dist_info_name
from contentpkg.python.project import ProjectInputs, read_static_project
from contentpkg.store import Store
from contentpkg.store.hashing import b32

if TYPE_CHECKING:
    from contentpkg.python.build.project import BuiltProject
    from contentpkg.python.envs.views import Symlinker

ENVS = "envs"
# 2: site.PREFIXES names the view; links to its data directories.
# 3: a dynamic version is called 0+dynamic, as the resolver calls it.
# 4: the project is installed from the wheel its own backend built.
_FORMAT = 4


def overlay_needed(inputs: ProjectInputs, project_key: str | None) -> bool:
    """Whether the environment needs an overlay: the project is installed in
    it (``project_key`` names its build), or checkouts are used in place."""
    return project_key is not None or any(
        s.editable or s.path.is_dir() for s in inputs.sources.values()
    )


def _editables(inputs: ProjectInputs) -> list[Path]:
    """The checkouts used in place through a path and static metadata."""
    return [s.path for s in inputs.sources.values() if s.path.is_dir()]


def overlay_path(
    store: Store,
    view: Path,
    python: InterpreterInfo,
    inputs: ProjectInputs,
    project_key: str | None = None,
) -> Path:
    h = hashlib.sha256(f"cpk-overlay-{_FORMAT}\0{view}\0{project_key}\0".encode())
    for root in _editables(inputs):
        h.update(os.fsencode(root) + b"\0")
        for name in ("pyproject.toml", "setup.cfg", "setup.py"):
            try:
                h.update(name.encode() + b"\0" + (root / name).read_bytes())
            except OSError:
                continue
    return store.home / ENVS / b32(h.digest())[:32]


def ensure_overlay(
    store: Store,
    view: Path,
    python: InterpreterInfo,
    inputs: ProjectInputs,
    project: BuiltProject | None = None,
) -> Path:
    """Build the project's overlay on view if it is not there yet.

    ``project`` is the project's own wheel (editable, or regular for a
    backend without ``build_editable``), installed into the overlay.
    """
    from contentpkg.python.envs.views import VIEW_JSON, write_scripts, write_skeleton

    final = overlay_path(store, view, python, inputs, project.key if project else None)
    if final.is_dir():
        return final
    staging = make_tmp_dir(final.parent, final.name)
    try:
        from contentpkg.python.envs.links import LinkPool

        pool = LinkPool.of(store)
        prompt = inputs.name or inputs.root.name
        write_skeleton(staging, python, prompt=prompt, symlink=pool.symlink)
        site = staging / python.site_packages
        site.mkdir(parents=True)
        view_site = view / python.site_packages
        # site runs the line while it walks the overlay's own site dirs (a
        # list made before the walk), so adding to PREFIXES cannot make it
        # process the view twice; it only makes getsitepackages() name it.
        (site / "_cpk_view.pth").write_text(
            f"import site; site.addsitedir({os.fspath(view_site)!a}); "
            f"site.PREFIXES.append({os.fspath(view)!a})\n",
            encoding="ascii",
        )
        if project is not None:
            _install_project(project, staging, site, final / "bin" / "python")
        _link_data_dirs(staging, view, pool.symlink)
        scripts: dict[str, str] = {}
        for root in _editables(inputs):
            meta = _static_metadata(root)
            _write_editable(site, root, meta)
            scripts.update(meta.get("scripts", {}))
        names = json.loads((view / ".cpk" / VIEW_JSON).read_text())["entries"]
        entries = [e for e in (store.entry(n) for n in names) if e is not None]
        write_scripts(staging / "bin", final / "bin" / "python", entries)
        _write_project_scripts(staging / "bin", final / "bin" / "python", scripts)
        (staging / ".cpk").mkdir()
        (staging / ".cpk" / "refs").write_text("".join(f"{n}\n" for n in names))
        (staging / ".cpk" / "view").symlink_to(view)
        # Not durable (fs's rule): an overlay is derived and rebuilt when
        # missing. Losing the race to an equal overlay is fine.
        publish_dir(staging, final, durable=False)
    finally:
        discard(staging)
    return final


#: What the overlay makes itself, rather than taking from the view.
_OWN = frozenset({"bin", "lib", "lib64", "pyvenv.cfg", ".cpk"})


def _link_data_dirs(overlay: Path, view: Path, symlink: Symlinker = os.symlink) -> None:
    """Link each data-scheme directory of the view into the overlay's root.

    The view already merged every distribution's ``.data/data`` (and its
    headers) at its root, so one link per top-level name is enough.
    """
    for name in sorted(os.listdir(view)):
        # What the project's own wheel put there (its data files) stays.
        if name not in _OWN and not os.path.lexists(overlay / name):
            symlink(view / name, overlay / name)


def _install_project(project: BuiltProject, root: Path, site: Path, python: Path) -> None:
    """Install the project's wheel into the overlay being staged at root.

    ``installer`` does it as pip would (scripts written for the overlay's
    python, RECORD, INSTALLER); the wheel is the project's own, just built
    by cpk, so its checks are the ones it needs. Bytecode is not compiled:
    an editable project's modules live in the checkout, and CPython writes
    theirs where it may, as in any editable install.
    """
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    scheme = {
        "purelib": os.fspath(site),
        "platlib": os.fspath(site),
        "scripts": os.fspath(root / "bin"),
        "headers": os.fspath(root / "include" / "site" / project.name),
        "data": os.fspath(root),
    }
    destination = SchemeDictionaryDestination(
        scheme, interpreter=os.fspath(python), script_kind="posix", bytecode_optimization_levels=()
    )
    try:
        with WheelFile.open(project.wheel) as source:
            install(source, destination, {"INSTALLER": b"cpk\n"})
    except (InstallerError, ValueError, OSError) as exc:
        raise InvalidInputError(
            f"{project.wheel.name}: cannot install the project's built wheel ({exc})",
            path=str(project.wheel),
        ) from None
    if project.editable:
        for info in site.glob("*.dist-info"):
            direct_url = {"url": project.root.as_uri(), "dir_info": {"editable": True}}
            (info / "direct_url.json").write_text(json.dumps(direct_url) + "\n")


def _static_metadata(root: Path) -> dict[str, Any]:
    """Name, version, dependencies and scripts of a checkout, from PEP 621."""
    pyproject = root / "pyproject.toml"
    data, project = read_static_project(pyproject)
    if project is None or project.name is None:
        raise InvalidInputError(f"{pyproject}: [project] has no name", path=str(pyproject))
    return {
        "name": project.name,
        "version": _normal_version(project.shown_version),
        "dependencies": list(project.dependencies),
        "scripts": dict(project.scripts),
        "gui-scripts": dict(project.gui_scripts),
        "entry-points": dict(project.entry_points),
        "requires-python": project.requires_python,
        "import-root": _import_root(root, data),
    }


def _import_root(root: Path, data: dict[str, Any]) -> Path:
    """Where the checkout's packages are imported from (src/ layout or flat)."""
    setuptools = (data.get("tool") or {}).get("setuptools") or {}
    package_dir = setuptools.get("package-dir") or {}
    if isinstance(package_dir, dict) and isinstance(package_dir.get(""), str):
        return root / package_dir[""]
    src = root / "src"
    if src.is_dir() and any(p.is_dir() or p.suffix == ".py" for p in src.iterdir()):
        return src
    return root


def _write_editable(site: Path, root: Path, meta: dict[str, Any]) -> None:
    """A .pth path to the checkout and a dist-info describing it (PEP 610)."""
    dist = dist_info_name(meta["name"])
    (site / f"_cpk_editable_{dist}.pth").write_text(f"{meta['import-root']}\n")
    info = site / f"{dist}-{meta['version']}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {meta['name']}", f"Version: {meta['version']}"]
    if meta.get("requires-python"):
        lines.append(f"Requires-Python: {meta['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in meta["dependencies"]]
    (info / "METADATA").write_text("\n".join(lines) + "\n\n")
    (info / "INSTALLER").write_text("cpk\n")
    direct_url = {"url": root.as_uri(), "dir_info": {"editable": True}}
    (info / "direct_url.json").write_text(json.dumps(direct_url) + "\n")
    groups = {
        "console_scripts": meta["scripts"],
        "gui_scripts": meta["gui-scripts"],
        **{k: v for k, v in meta["entry-points"].items() if isinstance(v, dict)},
    }
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
        for group, items in groups.items()
        if items
    )
    if text:
        (info / "entry_points.txt").write_text(text)
    files = sorted(p.name for p in info.iterdir())
    record = [f"{info.name}/{f},," for f in files] + [f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def _write_project_scripts(bin_dir: Path, python: Path, scripts: dict[str, str]) -> None:
    from contentpkg.python.envs.views import launcher

    for name, value in sorted(scripts.items()):
        module, _, attr = str(value).partition(":")
        attr = attr.split("[")[0].strip()
        if not attr or "/" in name or name.startswith(".") or name.startswith("python"):
            continue
        path = bin_dir / name
        path.write_bytes(launcher(python, module.strip(), attr))
        path.chmod(0o755)


def _normal_version(text: str) -> str:
    """A version as PEP 440 normalises it (``3.1.0.dev`` is ``3.1.0.dev0``),
    as every version cpk writes."""
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(text))
    except InvalidVersion:
        return text
