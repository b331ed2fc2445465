"""The Raft group's password: a random group secret, sealed to each member's key, kept on /data.

Threat model and rules (docs/coordination.md has the long form):
- pysyncobj unpickles what arrives on its TCP port, so only holders of the group secret may talk to it:
  every frame is encrypted and authenticated (Fernet) with a key derived from the password, and a frame
  that fails authentication is dropped before unpickling. The password is BLAKE2b(secret) under its own
  personalisation; the secret never leaves a node except sealed.
- The secret is created once, by the designated member with the lowest node id, and is handed to other
  members only as a libsodium sealed box (X25519 from the member's Ed25519 key; crypto_box_seal) inside
  a signed coordination datagram (wire.py) from a trusted current member. A certified node that is not
  a member cannot open a box sealed to another key; an outsider without a certificate cannot get one.
- A revoked member still knows the secret, but every neighbour refuses its adjacencies and no mesh node
  routes its packets once the revocation list is in force; it is also removed from the group (the
  leader replaces it). Rotating the secret after a revocation is not automatic (operator: delete
  `coord/secret` on the members and restart the lowest one; documented).
- Stored as `<data_dir>/coord/secret` (0600, atomic write): "x0node-coord-secret v1" and the hex secret.
"""

from __future__ import annotations

import hashlib
import pathlib
import secrets

import nacl.bindings
import nacl.exceptions

from x0node.io.atomicfile import write_atomic
from x0node.proto.identity import Identity, curve_public_of

SECRET_BYTES = 32
SEALED_BYTES = SECRET_BYTES + nacl.bindings.crypto_box_SEALBYTES
HEADER = "x0node-coord-secret v1"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def password_of(secret: bytes) -> bytes:
    return hashlib.blake2b(secret, digest_size=32, person=b"x0node-raft-pw").digest()


def fingerprint(secret: bytes) -> str:
    return hashlib.blake2b(secret, digest_size=8, person=b"x0node-raft-fp").hexdigest()


def seal(secret: bytes, recipient_public_key: bytes) -> bytes:
    curve = curve_public_of(recipient_public_key)
    if curve is None:
        raise ValueError("recipient key is not a valid point")
    return nacl.bindings.crypto_box_seal(secret, curve)


def unseal(sealed: bytes, identity: Identity) -> bytes | None:
    if len(sealed) != SEALED_BYTES:
        return None
    curve_pk = curve_public_of(identity.public_key)
    try:
        out = nacl.bindings.crypto_box_seal_open(sealed, curve_pk, identity._curve_sk)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return None
    return out if len(out) == SECRET_BYTES else None


def load(path: pathlib.Path) -> bytes | None:
    try:
        if path.stat().st_mode & 0o077:
            return None
        lines = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) != 3 or " ".join(lines[:2]) != HEADER:
        return None
    try:
        raw = bytes.fromhex(lines[2])
    except ValueError:
        return None
    return raw if len(raw) == SECRET_BYTES else None


def save(path: pathlib.Path, secret: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, f"{HEADER}\n{secret.hex()}\n".encode(), 0o600)
