"""Offline attestation: a mesh trust anchor signs node certificates and revocation lists.

Rules:
- A node is accepted only if its credential is (a) a certificate signed by one of our trust anchors,
  not expired (when a wall clock is known) and not revoked, or (b) a raw public key on the explicit
  allow-list and not revoked.
- A revocation list is signed by a trust anchor and replaces the current one only if its serial is
  newer; it is bounded by MAX_REVOKED_NODES.
- Every signature has its own domain-separation prefix so that no signed object can be replayed as
  another kind.
- A certificate grants its node the right to announce the prefixes it lists (at most
  MAX_CERT_PREFIXES, IPv6 the mesh can route) and, with the gateway role, the default route: see
  ownership.py for how grants decide who may announce what.
- Certificate encoding (version 2): role u8, not_after u64 (unix seconds, 0 = never), public key 32,
  n u8, n x prefix (prefixes.py), signature 64 over "x0node-cert-v2\\0" + everything before it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import nacl.signing

from x0node.proto.identity import node_id_of, verify
from x0node.proto.prefixes import normalise, read_prefix, write_prefix
from x0node.proto.protocol import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from x0node.proto.wire import DecodeError, Reader, Writer

MAX_TRUST_ANCHORS = 4
MAX_ALLOWED_KEYS = 4096
MAX_REVOKED_NODES = 4096
MAX_CRL_BYTES = 16 + MAX_REVOKED_NODES * 16 + SIGNATURE_BYTES
MAX_CERT_PREFIXES = 8
"""Prefixes one certificate may grant (as many as one LSA announces)."""
_CERT_DOMAIN = b"x0node-cert-v2\x00"
_CRL_DOMAIN = b"x0node-crl-v1\x00"

CRED_RAW_KEY = 0
CRED_CERTIFICATE = 1


class Role(enum.IntEnum):
    NODE = 1
    GATEWAY = 2
    ADMIN = 3


def _cert_body(role: int, not_after: int, public_key: bytes, prefixes: tuple[str, ...]) -> bytes:
    w = Writer().u8(role).u64(not_after).raw(public_key, PUBLIC_KEY_BYTES).u8(len(prefixes))
    for p in prefixes:
        write_prefix(w, p)
    return w.bytes()


@dataclass(frozen=True)
class Certificate:
    role: int
    not_after: int
    public_key: bytes
    signature: bytes
    prefixes: tuple[str, ...] = ()  # granted to the node (normalised IPv6 prefixes)

    def body(self) -> bytes:
        return _cert_body(self.role, self.not_after, self.public_key, self.prefixes)

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode_from(cls, r: Reader) -> Certificate:
        role = r.u8()
        if role not in Role._value2member_map_:
            raise DecodeError("unknown role")
        not_after = r.u64()
        pk = r.raw(PUBLIC_KEY_BYTES)
        prefixes = tuple(read_prefix(r) for _ in range(r.count(MAX_CERT_PREFIXES)))
        if len(set(prefixes)) != len(prefixes):
            raise DecodeError("duplicate prefix")
        sig = r.raw(SIGNATURE_BYTES)
        return cls(role, not_after, pk, sig, prefixes)

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        r = Reader(data)
        c = cls.decode_from(r)
        r.end()
        return c

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)


@dataclass(frozen=True)
class Credential:
    """What a signed message carries to name its signer: a raw key or a certificate."""

    public_key: bytes
    certificate: Certificate | None = None

    def encode(self) -> bytes:
        if self.certificate is None:
            return bytes((CRED_RAW_KEY,)) + self.public_key
        return bytes((CRED_CERTIFICATE,)) + self.certificate.encode()

    @classmethod
    def decode_from(cls, r: Reader) -> Credential:
        kind = r.u8()
        if kind == CRED_RAW_KEY:
            return cls(r.raw(PUBLIC_KEY_BYTES), None)
        if kind == CRED_CERTIFICATE:
            cert = Certificate.decode_from(r)
            return cls(cert.public_key, cert)
        raise DecodeError("unknown credential kind")

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)


@dataclass(frozen=True)
class RevocationList:
    serial: int
    issued_at: int
    revoked: tuple[bytes, ...]
    signature: bytes

    def body(self) -> bytes:
        w = Writer().u32(self.serial).u64(self.issued_at).u16(len(self.revoked))
        for nid in self.revoked:
            w.raw(nid, 16)
        return w.bytes()

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> RevocationList:
        r = Reader(data, MAX_CRL_BYTES)
        serial = r.u32()
        issued = r.u64()
        n = r.u16()
        if n > MAX_REVOKED_NODES:
            raise DecodeError("too many revoked nodes")
        ids = tuple(r.raw(16) for _ in range(n))
        sig = r.raw(SIGNATURE_BYTES)
        r.end()
        return cls(serial, issued, ids, sig)


class TrustAnchor:
    """The mesh's certificate authority key (kept offline; used by `x0node keys`)."""

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._sk = signing_key
        self.public_key = bytes(signing_key.verify_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> TrustAnchor:
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    def certify(
        self, public_key: bytes, role: int = Role.NODE, not_after: int = 0, prefixes: tuple[str, ...] = ()
    ) -> Certificate:
        """A certificate for `public_key`; `prefixes` are granted to the node (ValueError for more than
        MAX_CERT_PREFIXES, duplicates, or space the mesh never routes)."""
        grant = tuple(normalise(p) for p in prefixes)
        if len(grant) > MAX_CERT_PREFIXES or len(set(grant)) != len(grant):
            raise ValueError(f"at most {MAX_CERT_PREFIXES} different prefixes")
        body = _cert_body(int(role), not_after, public_key, grant)
        sig = self._sk.sign(_CERT_DOMAIN + body).signature
        return Certificate(int(role), not_after, public_key, sig, grant)

    def revoke(self, node_ids: list[bytes], serial: int, issued_at: int) -> RevocationList:
        if len(node_ids) > MAX_REVOKED_NODES:
            raise ValueError("too many node ids")
        unsigned = RevocationList(serial, issued_at, tuple(node_ids), b"")
        sig = self._sk.sign(_CRL_DOMAIN + unsigned.body()).signature
        return RevocationList(serial, issued_at, tuple(node_ids), sig)


@dataclass
class TrustStore:
    """Which nodes we accept. Reasons returned by `check` are drop-counter labels."""

    anchors: list[bytes] = field(default_factory=list)
    allowed_keys: set[bytes] = field(default_factory=set)
    revoked: frozenset[bytes] = frozenset()
    crl_serial: int | None = None

    def __post_init__(self) -> None:
        self._valid: dict[Certificate, bool] = {}  # memo of anchor-signature checks (pure)
        if len(self.anchors) > MAX_TRUST_ANCHORS:
            raise ValueError(f"at most {MAX_TRUST_ANCHORS} trust anchors")
        if len(self.allowed_keys) > MAX_ALLOWED_KEYS:
            raise ValueError(f"at most {MAX_ALLOWED_KEYS} allowed keys")

    def certificate_valid(self, cert: Certificate) -> bool:
        hit = self._valid.get(cert)
        if hit is not None:
            return hit
        msg = _CERT_DOMAIN + cert.body()
        ok = any(verify(a, msg, cert.signature) for a in self.anchors)
        if len(self._valid) >= MAX_ALLOWED_KEYS:
            self._valid.clear()
        self._valid[cert] = ok
        return ok

    def check(self, cred: Credential, wall_now: float | None = None) -> str | None:
        """None if accepted, else the reason: "uncertified", "expired" or "revoked"."""
        if cred.node_id in self.revoked:
            return "revoked"
        if cred.certificate is None:
            return None if cred.public_key in self.allowed_keys else "uncertified"
        if not self.certificate_valid(cred.certificate):
            return "uncertified"
        na = cred.certificate.not_after
        if na and wall_now is not None and wall_now > na:
            return "expired"
        return None

    def is_revoked(self, node_id: bytes) -> bool:
        return node_id in self.revoked

    def install_revocations(self, crl: RevocationList) -> str | None:
        """Install a newer signed revocation list. None if installed, else why not: "bad_signature"
        (no trust anchor signed it) or "not_newer" (its serial is not above the one in force)."""
        msg = _CRL_DOMAIN + crl.body()
        if not any(verify(a, msg, crl.signature) for a in self.anchors):
            return "bad_signature"
        if self.crl_serial is not None and crl.serial <= self.crl_serial:
            return "not_newer"
        self.revoked = frozenset(crl.revoked)
        self.crl_serial = crl.serial
        return None
