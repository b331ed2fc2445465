"""The replica: every origin's latest record per object, the digests gossip compares, the CRDT views.

Rules and invariants:
- Mesh-scope records are kept per origin and object; `put` installs a record only if its version is
  higher than the one held for the same (origin, object) — the per-origin register merge that crdt.py
  shows is the CRDT merge. Equal versions are duplicates. Nothing here checks signatures: only
  records that gossip.py has verified reach `put`.
- Bounded: MAX_ORIGINS origins, MAX_RECORDS_PER_ORIGIN per origin, MAX_RECORDS in all, MAX_HOP_RECORDS
  1-hop records; a record over a bound is refused with the bound's reason, nothing is evicted.
- Digests: each record hashes to 128 bits (origin, version, namespace, key); an origin's hash is the
  XOR of its records' hashes and the store digest the XOR of all, so equal record sets give equal
  digests and one differing record changes them. They are maintained incrementally.
- 1-hop records live apart (keyed by origin and object, expiring at a monotonic time), never enter a
  digest and are never persisted.
- The snapshot (persistence) format: magic, our HLC, then per origin its credential and records, then
  a BLAKE2b-256 checksum of everything before it. `decode_snapshot` raises DecodeError on any fault.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from x0node.proto.protocol import NODE_ID_BYTES
from x0node.proto.trust import Credential
from x0node.proto.wire import DecodeError, Reader, Writer
from x0node.state import crdt
from x0node.state.record import RECORD_MAX_BYTES, Kind, Record, Scope, decode_payload, value_text

MAX_ORIGINS = 1024
MAX_RECORDS_PER_ORIGIN = 256
MAX_RECORDS = 16384
MAX_HOP_RECORDS = 4096
SNAPSHOT_MAGIC = b"X0ST\x01"
CHECKSUM_BYTES = 32
MAX_SNAPSHOT_BYTES = len(SNAPSHOT_MAGIC) + 8 + 2 + MAX_ORIGINS * (NODE_ID_BYTES + 200 + 2) + \
    MAX_RECORDS * RECORD_MAX_BYTES + CHECKSUM_BYTES


def record_hash(rec: Record) -> int:
    h = hashlib.blake2b(digest_size=16)
    h.update(rec.origin + rec.version.to_bytes(8, "big") + rec.ns.encode() + b"\x00" + rec.key.encode())
    return int.from_bytes(h.digest(), "big")


@dataclass
class OriginState:
    cred: Credential
    records: dict[tuple[str, str], Record]
    hash: int = 0
    max_version: int = 0

    def recompute_max(self) -> None:
        self.max_version = max((r.version for r in self.records.values()), default=0)


class Store:
    def __init__(self) -> None:
        self.origins: dict[bytes, OriginState] = {}
        self.hop: dict[tuple[bytes, str, str], tuple[Record, float]] = {}
        self.digest_int = 0
        self.count = 0

    # --- mesh records ----------------------------------------------------------------------------------
    def get(self, origin: bytes, oid: tuple[str, str]) -> Record | None:
        st = self.origins.get(origin)
        return None if st is None else st.records.get(oid)

    def put(self, rec: Record, cred: Credential) -> str:
        """"new" (installed), "old" (not newer than what we hold) or a limit reason."""
        st = self.origins.get(rec.origin)
        if st is None:
            if len(self.origins) >= MAX_ORIGINS:
                return "limit_origins"
            st = OriginState(cred, {})
            self.origins[rec.origin] = st
        old = st.records.get(rec.oid)
        if old is not None and old.version >= rec.version:
            return "old"
        if old is None:
            if len(st.records) >= MAX_RECORDS_PER_ORIGIN:
                return self._drop_empty(rec.origin, "limit_origin_records")
            if self.count >= MAX_RECORDS:
                return self._drop_empty(rec.origin, "limit_records")
            self.count += 1
        else:
            self._xor(st, record_hash(old))
        st.records[rec.oid] = rec
        st.cred = cred
        self._xor(st, record_hash(rec))
        st.max_version = max(st.max_version, rec.version)
        return "new"

    def _drop_empty(self, origin: bytes, reason: str) -> str:
        st = self.origins.get(origin)
        if st is not None and not st.records:
            del self.origins[origin]
        return reason

    def _xor(self, st: OriginState, h: int) -> None:
        st.hash ^= h
        self.digest_int ^= h

    def remove(self, origin: bytes, oid: tuple[str, str]) -> Record | None:
        st = self.origins.get(origin)
        if st is None or oid not in st.records:
            return None
        rec = st.records.pop(oid)
        self._xor(st, record_hash(rec))
        self.count -= 1
        st.recompute_max()
        if not st.records:
            del self.origins[origin]
        return rec

    def remove_origin(self, origin: bytes) -> list[Record]:
        st = self.origins.get(origin)
        if st is None:
            return []
        out = list(st.records.values())
        for rec in out:
            self.remove(origin, rec.oid)
        self.origins.pop(origin, None)
        return out

    def expire(self, wall_s: float) -> list[Record]:
        gone = [r for st in self.origins.values() for r in st.records.values()
                if r.ttl_s and (r.expires_wall_s() or 0.0) <= wall_s]
        for r in gone:
            self.remove(r.origin, r.oid)
        return gone

    def records(self, origin: bytes | None = None) -> Iterator[Record]:
        for o, st in self.origins.items():
            if origin is None or o == origin:
                yield from st.records.values()

    def digest(self) -> bytes:
        return self.digest_int.to_bytes(16, "big")

    def origin_hash8(self, origin: bytes) -> bytes:
        st = self.origins.get(origin)
        return (st.hash if st is not None else 0).to_bytes(16, "big")[:8]

    def vector(self) -> list[tuple[bytes, int, bytes]]:
        """(origin, max version, 8-byte record-set hash), sorted by origin."""
        return [(o, st.max_version, st.hash.to_bytes(16, "big")[:8]) for o, st in sorted(self.origins.items())]

    # --- 1-hop records ---------------------------------------------------------------------------------
    def put_hop(self, rec: Record, expires_s: float) -> str:
        k = (rec.origin, rec.ns, rec.key)
        old = self.hop.get(k)
        if old is not None and old[0].version >= rec.version:
            return "old"
        if old is None and len(self.hop) >= MAX_HOP_RECORDS:
            return "limit_hop_records"
        self.hop[k] = (rec, expires_s)
        return "new"

    def expire_hop(self, now: float) -> int:
        gone = [k for k, (_, exp) in self.hop.items() if exp <= now]
        for k in gone:
            del self.hop[k]
        return len(gone)

    # --- views -------------------------------------------------------------------------------------------
    def objects(self) -> dict[str, dict[str, Any]]:
        """Every mesh object folded into its CRDT, as {namespace: {key: value}}."""
        by: dict[tuple[str, str], list[Record]] = {}
        for r in self.records():
            by.setdefault(r.oid, []).append(r)
        out: dict[str, dict[str, Any]] = {}
        for (ns, key), recs in sorted(by.items()):
            view = fold(recs)
            if view is not None:
                out.setdefault(ns, {})[key] = view
        return out

    def entry(self, ns: str, key: str) -> dict[str, Any] | None:
        recs = [st.records[(ns, key)] for st in self.origins.values() if (ns, key) in st.records]
        return fold(recs) if recs else None

    def lww_winner(self, ns: str, key: str) -> Record | None:
        recs = [st.records[(ns, key)] for st in self.origins.values() if (ns, key) in st.records]
        best: Record | None = None
        for r in recs:
            if best is None or (r.version, r.origin, r.payload) > (best.version, best.origin, best.payload):
                best = r
        return best

    def hop_view(self, now: float) -> list[dict[str, Any]]:
        out = []
        for (origin, ns, key), (rec, exp) in sorted(self.hop.items()):
            value = decode_payload(rec.kind, rec.payload)
            out.append({"origin": origin.hex(), "ns": ns, "key": key, "value": value_text(ns, value),
                        "expires_in_s": round(max(0.0, exp - now), 3)})
        return out

    # --- persistence ---------------------------------------------------------------------------------------
    def encode_snapshot(self, hlc: int) -> bytes:
        w = Writer().raw(SNAPSHOT_MAGIC).u64(hlc).u16(len(self.origins))
        for origin, st in sorted(self.origins.items()):
            w.raw(origin, NODE_ID_BYTES).raw(st.cred.encode()).u16(len(st.records))
            for rec in sorted(st.records.values(), key=lambda r: r.version):
                w.raw(rec.encode_tail())
        body = w.bytes()
        return body + hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest()


def decode_snapshot(data: bytes) -> tuple[int, list[tuple[Credential, list[Record]]]]:
    """(hlc, [(credential, records)]) of a snapshot; DecodeError if it is damaged in any way."""
    if len(data) < len(SNAPSHOT_MAGIC) + CHECKSUM_BYTES:
        raise DecodeError("truncated")
    body, check = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if hashlib.blake2b(body, digest_size=CHECKSUM_BYTES).digest() != check:
        raise DecodeError("checksum")
    r = Reader(body, MAX_SNAPSHOT_BYTES)
    if r.raw(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
        raise DecodeError("magic")
    hlc = r.u64()
    n = r.u16()
    if n > MAX_ORIGINS:
        raise DecodeError("too many origins")
    out = []
    for _ in range(n):
        origin = r.raw(NODE_ID_BYTES)
        cred = Credential.decode_from(r)
        if cred.node_id != origin:
            raise DecodeError("credential of another node")
        m = r.u16()
        if m > MAX_RECORDS_PER_ORIGIN:
            raise DecodeError("too many records")
        out.append((cred, [Record.decode_tail(r, origin) for _ in range(m)]))
    r.end()
    return hlc, out


def fold(recs: list[Record]) -> dict[str, Any] | None:
    """The CRDT value of one object from its origins' records, with provenance for LWW values."""
    kind = recs[0].kind
    if kind == Kind.GCOUNTER:
        g = crdt.GCounter({r.origin: decode_payload(kind, r.payload) for r in recs})
        return {"type": "g-counter", "value": g.value, "origins": len(recs)}
    if kind == Kind.PNCOUNTER:
        pn = crdt.PNCounter()
        for r in recs:
            p, n = decode_payload(kind, r.payload)
            pn = pn.merge(crdt.PNCounter(crdt.GCounter({r.origin: p}), crdt.GCounter({r.origin: n})))
        return {"type": "pn-counter", "value": pn.value, "origins": len(recs)}
    if kind == Kind.LWW:
        reg = crdt.LWWRegister()
        for r in recs:
            reg = reg.merge(crdt.LWWRegister((r.version, r.origin), r.payload))
        value = decode_payload(kind, reg.value)
        if value is None:
            return None
        ns = recs[0].ns
        return {"type": "lww", "value": value_text(ns, value), "origin": reg.stamp[1].hex(),
                "written_at": crdt.hlc_wall_s(reg.stamp[0]), "version": reg.stamp[0]}
    s = crdt.ORSet()
    for r in recs:
        obs = decode_payload(kind, r.payload)
        s.elems.setdefault(r.key, {})[r.origin] = (r.version, obs)
    if not s.contains(recs[0].key):
        return None
    return {"type": "or-set", "value": True}


def is_mesh(rec: Record) -> bool:
    return rec.scope == Scope.MESH
