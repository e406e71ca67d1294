"""``.deb`` files and a signed Debian archive, assembled by the tests.

Two ways to make a ``.deb``: :func:`dpkg_build` has ``dpkg-deb`` build one
from a tree on disk (ELF files compiled into it, symlinks, modes), as Debian
builds its packages; :class:`Deb` writes one from a few files in memory,
without dpkg, for archives of many small packages.

The archive is what apt reads: ``dists/<suite>/InRelease`` clear-signed
with a throwaway key (``gpg`` in a temporary GNUPGHOME), ``Packages.xz``
per component and architecture, by-hash copies, and the ``.deb`` files
under ``pool/``; served over HTTP on 127.0.0.1 by :mod:`support.index`'s
server when a test needs it.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.hostile import ar_archive

GPG = shutil.which("gpg")
DPKG_DEB = shutil.which("dpkg-deb")
needs_dpkg_deb = pytest.mark.skipif(DPKG_DEB is None, reason="needs dpkg-deb to build .deb files")

#: This machine's Debian architecture, as a package built for it names it.
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def dpkg_build(
    tree: Path,
    out: Path,
    control: Mapping[str, str] | None = None,
    *,
    compression: str = "gzip",
    drop_c_sources: bool = False,
) -> Path:
    """Build ``out`` from ``tree`` with ``dpkg-deb --build``; return ``out``.

    ``control``, when given, is written to ``tree/DEBIAN/control`` first:
    its fields in order, after defaults for those a test rarely cares about
    (version 1.0, this machine's architecture, a maintainer), the
    description last as dpkg writes it (a multi-line one continues with
    ``\n ``). Without it the tree already holds its control file.
    ``drop_c_sources`` removes the ``.c`` files that :mod:`support.elfbuild`
    leaves beside what it compiles, which a package would not ship.
    Owners are root's (``--root-owner-group``), as in Debian's packages.
    """
    assert DPKG_DEB is not None, "mark the test with needs_dpkg_deb"
    if control is not None:
        fields = {
            "Package": control["Package"],
            "Version": "1.0",
            "Architecture": ARCH,
            "Maintainer": "T <t@example.org>",
            **control,
        }
        fields["Description"] = fields.pop("Description", f"{control['Package']} for the tests")
        (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}: {v}\n" for k, v in fields.items())
        (tree / "DEBIAN" / "control").write_text(text)
    if drop_c_sources:
        for c in tree.rglob("*.c"):
            c.unlink()
    subprocess.run(
        [DPKG_DEB, "--root-owner-group", f"-Z{compression}", "--build", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _tar(files: dict[str, bytes | str], *, mode: int = 0o644) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(f"./{d}/")
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            value = files[name]
            info = tarfile.TarInfo(f"./{name}")
            if isinstance(value, str):  # a symlink target
                info.type = tarfile.SYMTYPE
                info.linkname = value
                tar.addfile(info)
                continue
            info.size = len(value)
            info.mode = 0o755 if name.startswith(("usr/bin/", "bin/")) else mode
            tar.addfile(info, io.BytesIO(value))
    return buf.getvalue()


@dataclass
class Deb:
    """One binary package: its control fields and its files."""

    name: str
    version: str = "1.0"
    architecture: str = "amd64"
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)

    def control(self) -> str:
        lines = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            f"Architecture: {self.architecture}",
            "Maintainer: Test <test@example.invalid>",
        ]
        lines += [f"{k}: {v}" for k, v in self.fields.items()]
        lines.append(f"Description: test package {self.name}")
        return "\n".join(lines) + "\n"

    def build(self, path: Path) -> Path:
        files = self.files or {f"usr/share/doc/{self.name}/README": f"{self.name}\n".encode()}
        path.write_bytes(
            ar_archive(
                [
                    ("debian-binary", b"2.0\n"),
                    ("control.tar.gz", _tar({"control": self.control().encode()})),
                    ("data.tar.gz", _tar(files)),
                ]
            )
        )
        return path

    def filename(self) -> str:
        version = self.version.split(":", 1)[-1]
        return f"pool/main/{self.name}_{version}_{self.architecture}.deb"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Archive:
    """A signed archive under root: build() writes it, key ids for keyrings."""

    root: Path
    suite: str = "testing"
    component: str = "main"
    architecture: str = "amd64"
    debs: list[Deb] = field(default_factory=list)
    gnupghome: Path | None = None
    keyring: Path | None = None

    def make_key(self) -> None:
        """A throwaway signing key and the exported public keyring gpgv reads."""
        assert GPG is not None
        # The agent's sockets live in GNUPGHOME, and a socket's path must fit
        # in 108 bytes: pytest's directories outgrow that once its run counter
        # reaches four digits under xdist. A short directory of its own does not.
        self.gnupghome = Path(tempfile.mkdtemp(prefix="cpk-gnupg-"))
        self._gpg(
            "--quick-gen-key",
            "--passphrase",
            "",
            "Test Archive <archive@example.invalid>",
            "ed25519",
            "sign",
            "never",
        )
        self.keyring = self.root.parent / f"{self.root.name}-keyring.gpg"
        out = self._gpg("--export", capture=True)
        self.keyring.write_bytes(out)

    def stop_agent(self) -> None:
        """Stop the gpg-agent that signing started for this GNUPGHOME: a
        test leaves no process behind."""
        if self.gnupghome is None:
            return
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None:
            subprocess.run(
                [gpgconf, "--homedir", str(self.gnupghome), "--kill", "all"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.gnupghome, ignore_errors=True)
        self.gnupghome = None

    def _gpg(self, *args: str, capture: bool = False, stdin: bytes | None = None) -> bytes:
        assert GPG is not None and self.gnupghome is not None
        env = dict(os.environ, GNUPGHOME=str(self.gnupghome))
        proc = subprocess.run(
            [GPG, "--batch", "--yes", "--pinentry-mode", "loopback", *args],
            env=env,
            input=stdin,
            capture_output=True,
            check=True,
        )
        return proc.stdout

    def packages_text(self) -> str:
        stanzas = []
        for deb in self.debs:
            path = self.root / deb.filename()
            data = path.read_bytes()
            control = deb.control().rstrip("\n").split("\n")
            desc = control.pop()  # Description last, as apt's indexes have it
            stanzas.append(
                "\n".join(
                    [
                        *control,
                        f"Filename: {deb.filename()}",
                        f"Size: {len(data)}",
                        f"SHA256: {_sha256(data)}",
                        desc,
                    ]
                )
            )
        return "\n\n".join(stanzas) + "\n"

    def build(
        self,
        *,
        valid_until: float | None = None,
        sign: bool = True,
        by_hash: bool = True,
        tamper_packages: bool = False,
    ) -> None:
        """Write pool/, the Packages indexes and the (signed) InRelease."""
        for deb in self.debs:
            target = self.root / deb.filename()
            target.parent.mkdir(parents=True, exist_ok=True)
            deb.build(target)
        dist = self.root / "dists" / self.suite
        comp_dir = dist / self.component / f"binary-{self.architecture}"
        comp_dir.mkdir(parents=True, exist_ok=True)
        text = self.packages_text().encode()
        xz = lzma.compress(text)
        indexes = {"Packages": text, "Packages.xz": xz}
        lines = [
            "Origin: Test",
            f"Suite: {self.suite}",
            f"Codename: {self.suite}",
            f"Date: {email.utils.formatdate(time.time() - 60, usegmt=True)}",
        ]
        if valid_until is not None:
            lines.append(f"Valid-Until: {email.utils.formatdate(valid_until, usegmt=True)}")
        lines += [
            f"Architectures: {self.architecture}",
            f"Components: {self.component}",
        ]
        if by_hash:
            lines.append("Acquire-By-Hash: yes")
        lines.append("SHA256:")
        for name, data in indexes.items():
            rel = f"{self.component}/binary-{self.architecture}/{name}"
            lines.append(f" {_sha256(data)} {len(data)} {rel}")
            served = data
            if tamper_packages and name == "Packages.xz":
                served = lzma.compress(text + b"\n")
            (comp_dir / name).write_bytes(served)
            if by_hash:
                hashed = comp_dir / "by-hash" / "SHA256" / _sha256(data)
                hashed.parent.mkdir(parents=True, exist_ok=True)
                hashed.write_bytes(served)
        release = "\n".join(lines) + "\n"
        (dist / "Release").write_text(release)
        if sign:
            signed = self._gpg(
                "--clearsign", "--digest-algo", "SHA256", capture=True, stdin=release.encode()
            )
            (dist / "InRelease").write_bytes(signed)
        else:
            (dist / "InRelease").write_text(release)

    def sources(self, url: str, keyring: Path | None = None) -> str:
        """A deb822 ``.sources`` stanza naming this archive at url."""
        key = keyring or self.keyring
        return (
            f"Types: deb\nURIs: {url}\nSuites: {self.suite}\n"
            f"Components: {self.component}\nSigned-By: {key}\n"
        )


_SERVER = r"""
import http.server, sys, functools, os
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        # A file with a ".fail-once" sibling is answered 503 once (a busy mirror).
        marker = os.path.join(sys.argv[1], self.path.lstrip("/") + ".fail-once")
        if os.path.exists(marker):
            os.unlink(marker)
            self.send_error(503, "busy")
            return
        super().do_GET()
    def log_message(self, fmt, *args):
        if not fmt.startswith('"%s"'):  # one line per request, not per error too
            return
        with open(sys.argv[2], "a") as log:
            log.write(self.path + "\n")
handler = functools.partial(H, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Server:
    """A static HTTP server on 127.0.0.1 over a directory, in its own process."""

    def __init__(self, root: Path, log: Path) -> None:
        import sys

        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(root), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def requests(self) -> list[str]:
        """Paths requested so far, in order."""
        return self.log.read_text().split() if self.log.exists() else []

    def stop(self) -> None:
        os.kill(self.proc.pid, 15)
        self.proc.wait(timeout=10)
