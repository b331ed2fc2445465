"""Cipher methods and key derivation for Shadowsocks AEAD (SIP004/SIP007) and 2022 (SIP022).

Invariants:
- Legacy AEAD methods derive the master key from a password with OpenSSL's EVP_BytesToKey (MD5,
  no salt, one iteration), and a per-session subkey with HKDF-SHA1(key, salt, info="ss-subkey").
- 2022 methods take a base64 pre-shared key of exactly `key_len` bytes (no password stretching,
  SIP022 section 2.1) and derive session subkeys with BLAKE3 derive_key("shadowsocks 2022 session
  subkey", psk + salt).
- Nonces are 96-bit little-endian counters starting at zero, incremented after every AEAD call.
No I/O, clock or randomness here: callers pass salts in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol

import blake3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG_LEN = 16
NONCE_LEN = 12
SS_SUBKEY_INFO = b"ss-subkey"
SS2022_SUBKEY_CONTEXT = "shadowsocks 2022 session subkey"


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


@dataclass(frozen=True)
class Method:
    name: str
    key_len: int
    salt_len: int
    family: str  # "chacha20" | "aesgcm"
    is_2022: bool

    def aead(self, key: bytes) -> Aead:
        if self.family == "chacha20":
            return ChaCha20Poly1305(key)
        return AESGCM(key)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("chacha20-ietf-poly1305", 32, 32, "chacha20", False),
        Method("aes-256-gcm", 32, 32, "aesgcm", False),
        Method("aes-128-gcm", 16, 16, "aesgcm", False),
        Method("2022-blake3-chacha20-poly1305", 32, 32, "chacha20", True),
        Method("2022-blake3-aes-256-gcm", 32, 32, "aesgcm", True),
        Method("2022-blake3-aes-128-gcm", 16, 16, "aesgcm", True),
    )
}
DEFAULT_METHOD = "2022-blake3-chacha20-poly1305"


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def evp_bytes_to_key(password: bytes, key_len: int) -> bytes:
    """OpenSSL EVP_BytesToKey with MD5, no salt, count 1 (the legacy Shadowsocks password KDF)."""
    out = b""
    prev = b""
    while len(out) < key_len:
        prev = hashlib.md5(prev + password).digest()  # EVP_BytesToKey(MD5) is SIP004's password-to-key derivation (interop) # nosec B324
        out += prev
    return out[:key_len]


def hkdf_sha1_subkey(key: bytes, salt: bytes) -> bytes:
    """SIP004 session subkey: HKDF-SHA1 over the master key with the random salt."""
    return HKDF(algorithm=hashes.SHA1(), length=len(key), salt=salt, info=SS_SUBKEY_INFO).derive(key)  # HKDF-SHA1 is SIP004's session subkey derivation (interop) # nosec B303


def blake3_subkey(psk: bytes, salt: bytes, length: int | None = None) -> bytes:
    """SIP022 session subkey."""
    return blake3.blake3(psk + salt, derive_key_context=SS2022_SUBKEY_CONTEXT).digest(length or len(psk))


def master_key(method: Method, password: str) -> bytes:
    """The key both ends share: EVP_BytesToKey(password) or the decoded 2022 PSK."""
    if not method.is_2022:
        return evp_bytes_to_key(password.encode(), method.key_len)
    try:
        psk = base64.b64decode(password, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{method.name} needs a base64 pre-shared key (openssl rand -base64 {method.key_len})") from None
    if len(psk) != method.key_len:
        raise ValueError(f"{method.name} needs a {method.key_len}-byte key, got {len(psk)} bytes")
    return psk


def session_subkey(method: Method, key: bytes, salt: bytes) -> bytes:
    return blake3_subkey(key, salt) if method.is_2022 else hkdf_sha1_subkey(key, salt)


class NonceCounter:
    """96-bit little-endian counter; `next()` returns the current nonce then increments."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> bytes:
        v = self.value
        self.value = v + 1
        return v.to_bytes(NONCE_LEN, "little")
