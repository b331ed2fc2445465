"""Coordination datagrams: signed by their sender, checked against the TrustStore and a replay window
before anything in them is read into state.

Layout (x0node.proto.wire Reader/Writer):
  magic "X0C" | version u8 | type u8 | epoch u32 | seq u32 | credential | header u16+JSON |
  records u8 + (u16 + record)* | Ed25519 signature (64) over DOMAIN + everything before it

Rules and invariants:
- The signature covers the whole datagram; the sender's credential must pass `TrustStore.check`
  (uncertified, expired and revoked senders are refused) and is checked before the signature.
- (epoch, seq) is accepted once per sender and epoch (proto.seqno.ReplayWindow); a sender picks a random
  epoch at start. At most MAX_PEERS senders' windows are kept (least recently used forgotten; their
  next datagram then opens a fresh window, which is safe because an answer is only accepted for a
  request nonce we issued and is still pending, and every state change rides a signed record).
- The header is a small JSON object (HEADER_MAX_BYTES), the records are opaque bytes validated by their
  own decoder (kv.Record). A datagram never exceeds MAX_DATAGRAM_BYTES (the mesh's 1232).
- Decoding errors raise `DecodeError`; `Codec.open` returns (sender id, type, header, records) or the
  drop reason.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import MAX_DATAGRAM_BYTES, SIGNATURE_BYTES
from x0node.proto.seqno import ReplayWindow
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError, Reader, Writer

MAGIC = b"X0C"
VERSION = 1
HEADER_MAX_BYTES = 512
RECORDS_MAX = 4
MAX_PEERS = 1024
_DOMAIN = b"x0node-coord-v1\x00"


class Type(enum.IntEnum):
    PING = 1
    PONG = 2
    PROPOSE = 3
    RESULT = 4
    SECRET = 5
    KV_PUT = 6
    KV_ACK = 7
    KV_GET = 8
    KV_VALUE = 9


@dataclass(frozen=True)
class Datagram:
    sender: bytes  # node id
    credential: Credential
    type: Type
    header: dict[str, Any]
    records: tuple[bytes, ...]


class Codec:
    def __init__(self, identity: Identity, trust: TrustStore, epoch: int | None = None) -> None:
        self.identity = identity
        self.trust = trust
        self.epoch = secrets.randbits(32) if epoch is None else epoch
        self.seq = 0
        self._cred = Credential(identity.public_key, identity.certificate).encode()  # type: ignore[arg-type]
        self._windows: OrderedDict[tuple[bytes, int], ReplayWindow] = OrderedDict()

    def seal(self, kind: Type, header: dict[str, Any], records: tuple[bytes, ...] = ()) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        hdr = json.dumps(header, separators=(",", ":")).encode()
        if len(hdr) > HEADER_MAX_BYTES or len(records) > RECORDS_MAX:
            raise ValueError("coord datagram header or record count over its limit")
        w = Writer().raw(MAGIC).u8(VERSION).u8(int(kind)).u32(self.epoch).u32(self.seq).raw(self._cred)
        w.u16(len(hdr)).raw(hdr).u8(len(records))
        for r in records:
            w.u16(len(r)).raw(r)
        body = w.bytes()
        out = body + self.identity.sign(_DOMAIN + body)
        if len(out) > MAX_DATAGRAM_BYTES:
            raise ValueError(f"coord datagram of {len(out)} bytes over {MAX_DATAGRAM_BYTES}")
        return out

    def open(self, data: bytes, wall_now: float | None = None) -> Datagram | str:
        """The verified datagram, or the drop reason (a label for the drop counter)."""
        try:
            r = Reader(data, MAX_DATAGRAM_BYTES)
            if r.raw(3) != MAGIC or r.u8() != VERSION:
                return "bad_magic"
            try:
                kind = Type(r.u8())
            except ValueError:
                return "unknown_type"
            epoch, seq = r.u32(), r.u32()
            cred = Credential.decode_from(r)
            hdr_raw = r.raw(r.u16())
            if len(hdr_raw) > HEADER_MAX_BYTES:
                return "malformed"
            records = tuple(r.raw(r.u16()) for _ in range(r.count(RECORDS_MAX)))
            body_end = r.pos
            sig = r.raw(SIGNATURE_BYTES)
            r.end()
        except DecodeError:
            return "malformed"
        if cred.public_key == self.identity.public_key:
            return "own"
        reason = self.trust.check(cred, wall_now)
        if reason is not None:
            return reason
        if not verify(cred.public_key, _DOMAIN + data[:body_end], sig):
            return "bad_signature"
        key = (cred.node_id, epoch)
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = ReplayWindow(width=256)
        self._windows.move_to_end(key)
        while len(self._windows) > MAX_PEERS:
            self._windows.popitem(last=False)
        if not win.accept(seq):
            return "replay"
        try:
            header = json.loads(hdr_raw)
        except (ValueError, UnicodeDecodeError):
            return "malformed"
        if not isinstance(header, dict):
            return "malformed"
        return Datagram(cred.node_id, cred, kind, header, records)
