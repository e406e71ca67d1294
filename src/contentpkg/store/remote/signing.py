"""Ed25519 keys and entry signatures (``cryptography``).

A signature vouches for one manifest digest: the payload is a small JSON
document naming the digest and the entry, signed with the pusher's private
key. It travels as an artifact of its own, tagged ``sha256-<hex>.sig`` in
the entry's repository (cosign's tag scheme, since many registries, Debian's
``docker-registry`` 2.8 among them, have no referrers API). Private keys
stay in the files the user gave; only signatures and key ids are pushed.

Trusted public keys live in ``$CPK_HOME/trusted-keys/<key id>.pub``; a key
id is the sha256 of the raw 32-byte public key, in hex.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.fs import write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE_TYPE = "application/vnd.contentpkg.signature.v1"
PAYLOAD_TYPE = "application/vnd.contentpkg.signature.payload.v1+json"
A_SIGNATURE = "dev.contentpkg.signature"
A_KEY = "dev.contentpkg.key"
TRUSTED_DIR = "trusted-keys"


def signature_tag(manifest_digest: str) -> str:
    return manifest_digest.replace(":", "-") + ".sig"


def key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def generate(path: Path) -> str:
    """Write a new key pair: ``path`` (private, 0600) and ``path.pub``; its id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    pub_path = path.with_name(path.name + ".pub")
    for target in (path, pub_path):
        if target.exists():
            raise CpkError(f"{target}: already exists; cpk never overwrites a key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_atomic(path, private, mode=0o600, exact_mode=True)
    write_atomic(pub_path, public, mode=0o644)
    return key_id(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise CpkError(f"{path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise CpkError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CpkError(f"{path}: not an ed25519 key (make one with 'cpk key generate')")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CpkError(f"{path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        raise CpkError(f"{path}: a private key; trust its .pub file instead")
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise CpkError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CpkError(f"{path}: not an ed25519 public key")
    return key


def trust(home: Path, path: Path) -> str:
    """Copy a public key into the trusted keys; its id."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = load_public(path)
    ident = key_id(key)
    directory = home / TRUSTED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_atomic(directory / f"{ident}.pub", pem, mode=0o644)
    return ident


def trusted_keys(home: Path) -> dict[str, Ed25519PublicKey]:
    """Every trusted key by id; an unreadable one is an error, not a skip."""
    directory = home / TRUSTED_DIR
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".pub"))
    except FileNotFoundError:
        return {}
    keys = {}
    for name in names:
        key = load_public(directory / name)
        keys[key_id(key)] = key
    return keys


def payload(manifest_digest: str, entry: str) -> bytes:
    """What is signed: the manifest's digest and the entry it carries."""
    return json.dumps(
        {"type": "contentpkg-entry-signature-v1", "manifest": manifest_digest, "entry": entry},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def sign(key: Ed25519PrivateKey, data: bytes) -> tuple[str, str]:
    """(key id, base64 signature) of data."""
    return key_id(key.public_key()), base64.b64encode(key.sign(data)).decode()


def check(
    keys: dict[str, Ed25519PublicKey],
    signature_manifest: dict[str, Any],
    payload_bytes: bytes,
    manifest_digest: str,
    entry: str,
    where: str,
) -> str:
    """Verify a signature artifact against the trusted keys; the signer's key id.

    Refused, with one line saying which: no trusted keys, a key not trusted,
    a bad signature, a payload naming another manifest or entry.
    """
    from cryptography.exceptions import InvalidSignature

    if not keys:
        raise CpkError(
            f"{where}: no trusted keys; add the publisher's with 'cpk key trust KEY.pub'"
        )
    layers = signature_manifest.get("layers") or [{}]
    notes = layers[0].get("annotations") or {}
    ident = str(notes.get(A_KEY, ""))
    key = keys.get(ident)
    if key is None:
        raise CpkError(f"{where}: signed by an unknown key {ident[:16] or '(none)'}; not trusted")
    try:
        key.verify(base64.b64decode(str(notes.get(A_SIGNATURE, "")), validate=True), payload_bytes)
    except (InvalidSignature, ValueError):
        raise CpkError(f"{where}: the signature does not verify with key {ident[:16]}") from None
    try:
        said = json.loads(payload_bytes)
    except ValueError:
        raise CpkError(f"{where}: the signed payload is not JSON") from None
    if said.get("manifest") != manifest_digest or said.get("entry") != entry:
        raise CpkError(f"{where}: the signature is for another manifest")
    return ident
