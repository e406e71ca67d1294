"""Per-project overlays: the project itself, editable, on top of a shared view.

Views are shared by every project with the same lock, so they cannot hold
what belongs to one checkout: the project's own package (importable as an
editable install, as ``uv run`` and ``pip install -e`` make it) and local
checkouts used in place (``[tool.cpk.sources]`` with a path). An overlay is
a tiny virtualenv-shaped directory per project:

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

Its key covers the view, the project's path and the bytes of its metadata
files, so an existing overlay is current and the hot path only checks that
it exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError
from contentpkg.fs import remove_tree
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.project import ProjectInputs
from contentpkg.store import Store
from contentpkg.store.hashing import b32

ENVS = "envs"
# 2: site.PREFIXES names the view; links to its data directories.
_FORMAT = 2


def overlay_needed(inputs: ProjectInputs) -> bool:
    return bool(inputs.installable and inputs.name) or any(
        s.editable or s.path.is_dir() for s in inputs.sources.values()
    )


def _editables(inputs: ProjectInputs) -> list[Path]:
    roots = []
    if inputs.installable and inputs.name:
        roots.append(inputs.root)
    roots.extend(s.path for s in inputs.sources.values() if s.path.is_dir())
    return roots


def overlay_path(store: Store, view: Path, python: InterpreterInfo, inputs: ProjectInputs) -> Path:
    h = hashlib.sha256(f"cpk-overlay-{_FORMAT}\0{view}\0".encode())
    for root in _editables(inputs):
        h.update(os.fsencode(root) + b"\0")
        for name in ("pyproject.toml", "setup.cfg", "setup.py"):
            try:
                h.update(name.encode() + b"\0" + (root / name).read_bytes())
            except OSError:
                continue
    return store.home / ENVS / b32(h.digest())[:32]


def ensure_overlay(
    store: Store, view: Path, python: InterpreterInfo, inputs: ProjectInputs
) -> Path:
    """Build the project's overlay on view if it is not there yet."""
    from contentpkg.python.envs.views import VIEW_JSON, write_scripts, write_skeleton

    final = overlay_path(store, view, python, inputs)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".staging-{final.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        write_skeleton(staging, python, prompt=inputs.name or inputs.root.name)
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
        _link_data_dirs(staging, view)
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
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if staging.exists():
            remove_tree(staging)
    return final


#: What the overlay makes itself, rather than taking from the view.
_OWN = frozenset({"bin", "lib", "lib64", "pyvenv.cfg", ".cpk"})


def _link_data_dirs(overlay: Path, view: Path) -> None:
    """Link each data-scheme directory of the view into the overlay's root.

    The view already merged every distribution's ``.data/data`` (and its
    headers) at its root, so one link per top-level name is enough.
    """
    for name in sorted(os.listdir(view)):
        if name not in _OWN:
            os.symlink(view / name, overlay / name)


def _static_metadata(root: Path) -> dict[str, Any]:
    """Name, version, dependencies and scripts of a checkout, from PEP 621."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CpkError(f"{root}/pyproject.toml: cannot read project metadata ({exc})") from None
    project = data.get("project") or {}
    name = project.get("name")
    if not isinstance(name, str):
        raise CpkError(f"{root}/pyproject.toml: [project] has no name")
    version = project.get("version")
    if not isinstance(version, str):
        version = "0+editable"  # dynamic: the checkout is the truth anyway
    return {
        "name": name,
        "version": version,
        "dependencies": list(project.get("dependencies") or []),
        "scripts": dict(project.get("scripts") or {}),
        "gui-scripts": dict(project.get("gui-scripts") or {}),
        "entry-points": dict(project.get("entry-points") or {}),
        "requires-python": project.get("requires-python"),
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
    import re

    dist = re.sub(r"[-_.]+", "_", meta["name"]).lower()
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
