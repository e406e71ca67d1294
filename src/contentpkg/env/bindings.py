"""Bindings: what an environment provides, and where each namespace looks for it.

A binding pairs a namespace with the search path that finds the env's
files in it ("what" is found "where"). They are computed from the env dir's
manifest (every entry says what it ``provides`` to which namespace, and
which plain files it ``requires``) and the env-dir layout:

=================  =================  ==========================================
namespace          variable           how
=================  =================  ==========================================
PATH               PATH               ``ENV/bin`` prepended
MANPATH            MANPATH            nothing when ``ENV/bin`` is on PATH (man-db
                                      derives ``ENV/share/man`` from it) unless
                                      MANPATH is set, which turns that off; else
                                      ``ENV/share/man:`` (trailing ':' keeps the
                                      system's default)
XDG_DATA_DIRS      XDG_DATA_DIRS      ``ENV/share`` prepended; the spec's default
                                      ``/usr/local/share:/usr/share`` kept if unset
LD_LIBRARY_PATH    (reported)         not exported: RUNPATH does the work
locale             TEXTDOMAINDIR      reported, not exported (see below)
python             PYTHONPATH         reported, not exported (see below)
=================  =================  ==========================================

The same bindings are applied to a child's environment (``cpk exec``,
``cpk shell``) by :func:`apply` and written as shell code by :func:`render`,
so the two cannot disagree.

A requirement is ``{"namespace": NS, "path": REL}``: REL must be found
below one directory of NS's search path (``man1/foo.1`` on MANPATH,
``mime/packages/x.xml`` on XDG_DATA_DIRS, ``sed`` on PATH).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError, NotFoundError

MANIFEST = ".cpk/manifest.json"
SHELLS = ("sh", "bash", "zsh", "fish")

#: How a binding reaches a child's environment.
PREPEND = "prepend"  # ENV's directories first, then the old value (or the default)
IF_SET = "prepend-if-set"  # only when the variable is set: unset, something derives it
REPORT = "report"  # listed for the reader, never exported

#: The XDG base directory spec's value for an unset or empty XDG_DATA_DIRS.
XDG_DATA_DIRS_DEFAULT = ("/usr/local/share", "/usr/share")

#: Where each namespace's files sit in an env dir (the layout elf/envdir.py makes).
LAYOUT = {
    "PATH": "bin",
    "MANPATH": "share/man",
    "XDG_DATA_DIRS": "share",
    "locale": "share/locale",
    "LD_LIBRARY_PATH": "lib",
}


@dataclass(frozen=True)
class Binding:
    """One namespace of an environment: the variable, the directories, and how."""

    namespace: str
    variable: str
    directories: tuple[str, ...]
    how: str  # PREPEND, IF_SET or REPORT
    default: tuple[str, ...] = ()  # components assumed when the variable is unset or empty
    note: str = ""

    @property
    def exported(self) -> bool:
        return self.how != REPORT


@dataclass(frozen=True)
class MissingFile:
    """A plain file an entry requires that its namespace's search path lacks."""

    entry: str  # "name version" of the entry that requires it
    namespace: str
    path: str
    searched: tuple[str, ...]

    def message(self) -> str:
        where = ":".join(self.searched) if self.searched else "(an empty search path)"
        return f"{self.entry} requires {self.path!r} on {self.namespace}, not found in {where}"


@dataclass
class Environment:
    """An env dir as named (a profile's alias path, so later switches show through)."""

    path: Path
    label: str
    manifest: dict[str, Any]
    bindings: list[Binding] = field(default_factory=list)
    profile: str | None = None


def _is_path(spec: str) -> bool:
    return "/" in spec or spec.startswith((".", "~"))


def open_env(spec: str | None, home: Path) -> Environment:
    """The environment ``spec`` names: a profile name (default "default") or an env dir.

    ``home`` is where profiles live (the context's home).
    """
    from contentpkg.env.profiles import DEFAULT_PROFILE, Profile

    if spec is not None and _is_path(spec):
        path = Path(spec).expanduser().absolute()
        return load(path, str(path))
    name = spec or DEFAULT_PROFILE
    profile = Profile(name, home)
    try:
        profile.require()
    except NotFoundError as exc:
        if spec is not None and os.path.isdir(spec):
            raise NotFoundError(
                f"no profile named {spec!r}; for the directory, write ./{spec}", what=spec
            ) from None
        raise exc from None
    number = profile.current_number()
    env = load(profile.alias, f"profile {name} (generation {number})")
    env.profile = name
    return env


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        text = (path / MANIFEST).read_text()
    except FileNotFoundError:
        what = "no such directory" if not path.is_dir() else f"no {MANIFEST}"
        raise CpkError(f"{path}: not an env dir ({what})") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise CpkError(f"{path / MANIFEST}: malformed JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CpkError(f"{path / MANIFEST}: not a manifest (a JSON object was expected)")
    return manifest


def load(path: Path, label: str | None = None) -> Environment:
    manifest = read_manifest(path)
    return Environment(path, label or str(path), manifest, compute_bindings(path, manifest))


def _entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = manifest.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


def provided_namespaces(path: Path, manifest: dict[str, Any]) -> set[str]:
    """Namespaces some entry provides to; read from the files if none says."""
    entries = _entries(manifest).values()
    if any("provides" in e for e in entries):
        return {
            ns
            for e in entries
            if isinstance(e.get("provides"), dict)
            for ns, paths in e["provides"].items()
            if paths
        }
    # A manifest without "provides" (made by hand, or by an older cpk): the
    # layout says the same thing, a little less precisely.
    found = {ns for ns, rel in LAYOUT.items() if (path / rel).is_dir()}
    if (path / "share").is_dir() and any(
        n not in ("man", "locale", "doc") for n in os.listdir(path / "share")
    ):
        found.add("XDG_DATA_DIRS")
    else:
        found.discard("XDG_DATA_DIRS")
    if _site_packages(path):
        found.add("python")
    return found


def _site_packages(path: Path) -> list[Path]:
    lib = path / "lib"
    return sorted(
        [*lib.glob("python*/site-packages"), *lib.glob("python3/dist-packages")],
    )


def compute_bindings(path: Path, manifest: dict[str, Any]) -> list[Binding]:
    """The bindings of the env dir at path (as named: keep a profile's alias)."""
    provided = provided_namespaces(path, manifest)
    env = os.fspath(path)
    bindings = []
    on_path = "PATH" in provided
    if on_path:
        bindings.append(Binding("PATH", "PATH", (f"{env}/bin",), PREPEND))
    if "MANPATH" in provided:
        man = f"{env}/share/man"
        if on_path:
            bindings.append(
                Binding(
                    "MANPATH", "MANPATH", (man,), IF_SET,
                    note="man-db finds it from bin/ on PATH; prepended only when MANPATH "
                    "is set, which turns that search off",
                )
            )  # fmt: skip
        else:
            bindings.append(
                Binding(
                    "MANPATH", "MANPATH", (man,), PREPEND, default=("",),
                    note="no bin/ on PATH to derive it from; the trailing ':' keeps "
                    "the system's man path",
                )
            )  # fmt: skip
    if "XDG_DATA_DIRS" in provided:
        bindings.append(
            Binding(
                "XDG_DATA_DIRS", "XDG_DATA_DIRS", (f"{env}/share",), PREPEND,
                default=XDG_DATA_DIRS_DEFAULT,
            )
        )  # fmt: skip
    if "LD_LIBRARY_PATH" in provided:
        bindings.append(
            Binding(
                "LD_LIBRARY_PATH", "LD_LIBRARY_PATH", (f"{env}/lib",), REPORT,
                note="not exported: each program's RUNPATH ($ORIGIN/common_libs) finds it, "
                "and a variable would leak into every other program",
            )
        )  # fmt: skip
    if "locale" in provided:
        bindings.append(
            Binding(
                "locale", "TEXTDOMAINDIR", (f"{env}/share/locale",), REPORT,
                note="not exported: only gettext.sh scripts read it (programs use their "
                "built-in locale dir), and a global value would hide the system's translations",
            )
        )  # fmt: skip
    if "python" in provided:
        site = _site_packages(path)
        bindings.append(
            Binding(
                "python", "PYTHONPATH", tuple(f"{env}/{p.relative_to(path)}" for p in site),
                REPORT,
                note="not exported: Python tools in bin/ run in their own views; a global "
                "PYTHONPATH would leak into every interpreter"
                + ("" if site else " (this env holds no site-packages)"),
            )
        )  # fmt: skip
    return bindings


def _components(value: str) -> list[str]:
    return value.split(":") if value else []


def apply(bindings: list[Binding], environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of environ with the bindings applied (what :func:`render` does in a shell)."""
    result = dict(environ)
    for b in bindings:
        old = result.get(b.variable, "")
        if b.how == REPORT or (b.how == IF_SET and not old):
            continue
        rest = _components(old) if old else list(b.default)
        result[b.variable] = ":".join([*b.directories, *rest])
    return result


def child_environ(env: Environment, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process run in env: bindings plus ``CPK_ENV`` for prompts."""
    result = apply(env.bindings, environ)
    result["CPK_ENV"] = os.fspath(env.path)
    return result


def default_shell(environ: Mapping[str, str]) -> str:
    """The dialect to print for: $SHELL's name if known, POSIX sh otherwise."""
    name = os.path.basename(environ.get("SHELL", ""))
    return name if name in SHELLS else "sh"


def _dq(text: str) -> str:
    """Escape for inside double quotes in sh."""
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _render_sh(b: Binding) -> str:
    var, dirs = b.variable, shlex.quote(":".join(b.directories))
    if b.how == IF_SET:
        return f'if [ -n "${{{var}:-}}" ]; then export {var}={dirs}:"${var}"; fi'
    if b.default:
        return f'export {var}={dirs}:"${{{var}:-{_dq(":".join(b.default))}}}"'
    return f'export {var}={dirs}"${{{var}:+:${var}}}"'


def _render_fish(b: Binding) -> str:
    # --path: fish joins the list with ':' when exporting (and splits an
    # inherited "a:b" value), as it already does for PATH and MANPATH.
    var, dirs = b.variable, " ".join(_fish_quote(d) for d in b.directories)
    then = f"set -gx --path {var} {dirs} ${var}"
    if b.how == IF_SET:
        return f'if test -n "${var}"; {then}; end'
    default = " ".join(_fish_quote(d) for d in b.default)
    otherwise = f"set -gx --path {var} {dirs}" + (f" {default}" if default else "")
    # An empty inherited value counts as unset, as ${VAR:+...} does in sh:
    # an empty PATH element would otherwise mean the current directory.
    return f'if test -n "${var}"; {then}; else; {otherwise}; end'


def render(env: Environment, shell: str) -> str:
    """Shell code that applies env's bindings in the current shell."""
    if shell not in SHELLS:
        raise CpkError(f"{shell!r}: unknown shell (choose one of {', '.join(SHELLS)})")
    how = (
        f"cpk env --shell fish {env.path} | source"
        if shell == "fish"
        else f'eval "$(cpk env --shell {shell} {env.path})"'
    )
    lines = [f"# bindings of {env.label}: {env.path}", f"# use: {how}"]
    for b in env.bindings:
        if b.exported:
            lines.append(_render_fish(b) if shell == "fish" else _render_sh(b))
            if b.note:
                lines.append(f"#   {b.variable}: {b.note}")
        else:
            where = ":".join(b.directories) or "-"
            lines.append(f"# {b.namespace} ({b.variable}) {where}: {b.note}")
    return "\n".join(lines) + "\n"


# --- requirements -------------------------------------------------------------


def _man_search_path(environ: Mapping[str, str]) -> list[str]:
    """What man-db searches in environ: asked of ``manpath`` itself when it exists.

    man-db's rules (PATH-derived directories, manpath.config mappings, empty
    MANPATH components) are its own; asking it is exact, and the fallback
    below only needs to be close where man-db is missing anyway.
    """
    manpath = shutil.which("manpath", path=environ.get("PATH"))
    if manpath is not None:
        proc = subprocess.run(
            [manpath, "-q"], env=dict(environ), capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return _components(proc.stdout.strip())
    defaults = ["/usr/local/share/man", "/usr/share/man"]
    value = environ.get("MANPATH", "")
    derived = []
    for d in _components(environ.get("PATH", "")):
        for candidate in (os.path.join(d, "..", "share", "man"), os.path.join(d, "..", "man")):
            if os.path.isdir(candidate):
                derived.append(os.path.normpath(candidate))
    if not value:
        return [*derived, *defaults]
    result: list[str] = []
    for part in value.split(":"):
        result.extend([*derived, *defaults] if part == "" else [part])
    return result


def _library_search_path(env: Environment, environ: Mapping[str, str]) -> list[str]:
    """An approximation of the loader's path for a plain check (``cpk ldd`` is exact)."""
    import sysconfig

    triplet = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
    return [
        f"{env.path}/lib",
        *_components(environ.get("LD_LIBRARY_PATH", "")),
        f"/lib/{triplet}",
        f"/usr/lib/{triplet}",
        "/lib",
        "/usr/lib",
    ]


def search_path(env: Environment, namespace: str, environ: Mapping[str, str]) -> list[str]:
    """The directories a process in env searches for namespace's files, in order.

    ``environ`` is the process's environment with env's bindings applied.
    """
    if namespace == "PATH":
        return _components(environ.get("PATH", ""))
    if namespace == "MANPATH":
        return _man_search_path(environ)
    if namespace == "XDG_DATA_DIRS":
        home = environ.get("XDG_DATA_HOME") or os.path.join(
            environ.get("HOME", "~"), ".local", "share"
        )
        dirs = _components(environ.get("XDG_DATA_DIRS", "")) or list(XDG_DATA_DIRS_DEFAULT)
        return [home, *dirs]
    if namespace == "locale":
        first = _components(environ.get("TEXTDOMAINDIR", ""))
        return [*first, f"{env.path}/share/locale", "/usr/local/share/locale", "/usr/share/locale"]
    if namespace == "LD_LIBRARY_PATH":
        return _library_search_path(env, environ)
    if namespace == "python":
        return [os.fspath(p) for p in _site_packages(env.path)]
    return []


def _found(directory: str, rel: str, namespace: str) -> bool:
    base = os.path.join(directory, rel)
    if os.path.exists(base):
        return True
    if namespace == "MANPATH":  # man pages are often compressed
        return any(os.path.exists(base + ext) for ext in (".gz", ".xz", ".bz2", ".zst"))
    if namespace == "python":
        return os.path.exists(base + ".py")
    return False


def check_requirements(env: Environment, environ: Mapping[str, str]) -> list[MissingFile]:
    """Every plain file an entry requires that its search path does not hold.

    ``environ`` is the environment the env's processes start from (the
    bindings are applied here), so the check sees what they will see.
    """
    child = apply(env.bindings, environ)
    missing = []
    cache: dict[str, list[str]] = {}
    for dirname, entry in sorted(_entries(env.manifest).items()):
        requires = entry.get("requires")
        if not isinstance(requires, list):
            continue
        who = f"{entry.get('name', dirname)} {entry.get('version', '')}".strip()
        for req in requires:
            if not isinstance(req, dict):
                continue
            ns, rel = str(req.get("namespace", "")), str(req.get("path", ""))
            if not rel:
                continue
            if ns not in cache:
                cache[ns] = search_path(env, ns, child)
            dirs = cache[ns]
            if not any(_found(d, rel, ns) for d in dirs):
                missing.append(MissingFile(who, ns, rel, tuple(dirs)))
    return missing
