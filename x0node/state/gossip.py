"""Anti-entropy gossip of signed records between neighbours: sans-I/O.

The adapter feeds `receive(ifname, src, data, now)`, `set_neighbours(...)` and local writes, calls
`tick(now)` at `next_timer()` and pulls `datagrams_to_send()` and `changes()`.

Protocol (docs/state.md has the arithmetic):
- Every datagram is [version, type, sender id, sender epoch, sequence number, body, Ed25519 signature
  of the sender over a domain prefix and all preceding bytes]. It is decoded, its sender's credential
  (carried in the body, flag F_CRED, or held from before) checked against the TrustStore (uncertified,
  expired, revoked: refused), its signature verified and its (epoch, sequence) checked against the
  sender's replay window before it touches any state. An unknown sender is answered with a DIGEST that
  asks for its credential (F_WANT_CRED). We send our credential until the neighbour has shown it holds
  it (a VECTOR from it, or a DIGEST saying it holds its neighbours' credentials, F_HOLDS_CREDS); a
  multicast DIGEST goes without it once every neighbour on the interface has; a new epoch or a request
  brings it back.
- DIGEST (link-local multicast, on a Trickle timer per interface, RFC 6206): the 128-bit XOR digest of
  our mesh records. Equal digest: consistent (the Trickle counter grows; we note the peer held all we had,
  `synced_lsn`). Different digest: the link's Trickle resets to Imin, we unicast our VECTOR to the sender
  and, unasked, a DELTA of the records we applied since its digest last equalled ours (catch-up, each
  record once per peer, at most CATCHUP_MAX_RECORDS): after a heal the first digest across the link
  brings the other side's news without the VECTOR -> DELTA round trip.
- VECTOR: (origin, highest version, 8-byte record-set hash) for every origin in an id range. The
  receiver sends a DELTA of every origin where it is ahead (records above the peer's version) or where
  the versions match but the hashes do not (all of that origin's records), and answers with its own
  VECTOR (once, no further reply) if the peer has anything it lacks.
- DELTA: per origin, optionally the origin's credential, then records, each signed by its origin. A
  record is applied only if its origin's credential passes the TrustStore, its signature verifies, it
  is well-formed, its namespace validator accepts it and it has not expired; otherwise it is refused and
  counted by reason, and the rest of the batch goes on. Newly applied records are pushed at once to
  every other neighbour (eager flooding) and reset every Trickle timer; loss is repaired by the digests.
- 1-hop records are pushed to the neighbours at write time and to a new neighbour when it appears,
  accepted only from their origin, kept until their TTL runs out, never forwarded.
- Every table and datagram is bounded: MAX_PEERS, the store's MAX_*, MAX_DATAGRAM_BYTES,
  MAX_PENDING_DATAGRAMS; over a bound the item is dropped and counted.
- Our own records survive a lost store: records of ours received from peers are applied like any other
  and our HLC moves past them, so the next local write supersedes them.
No I/O, no clock, no global randomness: `now` is monotonic seconds, the wall clock comes through
`set_wall_clock`, randomness from the rng given at construction.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import (
    IPV6_UDP_HEADER_BYTES,
    MAX_DATAGRAM_BYTES,
    NODE_ID_BYTES,
    SIGNATURE_BYTES,
    STATE_UDP_PORT,  # noqa: F401 - re-exported for the service and tests
)
from x0node.proto.seqno import ReplayWindow
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError, Reader, Writer
from x0node.state import crdt
from x0node.state.record import (
    HOP_TTL_MAX_S,
    TTL_MAX_S,
    Kind,
    Record,
    Scope,
    decode_payload,
    encode_gcounter,
    encode_lww,
    encode_or_add,
    encode_or_remove,
    encode_pncounter,
    kind_of,
)
from x0node.state.store import Store, decode_snapshot
from x0node.state.trickle import Trickle

STATE_MCAST_GROUP = "ff02::7830:6b15"
MSG_VERSION = 2
"""2: the sender's credential is optional in every message type (flag F_CRED)."""
T_DIGEST, T_VECTOR, T_DELTA = 1, 2, 3
TYPE_NAMES = {T_DIGEST: "digest", T_VECTOR: "vector", T_DELTA: "delta"}
HEADER_BYTES = 2 + NODE_ID_BYTES + 4 + 4
TRICKLE_IMIN_S = 0.05
"""Digest interval while inconsistent: a lost exchange is retried within ~50 ms."""
TRICKLE_IMAX_S = 8.0
"""Digest interval while consistent: one ~265-byte digest per link per 8 s, ~33 B/s per link end."""
TRICKLE_K = 1
VECTOR_MIN_INTERVAL_S = 0.04
"""At most one VECTOR (all its chunks) per neighbour per this long."""
WANT_CRED_MIN_INTERVAL_S = 0.2
HOUSEKEEPING_INTERVAL_S = 1.0
NEIGHBOUR_HOLD_S = 5.0
"""A neighbour stays a gossip neighbour this long after the router last reported it UP or it was last
heard: under heavy loss the router's adjacency flaps, and gossip keeps flowing through the flaps."""
NEIGHBOUR_LIVE_S = 1.0
"""A neighbour neither reported UP by the router nor heard for this long is held but not live."""
PROBE_INTERVAL_S = 0.5
PROBE_FOR_S = 60.0
"""An interface without a live neighbour keeps sending digests, at most PROBE_INTERVAL_S apart, for
PROBE_FOR_S: a healed link is found by the first digest that crosses it, even before the router
re-establishes the adjacency (which waits for a full signed HELLO). Probing starts when the neighbours
stop being live, not when they are no longer held: a partition shorter than NEIGHBOUR_HOLD_S left the
link's Trickle backing off towards Imax (3.2-8 s at the heal), and the first digest across the healed
link came that late. Probes go without our credential
(the lost neighbour held it): ~157 B per ~0.375 s, ~420 B/s while probing. At 1 s, leaf nodes behind a
healed link with 30 % loss were the last to converge (1.7-1.9 s of a 50-node heal)."""
PEER_FORGET_S = 120.0
"""A sender that is no longer a neighbour is forgotten after this long (its replay state with it)."""
MAX_PEERS = 256
MAX_REMEMBERED_EPOCHS = 4
MAX_PENDING_DATAGRAMS = 4096
MAX_RECORDS_PER_SECTION = 255
MAX_SECTIONS = 255
REPLAY_WINDOW = 64
_DOMAIN = b"x0node-state-msg-v1\x00"
F_WANT_CRED = 1
"""DIGEST: the sender does not hold our credential; answer with a DIGEST that carries it."""
F_HOLDS_CREDS = 2
"""DIGEST: the sender holds the credential of every current neighbour on this interface. Its receiver
takes it as "holds mine" (on a shared link it may not, if the sender has not heard it yet: then the
sender drops our next bare digest and asks, F_WANT_CRED, and we send the credential again)."""
F_REPLY = 1
"""VECTOR: answer with your own VECTOR if you lack something we have."""
F_HAS_CRED = 1
"""DELTA section: the origin's credential follows."""
F_CRED = 0x80
"""Any message: the sender's credential follows the flags."""
RECENT_RECORDS = 256
"""How many newly applied mesh records are remembered in order (the catch-up log)."""
CATCHUP_MAX_RECORDS = 32
"""At most this many records are sent unasked to a neighbour whose digest differs (about 6 KB)."""
CATCHUP_RETRY_S = 0.25
CATCHUP_RESENDS = 2
"""Records already sent unasked to a peer are sent again, at most CATCHUP_RESENDS times, if its digest
still differs CATCHUP_RETRY_S later (the first copy may have been lost; at 30 % loss, waiting for the
VECTOR path adds two lossy messages)."""
ID_MAX = b"\xff" * NODE_ID_BYTES
ID_MIN = b"\x00" * NODE_ID_BYTES

DROP_REASONS = ("decode", "self", "version", "unknown_sender", "bad_sender", "uncertified", "expired",
                "revoked", "bad_signature", "stale", "replay", "limit_peers", "limit_queue")
REFUSE_REASONS = ("unknown_origin", "bad_origin", "uncertified", "expired", "revoked", "bad_signature",
                  "bad_scope", "bad_crl", "bad_setting", "bad_features", "bad_fedhead", "ttl_expired", "limit_origins", "limit_origin_records",
                  "limit_records", "limit_hop_records")

Validator = Callable[[Record], "str | None"]


@dataclass(frozen=True)
class Outgoing:
    ifname: str
    dst: str | None  # None: the state multicast group on that interface
    payload: bytes


@dataclass
class Peer:
    node_id: bytes
    cred: Credential | None = None
    epoch: int | None = None
    old_epochs: list[int] = field(default_factory=list)
    window: ReplayWindow = field(default_factory=lambda: ReplayWindow(REPLAY_WINDOW, 32))
    knows_me: bool = False
    known_origins: set[bytes] = field(default_factory=set)
    last_vector_s: float = -1e9
    last_want_cred_s: float = -1e9
    last_heard_s: float = 0.0
    inconsistent_since: float | None = None
    synced_lsn: int | None = None
    """Our log position when this peer's digest last equalled ours: it holds every record before it."""
    caught_up_lsn: int = 0
    """The log position up to which records were already sent to it unasked (catch-up)."""
    caught_up_s: float = -1e9
    resends: int = 0


@dataclass(frozen=True)
class Neighbour:
    ifname: str
    node_id: bytes
    address: str


class Gossip:
    def __init__(self, identity: Identity, trust: TrustStore, rng: random.Random, now: float,
                 validators: dict[str, Validator] | None = None,
                 imin_s: float = TRICKLE_IMIN_S, imax_s: float = TRICKLE_IMAX_S) -> None:
        self.identity = identity
        self.me = identity.node_id
        self.cred = Credential(identity.public_key, identity.certificate)  # type: ignore[arg-type]
        self.trust = trust
        self.rng = rng
        self.validators = dict(validators or {})
        self.imin_s, self.imax_s = imin_s, imax_s
        self.store = Store()
        self.hlc = crdt.Hlc()
        self.epoch = rng.randrange(1, 1 << 32)
        self.seq = 0
        self.wall_offset_s: float | None = None
        self.peers: dict[bytes, Peer] = {}
        self.neighbours: dict[tuple[str, bytes], Neighbour] = {}
        self._seen: dict[tuple[str, bytes], tuple[Neighbour, float]] = {}
        self._probe_until: dict[str, float] = {}
        self.trickles: dict[str, Trickle] = {}
        self.my_hop: dict[tuple[str, str], Record] = {}
        self._iface_ids: dict[str, set[bytes]] = {}  # who was last a neighbour on each interface
        self.lsn = 0
        self._recent: deque[tuple[int, Record]] = deque(maxlen=RECENT_RECORDS)
        self._origin_lsn: dict[bytes, int] = {}  # log position at which each origin entered the store
        self._out: deque[Outgoing] = deque()
        self._changes: set[tuple[str, str]] = set()
        self._housekeeping_s = now + HOUSEKEEPING_INTERVAL_S
        self._now = now
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.refused: dict[str, int] = dict.fromkeys(REFUSE_REASONS, 0)
        self.counters: dict[str, int] = {
            "rx_datagrams": 0, "rx_bytes": 0, "tx_datagrams": 0, "tx_bytes": 0, "tx_wire_bytes": 0,
            "tx_digest": 0, "tx_vector": 0, "tx_delta": 0, "records_applied": 0, "records_duplicate": 0,
            "records_sent": 0, "local_writes": 0, "trickle_resets": 0, "records_expired": 0,
            "records_purged": 0, "load_refused": 0, "records_caught_up": 0, "tx_cred": 0,
        }
        self.digest_changed_s = now
        """When the mesh digest last changed (monotonic): the bench's convergence instant."""
        self.apply_lag_sum_s = 0.0
        self.apply_lag_count = 0
        self.apply_lag_max_s = 0.0

    # ------------------------------------------------------------------------------ clocks and helpers
    def set_wall_clock(self, wall_s: float, now: float) -> None:
        self.wall_offset_s = wall_s - now

    def _wall(self, now: float) -> float:
        return now + (self.wall_offset_s or 0.0)

    def _wall_check(self, now: float) -> float | None:
        return None if self.wall_offset_s is None else now + self.wall_offset_s

    def _send(self, ifname: str, dst: str | None, payload: bytes, kind: int) -> None:
        if len(self._out) >= MAX_PENDING_DATAGRAMS:
            self.drops["limit_queue"] += 1
            return
        self._out.append(Outgoing(ifname, dst, payload))
        self.counters["tx_datagrams"] += 1
        self.counters["tx_bytes"] += len(payload)
        self.counters["tx_wire_bytes"] += len(payload) + IPV6_UDP_HEADER_BYTES
        self.counters[f"tx_{TYPE_NAMES[kind]}"] += 1

    def _seal(self, kind: int, body: bytes) -> bytes:
        self.seq = self.seq + 1 if self.seq < 0xFFFFFFFF else 1
        if self.seq == 1 and self.counters["tx_datagrams"]:
            self.epoch = self.rng.randrange(1, 1 << 32)  # sequence space used up: a new session
        head = Writer().u8(MSG_VERSION).u8(kind).raw(self.me, NODE_ID_BYTES).u32(self.epoch).u32(self.seq).bytes()
        msg = head + body
        return msg + self.identity.sign(_DOMAIN + msg)

    # ------------------------------------------------------------------------------ neighbours and timers
    def set_neighbours(self, neighbours: list[Neighbour], now: float) -> None:
        """The routing core's current UP neighbours. New ones trigger an immediate digest exchange."""
        self._now = now
        for n in neighbours:
            self._seen[(n.ifname, n.node_id)] = (n, now)
        self._refresh_neighbours(now)

    def _heard(self, ifname: str, src: str, node_id: bytes, now: float) -> None:
        """An authenticated datagram from a neighbour: it stays a gossip neighbour for NEIGHBOUR_HOLD_S."""
        key = (ifname, node_id)
        if key not in self._seen and len(self._seen) >= MAX_PEERS:
            return
        self._seen[key] = (Neighbour(ifname, node_id, src), now)
        if key not in self.neighbours:
            self._refresh_neighbours(now)

    def _refresh_neighbours(self, now: float) -> None:
        for key in [k for k, (_, t) in self._seen.items() if now - t > NEIGHBOUR_HOLD_S]:
            del self._seen[key]
        new = {k: n for k, (n, _) in self._seen.items()}
        for key, n in new.items():
            if key not in self.neighbours:
                tr = self.trickles.get(n.ifname)
                if tr is None:
                    self.trickles[n.ifname] = Trickle(self.imin_s, self.imax_s, TRICKLE_K, self.rng, now)
                else:
                    self._reset(tr, now)
                self._push_hop_to(n)
        self.neighbours = new
        by_iface: dict[str, set[bytes]] = {}
        for ifname, nid in new:
            by_iface.setdefault(ifname, set()).add(nid)
        self._iface_ids.update(by_iface)  # an interface that lost them all keeps its last ones (probing)
        live = {k[0] for k, (_, t) in self._seen.items() if now - t <= NEIGHBOUR_LIVE_S}
        for ifname, tr in list(self.trickles.items()):
            if ifname in live:
                if self._probe_until.pop(ifname, None) is not None:
                    tr.imax_s = self.imax_s
                continue
            until = self._probe_until.setdefault(ifname, now + PROBE_FOR_S)
            if now >= until:
                del self.trickles[ifname]
                del self._probe_until[ifname]
                self._iface_ids.pop(ifname, None)
            elif tr.imax_s != PROBE_INTERVAL_S:
                tr.imax_s = PROBE_INTERVAL_S
                tr.interval_s = min(tr.interval_s, PROBE_INTERVAL_S)
                tr.end_s = min(tr.end_s, now + PROBE_INTERVAL_S)

    def _reset(self, tr: Trickle, now: float) -> None:
        before = tr.resets
        tr.reset(now)
        self.counters["trickle_resets"] += tr.resets - before

    def _reset_all(self, now: float) -> None:
        for tr in self.trickles.values():
            self._reset(tr, now)

    def next_timer(self) -> float | None:
        times = [tr.next_time() for tr in self.trickles.values()]
        times.append(self._housekeeping_s)
        return min(times)

    def tick(self, now: float) -> None:
        self._now = now
        for ifname, tr in list(self.trickles.items()):
            if tr.fire(now):
                self._send_digest(ifname, None, 0)
        if now >= self._housekeeping_s:
            self._housekeeping_s = now + HOUSEKEEPING_INTERVAL_S * (1.0 + self.rng.uniform(-0.25, 0.25))
            self._housekeeping(now)

    def _housekeeping(self, now: float) -> None:
        self._refresh_neighbours(now)
        self.store.expire_hop(now)
        for key in [k for k, r in self.my_hop.items() if crdt.hlc_wall_s(r.version) + r.ttl_s <= self._wall(now)]:
            del self.my_hop[key]
        if self.wall_offset_s is not None:
            gone = self.store.expire(self._wall(now))
            self.counters["records_expired"] += len(gone)
            if gone:
                self.digest_changed_s = now
            self._changes.update(r.oid for r in gone)
        for origin in [o for o in self._origin_lsn if o not in self.store.origins]:
            del self._origin_lsn[origin]
        current = {k[1] for k in self.neighbours}
        for nid in [n for n, p in self.peers.items() if n not in current and now - p.last_heard_s > PEER_FORGET_S]:
            del self.peers[nid]

    def datagrams_to_send(self) -> list[Outgoing]:
        out = list(self._out)
        self._out.clear()
        return out

    def changes(self) -> set[tuple[str, str]]:
        out = self._changes
        self._changes = set()
        return out

    # ------------------------------------------------------------------------------ local writes
    def write(self, ns: str, key: str, now: float, *, value: bytes | None = None, delete: bool = False,
              incr: int | None = None, add: bool | None = None, ttl_s: int = 0,
              scope: Scope = Scope.MESH) -> Record:
        """One local update; raises ValueError on misuse (unknown namespace, wrong op, sizes)."""
        self._now = now
        kind = kind_of(ns)
        if kind is None:
            raise ValueError(f"unknown namespace {ns!r}")
        if scope == Scope.HOP and (kind != Kind.LWW or not 0 < ttl_s <= HOP_TTL_MAX_S):
            raise ValueError(f"1-hop records are LWW values with a TTL of 1..{HOP_TTL_MAX_S} s")
        if not 0 <= ttl_s <= TTL_MAX_S:
            raise ValueError(f"ttl_s must be 0..{TTL_MAX_S}")
        mine = self.store.get(self.me, (ns, key)) if scope == Scope.MESH else self.my_hop.get((ns, key))
        if kind == Kind.LWW:
            if incr is not None or add is not None or (value is None) != delete:
                raise ValueError("an LWW update is a value or a delete")
            payload = encode_lww(None if delete else value)
        elif kind == Kind.GCOUNTER:
            if incr is None or incr < 0:
                raise ValueError("a G-Counter update is an increment >= 0")
            payload = encode_gcounter((decode_payload(kind, mine.payload) if mine else 0) + incr)
        elif kind == Kind.PNCOUNTER:
            if incr is None:
                raise ValueError("a PN-Counter update is an increment")
            p, n = decode_payload(kind, mine.payload) if mine else (0, 0)
            payload = encode_pncounter(p + max(incr, 0), n + max(-incr, 0))
        else:
            if add is None:
                raise ValueError("an OR-Set update is an add or a remove")
            if add:
                payload = encode_or_add()
            else:
                observed = tuple(sorted((r.origin, r.version) for r in self.store.records()
                                        if r.oid == (ns, key) and decode_payload(kind, r.payload) is None))
                payload = encode_or_remove(observed)
        version = self.hlc.now(int(self._wall(now) * 1000))
        unsigned = Record(self.me, version, int(scope), int(kind), ttl_s, ns, key, payload)
        problem = unsigned.problem()
        if problem is not None:
            raise ValueError(problem)
        rec = Record(self.me, version, int(scope), int(kind), ttl_s, ns, key, payload,
                     self.identity.sign(unsigned.signed_message()))
        self.counters["local_writes"] += 1
        if scope == Scope.HOP:
            self.my_hop[(ns, key)] = rec
            for n in self.neighbours.values():
                self._send_delta(n.ifname, n.address, self.peers.get(n.node_id), [rec], set())
            return rec
        result = self.store.put(rec, self.cred)
        if result != "new":
            raise ValueError(f"store refused the write: {result}")
        self._logged(rec)
        self.digest_changed_s = now
        self._changes.add(rec.oid)
        self._push([rec], None, now)
        self._reset_all(now)
        return rec

    def _push_hop_to(self, n: Neighbour) -> None:
        if self.my_hop:
            self._send_delta(n.ifname, n.address, self.peers.get(n.node_id), list(self.my_hop.values()), set())

    def _push(self, recs: list[Record], source: tuple[str, str] | None, now: float) -> None:
        """Eager push of newly applied records to every neighbour but the one they came from."""
        for n in self.neighbours.values():
            if source is not None and (n.ifname, n.address) == source:
                continue
            peer = self.peers.get(n.node_id)
            self._send_delta(n.ifname, n.address, peer, recs, set())

    def _logged(self, rec: Record) -> None:
        """A mesh record newly in the store (written here or applied): into the catch-up log."""
        self.lsn += 1
        self._recent.append((self.lsn, rec))
        if rec.origin not in self._origin_lsn:
            self._origin_lsn[rec.origin] = self.lsn

    def _catch_up(self, ifname: str, src: str, peer: Peer, now: float) -> None:
        """The peer's digest differs: send, unasked, the records we learnt since its digest last equalled
        ours (it lacks them unless it learnt them elsewhere); a record already sent so is sent again only
        CATCHUP_RETRY_S later. The VECTOR sent with it repairs whatever this misses; this saves the
        VECTOR -> DELTA round trip after a partition heals or a push was lost."""
        if peer.synced_lsn is None:
            return
        if self.lsn == peer.caught_up_lsn and now - peer.caught_up_s >= CATCHUP_RETRY_S \
                and peer.resends < CATCHUP_RESENDS:
            peer.caught_up_lsn = 0
            peer.resends += 1
        elif self.lsn != peer.caught_up_lsn:
            peer.resends = 0
        start = max(peer.synced_lsn, peer.caught_up_lsn)
        recs = [r for lsn, r in self._recent if lsn > start and self.store.get(r.origin, r.oid) is r]
        if self.lsn > start:
            peer.caught_up_lsn, peer.caught_up_s = self.lsn, now
        if recs:
            recs = recs[-CATCHUP_MAX_RECORDS:]
            self.counters["records_caught_up"] += len(recs)
            self._send_delta(ifname, src, peer, recs, set())

    # ------------------------------------------------------------------------------ sending
    def _cred_bytes(self) -> bytes:
        self.counters["tx_cred"] += 1
        return self.cred.encode()

    def _knows_me(self, node_id: bytes) -> bool:
        peer = self.peers.get(node_id)
        return peer is not None and peer.knows_me

    def _send_digest(self, ifname: str, dst: str | None, flags: int) -> None:
        """A multicast digest carries our credential unless every neighbour on the interface (the last
        ones, while it probes) has shown it holds it; a unicast digest (about credentials) always does."""
        ids = self._iface_ids.get(ifname)
        bare = dst is None and bool(ids) and all(self._knows_me(i) for i in ids or ())
        cred = b"" if bare else self._cred_bytes()
        current = [nid for (i, nid) in self.neighbours if i == ifname]
        if current and all(nid in self.peers and self.peers[nid].cred is not None for nid in current):
            flags |= F_HOLDS_CREDS
        body = Writer().u8(flags | (F_CRED if cred else 0)).raw(cred).raw(self.store.digest()) \
            .u16(len(self.store.origins)).bytes()
        self._send(ifname, dst, self._seal(T_DIGEST, body), T_DIGEST)

    def _send_vector(self, ifname: str, dst: str, flags: int, now: float, peer: Peer | None = None) -> None:
        cred = b"" if peer is not None and peer.knows_me else self._cred_bytes()
        flags |= F_CRED if cred else 0
        room = MAX_DATAGRAM_BYTES - HEADER_BYTES - SIGNATURE_BYTES - 1 - len(cred) - 2 * NODE_ID_BYTES - 1
        per = min(255, room // (NODE_ID_BYTES + 16))
        vec = self.store.vector()
        chunks = [vec[i : i + per] for i in range(0, len(vec), per)] or [[]]
        lo = ID_MIN
        for i, chunk in enumerate(chunks):
            hi = ID_MAX if i == len(chunks) - 1 else chunk[-1][0]
            w = Writer().u8(flags).raw(cred).raw(lo, NODE_ID_BYTES).raw(hi, NODE_ID_BYTES).u8(len(chunk))
            for origin, version, h in chunk:
                w.raw(origin, NODE_ID_BYTES).u64(version).raw(h, 8)
            self._send(ifname, dst, self._seal(T_VECTOR, w.bytes()), T_VECTOR)
            if hi != ID_MAX:
                lo = (int.from_bytes(hi, "big") + 1).to_bytes(NODE_ID_BYTES, "big")

    def _send_delta(self, ifname: str, dst: str | None, peer: Peer | None, recs: list[Record],
                    with_cred: set[bytes]) -> None:
        """Records grouped by origin, packed into as few datagrams as fit. An origin's credential is
        included unless the peer is known to hold it (or it is in `with_cred`, which forces it)."""
        by: dict[bytes, list[Record]] = {}
        for r in sorted(recs, key=lambda r: (r.origin, r.version)):
            by.setdefault(r.origin, []).append(r)
        sender_cred = b"" if peer is not None and peer.knows_me else self.cred.encode()
        base = MAX_DATAGRAM_BYTES - HEADER_BYTES - SIGNATURE_BYTES - 1 - len(sender_cred) - 1
        sections: list[bytes] = []
        used = 0

        def flush() -> None:
            nonlocal sections, used
            if sections:
                if sender_cred:
                    self.counters["tx_cred"] += 1
                w = Writer().u8(F_CRED if sender_cred else 0).raw(sender_cred).u8(len(sections))
                for s in sections:
                    w.raw(s)
                self._send(ifname, dst, self._seal(T_DELTA, w.bytes()), T_DELTA)
            sections, used = [], 0

        for origin, rs in by.items():
            cred = self._origin_cred(origin)
            if cred is None:
                continue
            need_cred = origin in with_cred or peer is None or not self._holds_origin(peer, origin)
            cred_b = cred.encode() if need_cred else b""
            tails = [r.encode_tail() for r in rs]
            i = 0
            while i < len(tails):
                head = NODE_ID_BYTES + 1 + len(cred_b) + 1
                if used + head + len(tails[i]) > base or len(sections) >= MAX_SECTIONS:
                    flush()
                part: list[bytes] = []
                size = head
                while i < len(tails) and used + size + len(tails[i]) <= base and len(part) < MAX_RECORDS_PER_SECTION:
                    part.append(tails[i])
                    size += len(tails[i])
                    i += 1
                if not part:  # cannot happen: a record always fits an empty datagram
                    i += 1
                    continue
                sections.append(Writer().raw(origin, NODE_ID_BYTES).u8(F_HAS_CRED if cred_b else 0).raw(cred_b)
                                .u8(len(part)).raw(b"".join(part)).bytes())
                used += size
                self.counters["records_sent"] += len(part)
        flush()

    def _holds_origin(self, peer: Peer, origin: bytes) -> bool:
        """The peer holds the origin's credential: it said so (VECTOR, DELTA), or its digest equalled
        ours after the origin was in our store."""
        if origin in peer.known_origins:
            return True
        first = self._origin_lsn.get(origin)
        return first is not None and peer.synced_lsn is not None and first <= peer.synced_lsn

    def _origin_cred(self, origin: bytes) -> Credential | None:
        if origin == self.me:
            return self.cred
        st = self.store.origins.get(origin)
        if st is not None:
            return st.cred
        peer = self.peers.get(origin)
        return peer.cred if peer is not None else None

    # ------------------------------------------------------------------------------ receiving
    def receive(self, ifname: str, src: str, data: bytes, now: float) -> None:
        """One datagram from a neighbour. Never raises on remote input."""
        self._now = now
        self.counters["rx_datagrams"] += 1
        self.counters["rx_bytes"] += len(data)
        try:
            r = Reader(data)
            if r.u8() != MSG_VERSION:
                self.drops["version"] += 1
                return
            kind = r.u8()
            sender = r.raw(NODE_ID_BYTES)
            epoch = r.u32()
            seq = r.u32()
            if len(data) < HEADER_BYTES + SIGNATURE_BYTES:
                raise DecodeError("truncated")
            body = Reader(data[HEADER_BYTES:-SIGNATURE_BYTES])
            msg = self._parse(kind, body)
        except DecodeError:
            self.drops["decode"] += 1
            return
        if sender == self.me:
            self.drops["self"] += 1
            return
        peer = self.peers.get(sender)
        cred: Credential | None = msg.get("cred") or (peer.cred if peer is not None else None)
        if cred is None:
            self.drops["unknown_sender"] += 1
            self._ask_cred(ifname, src, sender, now)
            return
        if cred.node_id != sender:
            self.drops["bad_sender"] += 1
            return
        reason = self.trust.check(cred, self._wall_check(now))
        if reason is not None:
            self.drops[reason] += 1
            return
        if not verify(cred.public_key, _DOMAIN + data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]):
            self.drops["bad_signature"] += 1
            return
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self.drops["limit_peers"] += 1
                return
            peer = self.peers[sender] = Peer(sender)
        if peer.epoch != epoch:
            if epoch in peer.old_epochs:
                self.drops["stale"] += 1
                return
            if peer.epoch is not None:
                peer.old_epochs = (peer.old_epochs + [peer.epoch])[-MAX_REMEMBERED_EPOCHS:]
            peer.epoch = epoch
            peer.window = ReplayWindow(REPLAY_WINDOW, 32)
            peer.knows_me = False
            peer.known_origins = set()
            peer.synced_lsn = None  # a new session: what it held before is not assumed
            peer.caught_up_lsn = 0
        if not peer.window.accept(seq):
            self.drops["replay"] += 1
            return
        peer.cred = cred
        peer.last_heard_s = now
        self._heard(ifname, src, sender, now)
        if kind == T_DIGEST:
            self._on_digest(ifname, src, peer, msg, now)
        elif kind == T_VECTOR:
            peer.knows_me = True
            self._on_vector(ifname, src, peer, msg, now)
        else:
            self._on_delta(ifname, src, peer, msg, now)

    def _ask_cred(self, ifname: str, src: str, sender: bytes, now: float) -> None:
        peer = self.peers.get(sender)
        if peer is not None and now - peer.last_want_cred_s < WANT_CRED_MIN_INTERVAL_S:
            return
        if peer is not None:
            peer.last_want_cred_s = now
        self._send_digest(ifname, src, F_WANT_CRED)

    def _parse(self, kind: int, r: Reader) -> dict[str, Any]:
        flags = r.u8()
        cred = Credential.decode_from(r) if flags & F_CRED else None
        if kind == T_DIGEST:
            digest = r.raw(16)
            n = r.u16()
            r.end()
            return {"flags": flags, "cred": cred, "digest": digest, "origins": n}
        if kind == T_VECTOR:
            lo, hi = r.raw(NODE_ID_BYTES), r.raw(NODE_ID_BYTES)
            n = r.u8()
            entries = {}
            for _ in range(n):
                origin = r.raw(NODE_ID_BYTES)
                entries[origin] = (r.u64(), r.raw(8))
            r.end()
            if lo > hi:
                raise DecodeError("empty range")
            return {"flags": flags, "cred": cred, "lo": lo, "hi": hi, "entries": entries}
        if kind == T_DELTA:
            sections = []
            for _ in range(r.count(MAX_SECTIONS)):
                origin = r.raw(NODE_ID_BYTES)
                sflags = r.u8()
                scred = Credential.decode_from(r) if sflags & F_HAS_CRED else None
                recs = [Record.decode_tail(r, origin) for _ in range(r.count(MAX_RECORDS_PER_SECTION))]
                sections.append((origin, scred, recs))
            r.end()
            return {"flags": flags, "cred": cred, "sections": sections}
        raise DecodeError("unknown message type")

    def _on_digest(self, ifname: str, src: str, peer: Peer, msg: dict[str, Any], now: float) -> None:
        if msg["flags"] & F_WANT_CRED:
            peer.knows_me = False
            if now - peer.last_want_cred_s >= WANT_CRED_MIN_INTERVAL_S:
                peer.last_want_cred_s = now
                self._send_digest(ifname, src, 0)
        elif msg["flags"] & F_HOLDS_CREDS:
            peer.knows_me = True
        tr = self.trickles.get(ifname)
        if msg["digest"] == self.store.digest():
            peer.inconsistent_since = None
            peer.synced_lsn = self.lsn
            if tr is not None:
                tr.heard_consistent()
            return
        if peer.inconsistent_since is None:
            peer.inconsistent_since = now
        if tr is not None:
            self._reset(tr, now)
        if now - peer.last_vector_s >= VECTOR_MIN_INTERVAL_S:
            peer.last_vector_s = now
            self._send_vector(ifname, src, F_REPLY, now, peer)
            self._catch_up(ifname, src, peer, now)

    def _on_vector(self, ifname: str, src: str, peer: Peer, msg: dict[str, Any], now: float) -> None:
        entries: dict[bytes, tuple[int, bytes]] = msg["entries"]
        lo, hi = msg["lo"], msg["hi"]
        if len(peer.known_origins) + len(entries) <= 4 * MAX_PEERS + len(self.store.origins):
            peer.known_origins.update(entries)
        behind = any(o not in self.store.origins and not self.trust.is_revoked(o) for o in entries)
        send: list[Record] = []
        force_cred: set[bytes] = set()
        for origin, st in self.store.origins.items():
            if not lo <= origin <= hi:
                continue
            theirs = entries.get(origin)
            mine_h = st.hash.to_bytes(16, "big")[:8]
            if theirs is None:
                send.extend(st.records.values())
                force_cred.add(origin)
            elif st.max_version > theirs[0]:
                send.extend(r for r in st.records.values() if r.version > theirs[0])
            elif st.max_version == theirs[0] and mine_h != theirs[1]:
                send.extend(st.records.values())
                behind = True
            elif st.max_version < theirs[0]:
                behind = True
        if send:
            self._send_delta(ifname, src, peer, send, force_cred)
        if behind and msg["flags"] & F_REPLY and now - peer.last_vector_s >= VECTOR_MIN_INTERVAL_S:
            peer.last_vector_s = now
            self._send_vector(ifname, src, 0, now, peer)

    def _on_delta(self, ifname: str, src: str, peer: Peer, msg: dict[str, Any], now: float) -> None:
        fresh: list[Record] = []
        wall = self._wall_check(now)
        for origin, scred, recs in msg["sections"]:
            cred = scred or self._origin_cred(origin)
            if cred is None:
                self.refused["unknown_origin"] += len(recs)
                continue
            if cred.node_id != origin:
                self.refused["bad_origin"] += len(recs)
                continue
            reason = self.trust.check(cred, wall)
            if reason is not None:
                self.refused[reason] += len(recs)
                continue
            if len(peer.known_origins) < 4 * MAX_PEERS + len(self.store.origins):
                peer.known_origins.add(origin)
            for rec in recs:
                self._apply(rec, cred, peer, now, wall, fresh)
        if fresh:
            self._push(fresh, (ifname, src), now)
            self._reset_all(now)

    def _apply(self, rec: Record, cred: Credential, peer: Peer, now: float, wall: float | None,
               fresh: list[Record]) -> None:
        if not verify(cred.public_key, rec.signed_message(), rec.signature):
            self.refused["bad_signature"] += 1
            return
        check = self.validators.get(rec.ns)
        why = check(rec) if check is not None else None
        if why is not None:
            self.refused[why] = self.refused.get(why, 0) + 1
            return
        if rec.scope == Scope.HOP:
            if rec.origin != peer.node_id:
                self.refused["bad_scope"] += 1
                return
            result = self.store.put_hop(rec, now + rec.ttl_s)
            if result == "new":
                self._changes.add(rec.oid)
                self.counters["records_applied"] += 1
            elif result != "old":
                self.refused[result] += 1
            return
        exp = rec.expires_wall_s()
        if exp is not None and wall is not None and exp <= wall:
            self.refused["ttl_expired"] += 1
            return
        result = self.store.put(rec, cred)
        if result == "old":
            self.counters["records_duplicate"] += 1
            return
        if result != "new":
            self.refused[result] += 1
            return
        if rec.origin == self.me:
            self.hlc.observe(rec.version)
        self._logged(rec)
        self.counters["records_applied"] += 1
        self.digest_changed_s = now
        self._changes.add(rec.oid)
        fresh.append(rec)
        if wall is not None:
            lag = max(0.0, wall - crdt.hlc_wall_s(rec.version))
            self.apply_lag_sum_s += lag
            self.apply_lag_count += 1
            self.apply_lag_max_s = max(self.apply_lag_max_s, lag)

    # ------------------------------------------------------------------------------ trust changes
    def purge_untrusted(self, now: float) -> int:
        """Forget every origin and peer the TrustStore no longer accepts (after a new CRL)."""
        wall = self._wall_check(now)
        n = 0
        for origin in [o for o, st in self.store.origins.items() if self.trust.check(st.cred, wall) is not None]:
            gone = self.store.remove_origin(origin)
            n += len(gone)
            self._changes.update(r.oid for r in gone)
        for nid in [nid for nid, p in self.peers.items() if p.cred is not None and self.trust.check(p.cred, wall)]:
            del self.peers[nid]
        for k in [k for k in self.store.hop if self.trust.is_revoked(k[0])]:
            del self.store.hop[k]
        self.counters["records_purged"] += n
        if n:
            self.digest_changed_s = now
            self._reset_all(now)
        return n

    # ------------------------------------------------------------------------------ persistence
    def snapshot(self) -> bytes:
        return self.store.encode_snapshot(self.hlc.last)

    def load_snapshot(self, data: bytes, now: float) -> int:
        """Install a snapshot: every record is checked as if it came from the network. Returns how many
        were installed; raises DecodeError if the snapshot is damaged (nothing installed then)."""
        hlc, origins = decode_snapshot(data)
        self.hlc.observe(hlc)
        wall = self._wall_check(now)
        n = 0
        for cred, recs in origins:
            if self.trust.check(cred, wall) is not None and cred.node_id != self.me:
                self.counters["load_refused"] += len(recs)
                continue
            for rec in recs:
                check = self.validators.get(rec.ns)
                exp = rec.expires_wall_s()
                if (rec.scope != Scope.MESH or not verify(cred.public_key, rec.signed_message(), rec.signature)
                        or (check is not None and check(rec) is not None)
                        or (exp is not None and wall is not None and exp <= wall)):
                    self.counters["load_refused"] += 1
                    continue
                if self.store.put(rec, cred) == "new":
                    n += 1
                    self._changes.add(rec.oid)
                    if rec.origin == self.me:
                        self.hlc.observe(rec.version)
        return n

    # ------------------------------------------------------------------------------ views
    def lag_s(self, now: float) -> float:
        """How long this node has disagreed with some neighbour's digest (0 when it agrees with all)."""
        since = [p.inconsistent_since for nid, p in self.peers.items()
                 if p.inconsistent_since is not None and any(k[1] == nid for k in self.neighbours)]
        return max(0.0, now - min(since)) if since else 0.0

    def stats(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.me.hex(),
            "digest": self.store.digest().hex(),
            "origins": len(self.store.origins),
            "records": self.store.count,
            "hop_records": len(self.store.hop),
            "neighbours": len(self.neighbours),
            "trickle_intervals_s": {k: round(t.interval_s, 3) for k, t in sorted(self.trickles.items())},
            "counters": dict(self.counters),
            "drops": dict(self.drops),
            "refused": dict(self.refused),
            "lag_s": round(self.lag_s(now), 3),
            "apply_lag_s": {"count": self.apply_lag_count, "sum": round(self.apply_lag_sum_s, 6),
                            "max": round(self.apply_lag_max_s, 6)},
        }
