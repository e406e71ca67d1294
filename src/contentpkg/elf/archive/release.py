"""``InRelease``: fetched, verified with ``gpgv``, checked for expiry, parsed.

The signed text is what gpgv writes out (``--output``), never the file as
served: a clear-signed file can carry unsigned lines around its signed
block, and only the signed ones may be trusted. A file that is not signed,
is signed by a key outside the source's keyrings, or whose ``Valid-Until``
has passed is refused in one line, before anything of it is cached.
"""

from __future__ import annotations

import email.utils
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from contentpkg.elf.archive import http
from contentpkg.elf.archive.sources import Source
from contentpkg.errors import CpkError
from contentpkg.fs import write_cache

_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"


class ArchiveTrustError(CpkError):
    """An index that cannot be trusted: unsigned, badly signed, expired or altered."""


@dataclass(frozen=True)
class IndexFile:
    """One file the Release vouches for: its path under dists/SUITE/, size, sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """The verified fields of one suite's Release."""

    source: Source
    by_hash: bool
    files: dict[str, IndexFile]
    valid_until: float | None


def fetch_release(source: Source, cache: Path, now: float | None = None) -> Release:
    """The source's verified Release, revalidated against the cached copy."""
    url = source.dist_url + "InRelease"
    slot = cache / "release" / _key(url)
    meta_path, body_path = slot / "validators.json", slot / "InRelease"
    validators: dict[str, str] = {}
    if body_path.is_file() and meta_path.is_file():
        try:
            validators = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            validators = {}
    response = http.get(url, validators.get("etag", ""), validators.get("last_modified", ""))
    body = body_path.read_bytes() if response.status == 304 else response.body
    # Verified every time, the cached copy too: expiry moves on, keyrings change.
    text = verify_signature(body, source, url)
    release = parse_release(text, source, url, now)
    if response.status != 304:
        write_cache(body_path, body)
        write_cache(
            meta_path,
            json.dumps({"etag": response.etag, "last_modified": response.last_modified}).encode(),
        )
    return release


def _key(url: str) -> str:
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()[:32]


def verify_signature(body: bytes, source: Source, url: str) -> str:
    """The signed text of a clear-signed body, if a key of source's keyrings signed it."""
    if not body.lstrip().startswith(_SIGNED):
        raise ArchiveTrustError(f"{url}: not signed; refusing an unsigned archive index")
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise CpkError("gpgv is not installed: it checks archive signatures (apt install gpgv)")
    keyrings = [k for k in source.keyrings if k.is_file()]
    if not keyrings:
        named = ", ".join(map(str, source.keyrings)) or "none"
        raise ArchiveTrustError(f"{url}: no keyring to check it against (keyrings: {named})")
    argv = [gpgv, "--status-fd", "2", "--output", "-"]
    for k in keyrings:
        argv += ["--keyring", str(k)]
    proc = subprocess.run([*argv, "-"], input=body, capture_output=True, check=False)
    status = [
        ln.split()[1:]
        for ln in proc.stderr.decode(errors="replace").splitlines()
        if ln.startswith("[GNUPG:] ")
    ]
    kinds = {s[0] for s in status if s}
    # apt's rule: a signature by an expired or revoked key does not count,
    # though gpgv reports it VALIDSIG.
    distrusted = kinds & {"EXPKEYSIG", "REVKEYSIG", "EXPSIG"}
    if proc.returncode != 0 or "VALIDSIG" not in kinds or distrusted:
        why = (
            "signed by a key not in " + ", ".join(map(str, keyrings))
            if "NO_PUBKEY" in kinds
            else "bad signature"
            if "BADSIG" in kinds
            else f"signature not trusted ({', '.join(sorted(distrusted))})"
            if distrusted
            else "signature not verified"
        )
        raise ArchiveTrustError(f"{url}: {why}")
    return proc.stdout.decode("utf-8", errors="replace")


def parse_release(text: str, source: Source, url: str, now: float | None = None) -> Release:
    """Fields of a verified Release text; refuse one past its Valid-Until."""
    from debian.deb822 import Release as Deb822Release

    fields = Deb822Release(text)
    valid_until = None
    if fields.get("Valid-Until"):
        parsed = email.utils.parsedate_to_datetime(fields["Valid-Until"])
        valid_until = parsed.timestamp()
        if valid_until < (time.time() if now is None else now):
            raise ArchiveTrustError(
                f"{url}: expired on {fields['Valid-Until']} (Valid-Until); refusing a stale index"
            )
    files: dict[str, IndexFile] = {}
    for row in fields.get("SHA256", []):
        files[row["name"]] = IndexFile(row["name"], int(row["size"]), row["sha256"])
    if not files:
        raise ArchiveTrustError(f"{url}: lists no SHA256 sums; cannot check its indexes")
    by_hash = fields.get("Acquire-By-Hash", "no").strip().lower() == "yes"
    return Release(source, by_hash, files, valid_until)
