"""The machine's apt sources: deb822 ``.sources`` files and one-line ``.list`` files.

Only what a binary-package source needs is read: ``deb`` lines (``deb-src``
is for building), URIs, suites, components, architectures and the keyring a
source names with ``Signed-By``. A source without ``Signed-By`` is checked
against the archive keyrings apt trusts for every source
(``/etc/apt/trusted.gpg.d/*.gpg`` and ``/etc/apt/trusted.gpg``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contentpkg.errors import CpkError

#: Where apt keeps its sources when no override is given.
APT_DIR = Path("/etc/apt")

#: Keyrings apt trusts for a source that names none (binary keyrings only:
#: gpgv cannot read ASCII-armoured ``.asc`` files as keyrings).
_TRUSTED_PARTS = "trusted.gpg.d"


@dataclass(frozen=True)
class Source:
    """One (URI, suite) of an apt source, with its components."""

    uri: str
    suite: str
    components: tuple[str, ...]
    keyrings: tuple[Path, ...]
    architectures: tuple[str, ...] = ()
    origin: str = ""  # the file (and line) it was read from, for messages

    @property
    def dist_url(self) -> str:
        """Where ``InRelease`` and the indexes live (``dists/<suite>/``)."""
        if self.suite.endswith("/"):  # a flat repository: "deb URI ./"
            return f"{self.uri.rstrip('/')}/{self.suite}"
        return f"{self.uri.rstrip('/')}/dists/{self.suite}/"


def source_files(paths: Sequence[Path] | None) -> list[Path]:
    """The files to read: paths (files or directories) when given, else apt's."""
    roots = list(paths) if paths else [APT_DIR / "sources.list", APT_DIR / "sources.list.d"]
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out += sorted(
                p for p in root.iterdir() if p.suffix in (".list", ".sources") and p.is_file()
            )
        elif root.is_file():
            out.append(root)
        elif paths:
            raise CpkError(f"{root}: no such apt sources file or directory")
    return out


def read_sources(paths: Sequence[Path] | None = None, apt_dir: Path = APT_DIR) -> list[Source]:
    """Every enabled binary source in the given files (default: apt's own)."""
    fallback = default_keyrings(apt_dir)
    sources: list[Source] = []
    for path in source_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CpkError(f"{path}: cannot read apt sources: {exc}") from None
        if path.suffix == ".sources":
            sources += _deb822(text, path, fallback)
        else:
            sources += _one_line(text, path, fallback)
    return sources


def default_keyrings(apt_dir: Path = APT_DIR) -> tuple[Path, ...]:
    """The keyrings apt trusts for sources without ``Signed-By``."""
    parts = apt_dir / _TRUSTED_PARTS
    found = sorted(parts.glob("*.gpg")) if parts.is_dir() else []
    if (apt_dir / "trusted.gpg").is_file():
        found.append(apt_dir / "trusted.gpg")
    return tuple(found)


def _keyrings(value: str, where: str, fallback: tuple[Path, ...]) -> tuple[Path, ...]:
    if not value:
        return fallback
    if "BEGIN PGP" in value:
        # An embedded key block would need writing out and dearmouring;
        # say so rather than check the source against the wrong keys.
        raise CpkError(f"{where}: Signed-By with an embedded key is not supported; name a file")
    return tuple(Path(v) for v in value.replace(",", " ").split())


def _deb822(text: str, path: Path, fallback: tuple[Path, ...]) -> list[Source]:
    from debian.deb822 import Deb822

    out: list[Source] = []
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    for n, stanza in enumerate(Deb822.iter_paragraphs("\n".join(lines)), 1):
        where = f"{path} (stanza {n})"
        if stanza.get("Enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in stanza.get("Types", "").split():
            continue
        uris, suites = stanza.get("URIs", "").split(), stanza.get("Suites", "").split()
        if not uris or not suites:
            raise CpkError(f"{where}: a source needs URIs and Suites")
        components = tuple(stanza.get("Components", "").split())
        keys = _keyrings(stanza.get("Signed-By", "").strip(), where, fallback)
        archs = tuple(stanza.get("Architectures", "").split())
        for uri in uris:
            for suite in suites:
                if not suite.endswith("/") and not components:
                    raise CpkError(f"{where}: suite {suite} needs Components")
                out.append(Source(uri, suite, components, keys, archs, where))
    return out


_OPTIONS = re.compile(r"\[([^\]]*)\]")


def _one_line(text: str, path: Path, fallback: tuple[Path, ...]) -> list[Source]:
    out: list[Source] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{n}"
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            raise CpkError(f"{where}: expected 'deb' or 'deb-src', found {kind!r}")
        options: dict[str, str] = {}
        match = _OPTIONS.match(rest.strip())
        if match:
            for item in match.group(1).split():
                key, _, value = item.partition("=")
                options[key] = value
            rest = rest.strip()[match.end() :]
        if kind != "deb":
            continue
        words = rest.split()
        if len(words) < 2:
            raise CpkError(f"{where}: expected 'deb URI SUITE [COMPONENT...]'")
        uri, suite, *components = words
        if not suite.endswith("/") and not components:
            raise CpkError(f"{where}: suite {suite} needs components")
        keys = _keyrings(options.get("signed-by", ""), where, fallback)
        archs = tuple(a for a in options.get("arch", "").split(",") if a)
        out.append(Source(uri, suite, tuple(components), keys, archs, where))
    return out


def host_architecture() -> str:
    """The Debian name of this machine's architecture (``amd64`` for x86_64)."""
    machine = os.uname().machine
    return _DEB_ARCH.get(machine, machine)


_DEB_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i686": "i386",
    "riscv64": "riscv64",
    "armv7l": "armhf",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
}


def describe(sources: Iterable[Source]) -> str:
    """``uri suite`` of each source, for a message."""
    return ", ".join(f"{s.uri} {s.suite}" for s in sources)
