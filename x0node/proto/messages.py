"""Routing messages and their wire encoding.

Every datagram starts with version (u8, WIRE_VERSION) and type (u8). Unknown versions and types are
rejected; there are no optional fields, so trailing bytes reject the message too.

| type | name      | authenticated by                         | changes state |
|------|-----------|------------------------------------------|---------------|
| 1    | HELLO     | Ed25519 of the sender (credential inside)| neighbours    |
| 2    | KEEPALIVE | 12-byte keyed BLAKE2b per receiver       | liveness, RTT, loss |
| 3    | LSA       | Ed25519 of the origin (credential inside)| LSDB          |
| 4    | ACK       | 12-byte keyed BLAKE2b, pairwise session key | flooding |
| 5    | WITHDRAW  | Ed25519 of the origin (key known from its LSA) | LSDB     |
| 6    | PROBE     | 12-byte keyed BLAKE2b, pairwise session key | (receiver measures a train) |
| 7    | PROBE_REPORT | 12-byte keyed BLAKE2b, pairwise session key | throughput estimate |

Rules:
- Signed messages: signature (64 bytes) last, over b"x0node-msg-v1\\0" + everything before it.
- Decoding checks structure and bounds only (plus: no duplicate neighbour ids in a HELLO or LSA); `decode` never verifies signatures (the receiver does that
  with the key it trusts before anything touches state). `decode` raises only DecodeError.
- Keepalive entry MAC input: b"x0node-ka-v2\\0" + sender id + receiver id + the full 32-bit control
  sequence number (the header carries its low 16 bits) + the 9 header bytes + the entry's echo fields;
  so an entry cannot be replayed towards another receiver, reflected back, or replayed once the 16-bit
  number has wrapped.
- ACK MAC input: b"x0node-ack-v1\\0" + sender id + receiver id + the ACK's bytes before the MAC, keyed
  with the pairwise key of the current session: an ACK counts only from the neighbour's current
  session (one captured in an earlier session no longer verifies), and costs no signature.
- PROBE and PROBE_REPORT MACs: the same construction (domains b"x0node-probe-v1\\0" and
  b"x0node-probe-report-v1\\0") over all bytes before the MAC; a probe's padding must be zero bytes.
- An LSA link's throughput is u32 kbit/s, 0 = unknown, at most MAX_LINK_THROUGHPUT_KBPS.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from x0node.proto.identity import Identity, node_id_of
from x0node.proto.prefixes import read_prefix, write_prefix
from x0node.proto.protocol import (
    MAC_BYTES,
    MAX_ACK_ENTRIES,
    MAX_DATAGRAM_BYTES,
    MAX_HELLO_NEIGHBOURS,
    MAX_LINK_THROUGHPUT_KBPS,
    MAX_LSA_NEIGHBOURS,
    MAX_LSA_PREFIXES,
    MAX_PROBE_TRAIN_PACKETS,
    NODE_ID_BYTES,
    SIGNATURE_BYTES,
    WIRE_VERSION,
)
from x0node.proto.quality import Quality
from x0node.proto.trust import Credential
from x0node.proto.wire import DecodeError, Reader, Writer

T_HELLO = 1
T_KEEPALIVE = 2
T_LSA = 3
T_ACK = 4
T_WITHDRAW = 5
T_PROBE = 6
T_PROBE_REPORT = 7
MESSAGE_TYPES = {
    T_HELLO: "hello",
    T_KEEPALIVE: "keepalive",
    T_LSA: "lsa",
    T_ACK: "ack",
    T_WITHDRAW: "withdraw",
    T_PROBE: "probe",
    T_PROBE_REPORT: "probe_report",
}

_SIG_DOMAIN = b"x0node-msg-v1\x00"
_KA_DOMAIN = b"x0node-ka-v2\x00"
_ACK_DOMAIN = b"x0node-ack-v1\x00"
_PROBE_DOMAIN = b"x0node-probe-v1\x00"
_REPORT_DOMAIN = b"x0node-probe-report-v1\x00"
PROBE_HEADER_BYTES = 8  # version, type, train u32, index u8, count u8
PROBE_MIN_BYTES = PROBE_HEADER_BYTES + MAC_BYTES
KEEPALIVE_HEADER_BYTES = 9
KEEPALIVE_ENTRY_BYTES = 4 + 2 + MAC_BYTES


def _header(t: int) -> Writer:
    return Writer().u8(WIRE_VERSION).u8(t)


# ------------------------------------------------------------------------------------------ HELLO
@dataclass(frozen=True)
class HelloNeighbour:
    node_id: bytes
    echo_ts_ms: int
    echo_delay_ms: int


@dataclass(frozen=True)
class Hello:
    credential: Credential
    seq: int
    epoch: int
    ts_ms: int
    interval_ms: int
    neighbours: tuple[HelloNeighbour, ...]
    signature: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        w = _header(T_HELLO).raw(self.credential.encode())
        w.u32(self.seq).u32(self.epoch).u32(self.ts_ms).u16(self.interval_ms).u8(len(self.neighbours))
        for n in self.neighbours:
            w.raw(n.node_id, NODE_ID_BYTES).u32(n.echo_ts_ms).u16(n.echo_delay_ms)
        return w.bytes()

    @property
    def sender(self) -> bytes:
        return self.credential.node_id


# -------------------------------------------------------------------------------------- KEEPALIVE
@dataclass(frozen=True)
class KeepaliveEntry:
    echo_ts_ms: int
    echo_delay_ms: int
    mac: bytes


@dataclass(frozen=True)
class Keepalive:
    seq: int  # u16: the low 16 bits of the sender interface's control sequence number
    ts_ms: int
    entries: tuple[KeepaliveEntry, ...]

    def header(self) -> bytes:
        return keepalive_header(self.seq, self.ts_ms, len(self.entries))

    def encode(self) -> bytes:
        w = Writer().raw(self.header())
        for e in self.entries:
            w.u32(e.echo_ts_ms).u16(e.echo_delay_ms).raw(e.mac, MAC_BYTES)
        return w.bytes()


def keepalive_header(seq: int, ts_ms: int, count: int) -> bytes:
    return _header(T_KEEPALIVE).u16(seq).u32(ts_ms).u8(count).bytes()


def keepalive_mac_ok(
    key: bytes, sender: bytes, receiver: bytes, seq: int, header: bytes, entry: KeepaliveEntry
) -> bool:
    """Does the entry's MAC verify for the full sequence number `seq`? (constant-time comparison)"""
    expected = keepalive_mac(key, sender, receiver, seq, header, entry.echo_ts_ms, entry.echo_delay_ms)
    return hmac.compare_digest(expected, entry.mac)


def keepalive_mac(
    key: bytes, sender: bytes, receiver: bytes, seq: int, header: bytes, echo_ts_ms: int, echo_delay_ms: int
) -> bytes:
    """MAC of one keepalive entry; `seq` is the full 32-bit control sequence number."""
    data = (
        _KA_DOMAIN
        + sender
        + receiver
        + seq.to_bytes(4, "big")
        + header
        + echo_ts_ms.to_bytes(4, "big")
        + echo_delay_ms.to_bytes(2, "big")
    )
    return hashlib.blake2b(data, key=key, digest_size=MAC_BYTES).digest()


# ------------------------------------------------------------------------------------------- LSA
@dataclass(frozen=True)
class LsaLink:
    node_id: bytes
    cost: int  # u16
    quality: int  # Quality
    throughput_kbps: int = 0  # u32, 0 = unknown


@dataclass(frozen=True)
class Lsa:
    credential: Credential
    seq: int
    links: tuple[LsaLink, ...]
    prefixes: tuple[str, ...]  # "addr/len", normalised
    signature: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        w = _header(T_LSA).raw(self.credential.encode()).u32(self.seq).u8(len(self.links))
        for link in self.links:
            w.raw(link.node_id, NODE_ID_BYTES).u16(link.cost).u8(link.quality).u32(link.throughput_kbps)
        w.u8(len(self.prefixes))
        for p in self.prefixes:
            write_prefix(w, p)
        return w.bytes()

    @property
    def origin(self) -> bytes:
        return self.credential.node_id


# ------------------------------------------------------------------------------------------- ACK
@dataclass(frozen=True)
class Ack:
    sender: bytes
    seq: int
    entries: tuple[tuple[bytes, int], ...]  # (origin, lsa seq)
    mac: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        w = _header(T_ACK).raw(self.sender, NODE_ID_BYTES).u32(self.seq).u8(len(self.entries))
        for origin, s in self.entries:
            w.raw(origin, NODE_ID_BYTES).u32(s)
        return w.bytes()

    def encode(self) -> bytes:
        return self.body() + self.mac


def _mac(domain: bytes, key: bytes, sender: bytes, receiver: bytes, body: bytes) -> bytes:
    """A session MAC (ACK, PROBE, PROBE_REPORT): keyed BLAKE2b over domain, both ids and the body."""
    return hashlib.blake2b(domain + sender + receiver + body, key=key, digest_size=MAC_BYTES).digest()


def _ack_mac(key: bytes, sender: bytes, receiver: bytes, body: bytes) -> bytes:
    return _mac(_ACK_DOMAIN, key, sender, receiver, body)


def seal_ack(ack: Ack, key: bytes, receiver: bytes) -> bytes:
    """Our ACK to `receiver` as a datagram, with the MAC under our pairwise session key."""
    body = ack.body()
    return body + _ack_mac(key, ack.sender, receiver, body)


def ack_mac_ok(key: bytes, sender: bytes, receiver: bytes, ack: Ack) -> bool:
    """Did `sender`, in the session keyed `key`, send this ACK to `receiver`? (constant-time)"""
    return hmac.compare_digest(_ack_mac(key, sender, receiver, ack.body()), ack.mac)


# -------------------------------------------------------------------------------------- WITHDRAW
@dataclass(frozen=True)
class Withdraw:
    origin: bytes
    seq: int
    signature: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        return _header(T_WITHDRAW).raw(self.origin, NODE_ID_BYTES).u32(self.seq).bytes()


# ----------------------------------------------------------------------------------------- PROBE
@dataclass(frozen=True)
class Probe:
    """One datagram of a throughput probe train; `size` is the whole datagram's length (zero padding
    between the header and the MAC makes it up)."""

    train: int  # u32, per (sender, receiver) session, increasing
    index: int  # u8, 0 .. count - 1
    count: int  # u8, 2 .. MAX_PROBE_TRAIN_PACKETS
    size: int
    mac: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        head = _header(T_PROBE).u32(self.train).u8(self.index).u8(self.count).bytes()
        return head + bytes(self.size - PROBE_HEADER_BYTES - MAC_BYTES)

    def encode(self) -> bytes:
        return self.body() + self.mac


def seal_probe(probe: Probe, key: bytes, sender: bytes, receiver: bytes) -> bytes:
    if not PROBE_MIN_BYTES <= probe.size <= MAX_DATAGRAM_BYTES:
        raise ValueError(f"probe size {probe.size} outside [{PROBE_MIN_BYTES}, {MAX_DATAGRAM_BYTES}]")
    body = probe.body()
    return body + _mac(_PROBE_DOMAIN, key, sender, receiver, body)


def probe_mac_ok(key: bytes, sender: bytes, receiver: bytes, data: bytes) -> bool:
    """Did `sender` send this (decoded) probe datagram to `receiver` in the session keyed `key`?"""
    body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    return hmac.compare_digest(_mac(_PROBE_DOMAIN, key, sender, receiver, body), mac)


@dataclass(frozen=True)
class ProbeReport:
    """The receiver's measurement of one train: the throughput its last gap showed."""

    train: int  # u32
    rate_kbps: int  # u32, 1 .. MAX_LINK_THROUGHPUT_KBPS
    mac: bytes = field(default=b"", compare=False)

    def body(self) -> bytes:
        return _header(T_PROBE_REPORT).u32(self.train).u32(self.rate_kbps).bytes()

    def encode(self) -> bytes:
        return self.body() + self.mac


def seal_report(report: ProbeReport, key: bytes, sender: bytes, receiver: bytes) -> bytes:
    body = report.body()
    return body + _mac(_REPORT_DOMAIN, key, sender, receiver, body)


def report_mac_ok(key: bytes, sender: bytes, receiver: bytes, report: ProbeReport) -> bool:
    return hmac.compare_digest(_mac(_REPORT_DOMAIN, key, sender, receiver, report.body()), report.mac)


Message = Hello | Keepalive | Lsa | Ack | Withdraw | Probe | ProbeReport
Signed = Hello | Lsa | Withdraw


def signed_payload(body: bytes) -> bytes:
    return _SIG_DOMAIN + body


def sign(msg: Signed, identity: Identity) -> bytes:
    """Encode and sign our own message; returns the datagram."""
    body = msg.body()
    data = body + identity.sign(signed_payload(body))
    if len(data) > MAX_DATAGRAM_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds MAX_DATAGRAM_BYTES")
    return data


def encode(msg: Message) -> bytes:
    """Encode a decoded (already signed) message back to bytes."""
    if isinstance(msg, Keepalive | Ack | Probe | ProbeReport):
        return msg.encode()
    return msg.body() + msg.signature


def decode(data: bytes) -> Message:
    """Parse a datagram. Raises only DecodeError. Signatures are NOT checked here."""
    r = Reader(data)
    if r.u8() != WIRE_VERSION:
        raise DecodeError("unsupported version")
    t = r.u8()
    if t == T_KEEPALIVE:
        seq, ts = r.u16(), r.u32()
        n = r.count(MAX_HELLO_NEIGHBOURS)
        entries = tuple(KeepaliveEntry(r.u32(), r.u16(), r.raw(MAC_BYTES)) for _ in range(n))
        r.end()
        return Keepalive(seq, ts, entries)
    if t == T_HELLO:
        cred = Credential.decode_from(r)
        seq, epoch, ts, interval = r.u32(), r.u32(), r.u32(), r.u16()
        if interval == 0:
            raise DecodeError("zero hello interval")
        n = r.count(MAX_HELLO_NEIGHBOURS)
        nbrs = tuple(HelloNeighbour(r.raw(NODE_ID_BYTES), r.u32(), r.u16()) for _ in range(n))
        if len({e.node_id for e in nbrs}) != len(nbrs):
            raise DecodeError("duplicate neighbour")
        sig = r.raw(SIGNATURE_BYTES)
        r.end()
        return Hello(cred, seq, epoch, ts, interval, nbrs, sig)
    if t == T_LSA:
        cred = Credential.decode_from(r)
        seq = r.u32()
        n = r.count(MAX_LSA_NEIGHBOURS)
        links = []
        for _ in range(n):
            nid, cost, q, kbps = r.raw(NODE_ID_BYTES), r.u16(), r.u8(), r.u32()
            if q > Quality.BAD:
                raise DecodeError("unknown quality class")
            if cost == 0:
                raise DecodeError("zero cost")
            if kbps > MAX_LINK_THROUGHPUT_KBPS:
                raise DecodeError("throughput over limit")
            links.append(LsaLink(nid, cost, q, kbps))
        if len({ln.node_id for ln in links}) != len(links):
            raise DecodeError("duplicate link")
        m = r.count(MAX_LSA_PREFIXES)
        prefixes = tuple(read_prefix(r) for _ in range(m))
        sig = r.raw(SIGNATURE_BYTES)
        r.end()
        return Lsa(cred, seq, tuple(links), prefixes, sig)
    if t == T_ACK:
        sender, seq = r.raw(NODE_ID_BYTES), r.u32()
        n = r.count(MAX_ACK_ENTRIES)
        entries = tuple((r.raw(NODE_ID_BYTES), r.u32()) for _ in range(n))
        mac = r.raw(MAC_BYTES)
        r.end()
        return Ack(sender, seq, entries, mac)
    if t == T_WITHDRAW:
        origin, seq = r.raw(NODE_ID_BYTES), r.u32()
        sig = r.raw(SIGNATURE_BYTES)
        r.end()
        return Withdraw(origin, seq, sig)
    if t == T_PROBE:
        train, index, count = r.u32(), r.u8(), r.u8()
        if not 2 <= count <= MAX_PROBE_TRAIN_PACKETS or index >= count:
            raise DecodeError("bad probe index")
        if r.remaining < MAC_BYTES:
            raise DecodeError("truncated")
        pad = r.raw(r.remaining - MAC_BYTES)
        if pad.count(0) != len(pad):
            raise DecodeError("probe padding not zero")
        mac = r.raw(MAC_BYTES)
        r.end()
        return Probe(train, index, count, len(data), mac)
    if t == T_PROBE_REPORT:
        train, kbps = r.u32(), r.u32()
        if not 1 <= kbps <= MAX_LINK_THROUGHPUT_KBPS:
            raise DecodeError("throughput out of range")
        mac = r.raw(MAC_BYTES)
        r.end()
        return ProbeReport(train, kbps, mac)
    raise DecodeError("unknown message type")


def signed_bytes(data: bytes) -> tuple[bytes, bytes]:
    """(payload to verify, signature) of a signed datagram that decoded successfully."""
    return signed_payload(data[:-SIGNATURE_BYTES]), data[-SIGNATURE_BYTES:]


__all__ = [
    "Ack",
    "DecodeError",
    "Hello",
    "HelloNeighbour",
    "Keepalive",
    "KeepaliveEntry",
    "Lsa",
    "LsaLink",
    "Message",
    "Probe",
    "ProbeReport",
    "Withdraw",
    "decode",
    "encode",
    "ack_mac_ok",
    "keepalive_mac",
    "node_id_of",
    "probe_mac_ok",
    "report_mac_ok",
    "seal_ack",
    "seal_probe",
    "seal_report",
    "sign",
]
