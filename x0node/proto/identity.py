"""Node identity: an Ed25519 key pair, the node id derived from the public key, the mesh address
derived from the node id, and the pairwise keepalive keys derived from the long-term keys.

Rules:
- node id = BLAKE2b-128(public key, person "x0node-node-id"); it names a node everywhere.
- mesh address = MESH_ULA_PREFIX (48 bits) followed by the first 80 bits of the node id, as a /128.
- Signature verification is a pure function of (key, message, signature); `verify` memoises positive
  and negative results in a bounded cache (VERIFY_CACHE_ENTRIES), which is sound and saves work when
  the same signed bytes arrive several times.
- The pairwise key of two nodes is derived from static X25519 (the Ed25519 keys converted) and both
  session epochs; it is the same on both ends and changes whenever either end restarts.
- Pure: no file access here (see keyfile.py for the key file).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections import OrderedDict

import nacl.bindings
import nacl.exceptions
import nacl.signing

from x0node.proto.protocol import MESH_ULA_PREFIX, NODE_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

VERIFY_CACHE_ENTRIES = 65536
_ID_PERSON = b"x0node-node-id"
_PAIR_PERSON = b"x0node-pairkey"


def node_id_of(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("public key must be 32 bytes")
    return hashlib.blake2b(public_key, digest_size=NODE_ID_BYTES, person=_ID_PERSON).digest()


@functools.lru_cache(maxsize=8192)
def mesh_address_of(node_id: bytes) -> str:
    """The node's mesh IPv6 address (no prefix length)."""
    net = ipaddress.IPv6Network(MESH_ULA_PREFIX)
    host_bits = 128 - net.prefixlen
    suffix = int.from_bytes(node_id[: host_bits // 8], "big")
    return str(ipaddress.IPv6Address(int(net.network_address) | suffix))


def short_id(node_id: bytes) -> str:
    """First 8 hex digits, for logs."""
    return node_id.hex()[:8]


_verify_cache: OrderedDict[bytes, bool] = OrderedDict()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification with a bounded memo. Never raises on bad input."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    key = hashlib.blake2b(public_key + signature + message, digest_size=32).digest()
    hit = _verify_cache.get(key)
    if hit is not None:
        return hit
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        ok = True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        ok = False
    _verify_cache[key] = ok
    if len(_verify_cache) > VERIFY_CACHE_ENTRIES:
        _verify_cache.popitem(last=False)
    return ok


def curve_public_of(public_key: bytes) -> bytes | None:
    """X25519 public key of an Ed25519 public key, or None if it is not a valid point."""
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError, RuntimeError):
        return None


class Identity:
    """Our own key pair and what derives from it. `certificate` is our trust credential (or None when
    the mesh uses an allow-list of raw keys)."""

    def __init__(self, signing_key: nacl.signing.SigningKey, certificate: object | None = None) -> None:
        self._sk = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)
        self.node_id: bytes = node_id_of(self.public_key)
        self.mesh_address: str = mesh_address_of(self.node_id)
        self.certificate = certificate
        self._curve_sk = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(
            bytes(signing_key) + self.public_key
        )
        self._shared_cache: dict[bytes, bytes] = {}

    @classmethod
    def from_seed(cls, seed: bytes, certificate: object | None = None) -> Identity:
        return cls(nacl.signing.SigningKey(seed), certificate)

    @classmethod
    def generate(cls, seed_source: bytes | None = None) -> Identity:
        """New identity; `seed_source` (32 bytes) makes it deterministic (tests, simulator)."""
        if seed_source is not None:
            return cls.from_seed(seed_source)
        return cls(nacl.signing.SigningKey.generate())

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    @property
    def node_id_hex(self) -> str:
        return self.node_id.hex()

    def with_certificate(self, certificate: object | None) -> Identity:
        return Identity(self._sk, certificate)

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature

    def static_shared(self, peer_public_key: bytes) -> bytes | None:
        """X25519 of our static key (converted from Ed25519) with the peer's, or None if the peer key
        is not a valid point or the result is all zero (a low-order point). Memoised, bounded."""
        shared = self._shared_cache.get(peer_public_key)
        if shared is None:
            peer_curve = curve_public_of(peer_public_key)
            if peer_curve is None:
                return None
            try:
                shared = nacl.bindings.crypto_scalarmult(self._curve_sk, peer_curve)
            except (nacl.exceptions.CryptoError, RuntimeError, ValueError):
                return None
            if len(self._shared_cache) > 1024:
                self._shared_cache.clear()
            self._shared_cache[peer_public_key] = shared
        return shared

    def pairwise_key(self, peer_public_key: bytes, my_epoch: int, peer_epoch: int) -> bytes | None:
        """32-byte keepalive key shared with a peer, or None if the peer key is not a valid point."""
        shared = self.static_shared(peer_public_key)
        if shared is None:
            return None
        peer_id = node_id_of(peer_public_key)
        a = (self.node_id, my_epoch)
        b = (peer_id, peer_epoch)
        lo, hi = (a, b) if a[0] < b[0] else (b, a)
        ctx = lo[0] + lo[1].to_bytes(4, "big") + hi[0] + hi[1].to_bytes(4, "big")
        return hashlib.blake2b(ctx, key=shared, digest_size=32, person=_PAIR_PERSON).digest()
