"""The signed record: one origin's current contribution to one replicated object.

Rules:
- A record names its object by (namespace, key) and carries the origin's node id, a version (the
  origin's HLC, strictly increasing over all of that origin's records), a scope, a CRDT kind, a TTL
  and a kind-specific payload, signed by the origin's Ed25519 key over a domain-separated encoding.
  A later record of the same origin for the same object replaces the earlier one (crdt.py explains
  why that is the CRDT merge).
- The kind of a namespace is fixed by `kind_of` (exact names, then prefixes); a record whose kind does
  not match its namespace is refused, so no two origins can disagree about an object's type.
- Every size is bounded: NS_MAX_BYTES, KEY_MAX_BYTES, VALUE_MAX_BYTES, OR_OBSERVED_MAX; a record always
  fits one datagram with its section header. TTL 0 means "no expiry" and is refused for the 1-hop
  scope; a mesh record expires at its HLC wall time + TTL, a 1-hop record TTL after it arrived.
- Decoding goes through `x0node.proto.wire.Reader`: any violation raises `DecodeError`.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from x0node.proto.protocol import NODE_ID_BYTES, SIGNATURE_BYTES
from x0node.proto.wire import DecodeError, Reader, Writer
from x0node.state import crdt

NS_MAX_BYTES = 32
KEY_MAX_BYTES = 96
VALUE_MAX_BYTES = 640
"""Largest LWW value (a CRL of up to 35 revoked nodes, a setting, a small JSON document)."""
OR_OBSERVED_MAX = 24
"""Most adds one OR-Set remove can cover (adds by distinct origins of one element)."""
PAYLOAD_MAX_BYTES = VALUE_MAX_BYTES + 1
"""An LWW flag and value, or an OR-Set remove (2 + OR_OBSERVED_MAX * 24 bytes), whichever is larger."""
TTL_MAX_S = 30 * 24 * 3600
HOP_TTL_MAX_S = 3600
RECORD_MAX_BYTES = 8 + 1 + 1 + 4 + 1 + NS_MAX_BYTES + 1 + KEY_MAX_BYTES + 2 + PAYLOAD_MAX_BYTES + SIGNATURE_BYTES
_DOMAIN = b"x0node-state-record-v1\x00"


class Scope(enum.IntEnum):
    HOP = 1
    """Neighbours only: pushed to the neighbours, never forwarded, never in digests."""
    MESH = 2
    """Every node: gossiped hop by hop."""


class Kind(enum.IntEnum):
    GCOUNTER = 1
    PNCOUNTER = 2
    LWW = 3
    ORSET = 4


# Exact namespaces, then prefixes; anything else is refused ("bad_namespace").
NAMESPACES: dict[str, Kind] = {"settings": Kind.LWW, "crl": Kind.LWW, "kv": Kind.LWW, "hop": Kind.LWW,
                               "anomaly": Kind.LWW, "node": Kind.LWW, "fed": Kind.LWW}
NAMESPACE_PREFIXES: dict[str, Kind] = {"g.": Kind.GCOUNTER, "pn.": Kind.PNCOUNTER, "set.": Kind.ORSET,
                                       "lww.": Kind.LWW}


def kind_of(ns: str) -> Kind | None:
    if ns in NAMESPACES:
        return NAMESPACES[ns]
    for prefix, kind in NAMESPACE_PREFIXES.items():
        if ns.startswith(prefix) and len(ns) > len(prefix):
            return kind
    return None


@dataclass(frozen=True)
class Record:
    origin: bytes
    version: int
    scope: int
    kind: int
    ttl_s: int
    ns: str
    key: str
    payload: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        return (
            Writer().raw(self.origin, NODE_ID_BYTES).u64(self.version).u8(self.scope).u8(self.kind)
            .u32(self.ttl_s).raw(_str8(self.ns)).raw(_str8(self.key)).u16(len(self.payload)).raw(self.payload)
            .bytes()
        )

    def signed_message(self) -> bytes:
        return _DOMAIN + self.body()

    @property
    def oid(self) -> tuple[str, str]:
        return (self.ns, self.key)

    def expires_wall_s(self) -> float | None:
        return None if self.ttl_s == 0 else crdt.hlc_wall_s(self.version) + self.ttl_s

    # --- wire: the origin is written by the caller (once per section) -----------------------------------
    def encode_tail(self) -> bytes:
        return self.body()[NODE_ID_BYTES:] + self.signature

    @classmethod
    def decode_tail(cls, r: Reader, origin: bytes) -> Record:
        version = r.u64()
        scope = r.u8()
        kind = r.u8()
        ttl = r.u32()
        ns = _read_str8(r, NS_MAX_BYTES)
        key = _read_str8(r, KEY_MAX_BYTES)
        n = r.u16()
        if n > PAYLOAD_MAX_BYTES:
            raise DecodeError("payload too large")
        payload = r.raw(n)
        sig = r.raw(SIGNATURE_BYTES)
        rec = cls(origin, version, scope, kind, ttl, ns, key, payload, sig)
        problem = rec.problem()
        if problem is not None:
            raise DecodeError(problem)
        return rec

    def problem(self) -> str | None:
        """Why this record is malformed (a short reason), or None."""
        if len(self.origin) != NODE_ID_BYTES or self.version <= 0:
            return "bad_header"
        if self.scope not in Scope._value2member_map_:
            return "bad_scope"
        if kind_of(self.ns) != self.kind:
            return "bad_namespace"
        if self.ttl_s > (HOP_TTL_MAX_S if self.scope == Scope.HOP else TTL_MAX_S):
            return "bad_ttl"
        if self.scope == Scope.HOP and self.ttl_s == 0:
            return "bad_ttl"
        if not self.key:
            return "bad_key"
        try:
            decode_payload(self.kind, self.payload)
        except DecodeError:
            return "bad_payload"
        return None


def _str8(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError("string too long")
    return bytes((len(raw),)) + raw


def _read_str8(r: Reader, limit: int) -> str:
    n = r.u8()
    if n > limit:
        raise DecodeError("string too long")
    try:
        text = r.raw(n).decode()
    except UnicodeDecodeError:
        raise DecodeError("not UTF-8") from None
    if any(c < " " or c == "\x7f" for c in text):
        raise DecodeError("control character")
    return text


# --- payloads -------------------------------------------------------------------------------------------
_U64 = struct.Struct(">Q")


def encode_gcounter(count: int) -> bytes:
    return _U64.pack(count)


def encode_pncounter(p: int, n: int) -> bytes:
    return _U64.pack(p) + _U64.pack(n)


def encode_lww(value: bytes | None) -> bytes:
    if value is None:
        return b"\x00"
    if len(value) > VALUE_MAX_BYTES:
        raise ValueError(f"value larger than {VALUE_MAX_BYTES} bytes")
    return b"\x01" + value


def encode_or_add() -> bytes:
    return b"\x01"


def encode_or_remove(observed: tuple[tuple[bytes, int], ...]) -> bytes:
    if len(observed) > OR_OBSERVED_MAX:
        raise ValueError(f"a remove covers at most {OR_OBSERVED_MAX} adds")
    w = Writer().u8(0).u8(len(observed))
    for o, t in observed:
        w.raw(o, NODE_ID_BYTES).u64(t)
    return w.bytes()


def decode_payload(kind: int, payload: bytes) -> Any:
    """GCOUNTER -> int; PNCOUNTER -> (p, n); LWW -> bytes | None; ORSET -> observed tuple | None (add)."""
    r = Reader(payload, PAYLOAD_MAX_BYTES)
    if kind == Kind.GCOUNTER:
        out: Any = r.u64()
    elif kind == Kind.PNCOUNTER:
        out = (r.u64(), r.u64())
    elif kind == Kind.LWW:
        flag = r.u8()
        if flag == 0:
            out = None
        elif flag == 1:
            out = r.raw(r.remaining)
            if len(out) > VALUE_MAX_BYTES:
                raise DecodeError("value too large")
        else:
            raise DecodeError("bad LWW flag")
    elif kind == Kind.ORSET:
        flag = r.u8()
        if flag == 1:
            out = None
        elif flag == 0:
            n = r.count(OR_OBSERVED_MAX)
            out = tuple((r.raw(NODE_ID_BYTES), r.u64()) for _ in range(n))
            if list(out) != sorted(out):
                raise DecodeError("observed adds not sorted")
        else:
            raise DecodeError("bad OR-Set flag")
    else:
        raise DecodeError("unknown kind")
    r.end()
    return out


def value_text(ns: str, value: bytes | None) -> Any:
    """An LWW value as shown to people: JSON when it parses, else hex."""
    if value is None:
        return None
    if ns != "crl":
        try:
            return json.loads(value.decode())
        except (UnicodeDecodeError, ValueError):
            pass
    return {"hex": value.hex()}
