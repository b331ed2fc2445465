"""The KV record: one signed write (or delete) of one key, and the last-writer-wins order.

Rules and invariants:
- A record is (key, value or tombstone, HLC version, writer's credential) and the writer's Ed25519
  signature over a domain-separated encoding; replicas and readers verify it against the writer's
  credential and the TrustStore, so no replica, relay or stand-in can forge or alter a write.
- Order: (version, writer id, value) — a total order, so every replica picks the same winner (LWW with a
  hybrid logical clock: x0node.state.crdt.Hlc, Kulkarni et al. 2014). A delete is a record with a
  tombstone and wins like a write.
- Sizes: KEY_MAX_BYTES, VALUE_MAX_BYTES; a record always fits a coordination datagram with its header.
  Keys are printable ASCII in a known namespace (`dns/`, `client/`, `app/`). Decoding raises DecodeError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import SIGNATURE_BYTES
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError, Reader, Writer

KEY_MAX_BYTES = 96
VALUE_MAX_BYTES = 384
KEY_RE = re.compile(r"^(dns|client|app)/[A-Za-z0-9_.:@-]{1,88}$")
RECORD_MAX_BYTES = 1 + KEY_MAX_BYTES + 1 + 2 + VALUE_MAX_BYTES + 8 + 1 + 1 + 8 + 32 + 64 + SIGNATURE_BYTES
_DOMAIN = b"x0node-kv-record-v1\x00"
FLAG_TOMBSTONE = 1


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError("key: expected dns/NAME, client/ID or app/NAME (letters, digits, _ . : @ -; at most 96)")
    return key


@dataclass(frozen=True)
class Record:
    key: str
    value: bytes | None  # None: deleted
    version: int
    credential: Credential
    signature: bytes

    @property
    def writer(self) -> bytes:
        return self.credential.node_id

    def order(self) -> tuple[int, bytes, bytes]:
        return (self.version, self.writer, b"" if self.value is None else b"\x01" + self.value)

    def newer_than(self, other: Record | None) -> bool:
        return other is None or self.order() > other.order()

    def body(self) -> bytes:
        k = self.key.encode()
        w = Writer().u8(len(k)).raw(k).u8(FLAG_TOMBSTONE if self.value is None else 0)
        v = self.value or b""
        return w.u16(len(v)).raw(v).u64(self.version).raw(self.credential.encode()).bytes()

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def make(cls, identity: Identity, key: str, value: bytes | None, version: int) -> Record:
        check_key(key)
        if value is not None and len(value) > VALUE_MAX_BYTES:
            raise ValueError(f"value: at most {VALUE_MAX_BYTES} bytes")
        cred = Credential(identity.public_key, identity.certificate)  # type: ignore[arg-type]
        unsigned = cls(key, value, version, cred, b"")
        return cls(key, value, version, cred, identity.sign(_DOMAIN + unsigned.body()))

    @classmethod
    def decode(cls, data: bytes) -> Record:
        r = Reader(data, RECORD_MAX_BYTES)
        n = r.u8()
        if n > KEY_MAX_BYTES:
            raise DecodeError("key too long")
        try:
            key = r.raw(n).decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("key not ascii") from None
        if not KEY_RE.match(key):
            raise DecodeError("bad key")
        flags = r.u8()
        if flags & ~FLAG_TOMBSTONE:
            raise DecodeError("unknown flags")
        vlen = r.u16()
        if vlen > VALUE_MAX_BYTES:
            raise DecodeError("value too long")
        value = r.raw(vlen)
        version = r.u64()
        cred = Credential.decode_from(r)
        sig = r.raw(SIGNATURE_BYTES)
        r.end()
        if flags & FLAG_TOMBSTONE and vlen:
            raise DecodeError("tombstone with a value")
        return cls(key, None if flags & FLAG_TOMBSTONE else value, version, cred, sig)

    def verify(self, trust: TrustStore, wall_now: float | None = None) -> str | None:
        """None if the writer is trusted and the signature holds, else the drop reason."""
        reason = trust.check(self.credential, wall_now)
        if reason is not None:
            return reason
        if not verify(self.credential.public_key, _DOMAIN + self.body(), self.signature):
            return "bad_record_signature"
        return None
