"""The routing core aggregate: a sans-I/O link-state router the daemon drives.

The daemon feeds it interface/carrier events and received datagrams, calls `tick(now)` at
`next_timer()`, and pulls `datagrams_to_send()`, `route_changes()` and `next_event()`.

Rules:
- No I/O, no clock, no global randomness: every entry point takes `now` (monotonic seconds) and the
  only randomness is the `random.Random` given at construction.
- `receive` never raises on remote input. Every datagram is decoded, then authenticated (signature and
  trust, or keepalive MAC) and checked against replay before it touches any state; every refusal is
  counted in `stats()["drops"]` by reason.
- Everything network-fed is bounded by the MAX_* constants in protocol.py; so are the output queues
  (overflow is counted, oldest events are dropped first).
- Our own links in SPF come from the live neighbour table (so a dead neighbour is routed around at
  once, before our new LSA is even flooded); other nodes' links come from the LSDB, two-way only.
- Every periodic timer is jittered: keepalives by the slot scheduler, everything else +-25 %.
- All interfaces share one beacon grid, and a keepalive due within one slot length is sent with the one
  that is due, so a node wakes once per keepalive interval to send, whatever its number of interfaces.
- Loop lag is data: the daemon reports how late each timer ran (`note_loop_lag`). While the moving
  average L of those lags (weight LOOP_LAG_EWMA_WEIGHT per sample, forgotten after LOOP_LAG_MEMORY_S
  without samples) is at least LOOP_LAG_MIN_S, an UP neighbour is declared dead only
  LOOP_LAG_GRACE_FACTOR x L (at most LOOP_LAG_GRACE_MAX_S) after its normal dead time: a host too busy
  to run us on time delays the peer's keepalives too. A single stall barely moves the average; on a
  quiet host nothing changes.
- Our own LSA originations are rate limited by a token bucket: a burst of LSA_BURST, refilled at one
  per LSA_MAX_HOLD_S, on top of the LSA_MIN_INTERVAL_S spacing. Bad news (a lost neighbour) does not
  wait for a token; good news (a neighbour up, a cost change, a refresh) does. A flapping link thus
  re-advertises its return at most ~1/s, and a failure is never delayed by earlier churn.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from x0node.proto import messages as m
from x0node.proto.events import (
    Event,
    MessageDropped,
    NeighbourDown,
    NeighbourUp,
    NodeJoined,
    NodeLeft,
    RoutesChanged,
    SlotChanged,
)
from x0node.proto.identity import Identity, mesh_address_of, verify
from x0node.proto.lsdb import LsaEntry, Lsdb
from x0node.proto.membership import Membership
from x0node.proto.neighbour import CHANGE_CLASS, CHANGE_COST, Neighbour, NeighbourState, ms
from x0node.proto.protocol import (
    ACK_DELAY_S,
    CLASS_ADVERTISE_DELAY_S,
    DEAD_NODE_TIMEOUT_S,
    FULL_HELLO_INTERVAL_S,
    HELLO_INTERVAL_S,
    HELLO_MISSED_DEAD,
    LSA_INITIAL_DELAY_S,
    LSA_MAX_AGE_S,
    LSA_MIN_INTERVAL_S,
    LSA_REFRESH_S,
    LSA_RETRANSMIT_S,
    MAX_ACK_ENTRIES,
    MAX_HELLO_NEIGHBOURS,
    MAX_INTERFACES,
    MAX_LSA_NEIGHBOURS,
    MAX_LSA_PREFIXES,
    MAX_NEIGHBOURS,
    MAX_NEIGHBOURS_PER_INTERFACE,
    MAX_PENDING_DATAGRAMS,
    MAX_PENDING_EVENTS,
    MAX_REMEMBERED_EPOCHS,
    MAX_RETRANSMIT_QUEUE,
    NEIGHBOUR_HOLD_FULL_HELLOS,
    REPLAY_WINDOW,
    SLOT_JITTER_FRACTION,
    SLOTS_PER_FRAME,
    SPF_DELAY_S,
    TRIGGERED_HELLO_MIN_INTERVAL_S,
)
from x0node.proto.quality import Quality
from x0node.proto.rib import Rib, Route, RouteChange
from x0node.proto.seqno import ReplayWindow, seq_newer, seq_next
from x0node.proto.slots import SlotScheduler
from x0node.proto.spf import SpfGraph, build_graph, shortest_paths
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError

JITTER_FRACTION = 0.25
SPF_MAX_HOLD_S = 0.1
"""Longest SPF hold while LSAs keep changing (back-off), see _schedule_spf."""
SPF_QUIET_S = 0.5
"""SPF runs further apart than this reset the hold to SPF_DELAY_S."""
MIN_PEER_INTERVAL_S = 0.01
MAX_PEER_INTERVAL_S = 10.0
"""A neighbour's announced keepalive interval is clamped to this range before it sets its dead timer."""
HOUSEKEEPING_INTERVAL_S = 1.0
"""LSDB aging and dead-node pruning are checked this often (+-25 %)."""
RETRANSMIT_BACKOFF_MAX = 8.0
LOOP_LAG_MIN_S = 0.01
"""Timer lateness below this is normal scheduling noise and changes nothing."""
LOOP_LAG_GRACE_FACTOR = 2.0
"""Dead-time grace per second of recent loop lag (the peer, on the same loaded host, lags too)."""
LOOP_LAG_GRACE_MAX_S = 2.0
LOOP_LAG_MEMORY_S = 10.0
"""Without a lag sample for this long, the average is forgotten."""
LOOP_LAG_EWMA_WEIGHT = 0.05
"""Weight of one timer's lag in the moving average (the daemon reports ~10-50 per second)."""
LSA_MAX_HOLD_S = 1.0
"""Sustained rate limit of our own LSA originations: one per this long (token refill period)."""
LSA_BURST = 4
"""Originations allowed back to back (at LSA_MIN_INTERVAL_S) before the rate limit applies."""
DROP_REASONS = (
    "decode",
    "no_interface",
    "left",
    "self",
    "bad_signature",
    "uncertified",
    "expired",
    "revoked",
    "replay",
    "stale",
    "unknown_sender",
    "unknown_origin",
    "bad_mac",
    "not_for_us",
    "limit_neighbours",
    "limit_lsdb",
    "limit_queue",
)


@dataclass(frozen=True)
class RouterConfig:
    """Tunables of the core (defaults from protocol.py; documented in docs/routing.md)."""

    hello_interval_s: float = HELLO_INTERVAL_S
    hello_missed_dead: int = HELLO_MISSED_DEAD
    full_hello_interval_s: float = FULL_HELLO_INTERVAL_S
    lsa_refresh_s: float = LSA_REFRESH_S
    lsa_max_age_s: float = LSA_MAX_AGE_S
    lsa_retransmit_s: float = LSA_RETRANSMIT_S
    dead_node_timeout_s: float = DEAD_NODE_TIMEOUT_S
    spf_delay_s: float = SPF_DELAY_S
    slots_per_frame: int = SLOTS_PER_FRAME
    slot_jitter_fraction: float = SLOT_JITTER_FRACTION
    prefixes: tuple[str, ...] = ()
    emit_drop_events: bool = True

    def __post_init__(self) -> None:
        if not 0.01 <= self.hello_interval_s <= 10.0:
            raise ValueError("hello_interval_s must be within [0.01, 10]")
        if not 1 <= self.hello_missed_dead <= 50:
            raise ValueError("hello_missed_dead must be within [1, 50]")
        if self.full_hello_interval_s < self.hello_interval_s:
            raise ValueError("full_hello_interval_s must be >= hello_interval_s")
        if len(self.prefixes) > MAX_LSA_PREFIXES:
            raise ValueError(f"at most {MAX_LSA_PREFIXES} prefixes")

    @property
    def dead_interval_s(self) -> float:
        return (self.hello_missed_dead + 0.5) * self.hello_interval_s


@dataclass(frozen=True)
class Outgoing:
    ifname: str
    dst: str | None  # None = MESH_MCAST_GROUP on that interface
    payload: bytes


@dataclass
class _Interface:
    name: str
    up: bool
    slots: SlotScheduler
    next_keepalive_s: float
    next_full_hello_s: float
    last_hello_sent_s: float = -1e9
    hello_wanted: bool = False
    ka_seq: int = 0


@dataclass
class _Pending:
    seq: int
    raw: bytes
    due_s: float
    backoff: float = 1.0


@dataclass
class _Session:
    """Per-origin signed-HELLO replay state (survives the neighbour entry, bounded). Windows are per
    interface: the same multicast HELLO may legitimately arrive on two of our interfaces."""

    epoch: int
    windows: dict[str, ReplayWindow] = field(default_factory=dict)  # per interface (<= MAX_INTERFACES)
    old_epochs: list[int] = field(default_factory=list)


class Router:
    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        config: RouterConfig | None = None,
        rng: random.Random | None = None,
        now: float = 0.0,
        perf_clock: Callable[[], float] | None = None,
    ) -> None:
        self.identity = identity
        self.me = identity.node_id
        self.trust = trust
        self.config = config or RouterConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self._perf = perf_clock  # only for SPF duration statistics; never affects decisions
        self.credential = Credential(identity.public_key, identity.certificate)  # type: ignore[arg-type]
        self.epoch = self.rng.randrange(1, 1 << 32)
        self.wall_offset_s: float | None = None
        self.ifaces: dict[str, _Interface] = {}
        self.nbrs: dict[tuple[str, bytes], Neighbour] = {}
        self.by_addr: dict[tuple[str, str], bytes] = {}
        self.sessions: dict[bytes, _Session] = {}
        self.lsdb = Lsdb(max_age_s=self.config.lsa_max_age_s)
        self.rib = Rib()
        self.members = Membership(self.config.dead_node_timeout_s)
        self.prefixes: tuple[str, ...] = tuple(self.config.prefixes)
        self.hello_seq = 0
        self.ack_seq = 0
        self.lsa_seq = 0
        self.left = False
        self._lsa_due_s: float | None = now + LSA_INITIAL_DELAY_S
        self._last_lsa_s = -1e9
        self._refresh_s = now + self._jitter(self.config.lsa_refresh_s)
        self._housekeeping_s = now + self._jitter(HOUSEKEEPING_INTERVAL_S)
        self._rxmt_due_s: float | None = None
        self._spf_due_s: float | None = None
        self._last_spf_s = -1e9
        self._spf_hold_s = self.config.spf_delay_s
        self._pending: dict[tuple[str, bytes], dict[bytes, _Pending]] = {}
        self._pending_count = 0
        self._acks: dict[tuple[str, bytes], list[tuple[bytes, int]]] = {}
        self._ack_due_s: float | None = None
        self._out: deque[Outgoing] = deque()
        self._changes: list[RouteChange] = []
        self._events: deque[Event] = deque()
        self._reach: dict[bytes, tuple[float, int]] = {}
        self._first_hop: dict[bytes, tuple[str, bytes]] = {}
        self._next_s: float | None = now
        self._now = now
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.counters: dict[str, int] = {
            "rx": 0,
            "tx": 0,
            "tx_bytes": 0,
            "lsa_installed": 0,
            "lsa_duplicate": 0,
            "lsa_originated": 0,
            "lsa_retransmitted": 0,
            "spf_runs": 0,
            "events_dropped": 0,
            "datagrams_dropped": 0,
            "neighbour_down": 0,
        }
        # certificate checks of signed HELLOs and LSAs: "ok" or the refusal's drop reason
        self.credential_checks: dict[str, int] = {"ok": 0}
        self.spf_last_ms: float | None = None
        self.spf_total_ms = 0.0
        self._lsa_tokens = float(LSA_BURST)
        self._lsa_tokens_at_s = now
        self._lag_avg_s = 0.0
        self._lag_at_s = -1e9
        self.loop_lag_max_s = 0.0
        self._ka_coalesce_s = self.config.hello_interval_s / self.config.slots_per_frame
        self._slot_origin_s = now + self.rng.uniform(0.0, self.config.hello_interval_s)

    # ------------------------------------------------------------------------------ helpers
    def _jitter(self, base: float) -> float:
        return base * (1.0 + self.rng.uniform(-JITTER_FRACTION, JITTER_FRACTION))

    def _emit(self, ev: Event) -> None:
        if len(self._events) >= MAX_PENDING_EVENTS:
            self._events.popleft()
            self.counters["events_dropped"] += 1
        self._events.append(ev)

    def _send(self, ifname: str, dst: str | None, payload: bytes) -> None:
        if len(self._out) >= MAX_PENDING_DATAGRAMS:
            self.counters["datagrams_dropped"] += 1
            return
        self._out.append(Outgoing(ifname, dst, payload))
        self.counters["tx"] += 1
        self.counters["tx_bytes"] += len(payload)

    def _drop(self, reason: str, ifname: str, src: str, now: float) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if self.config.emit_drop_events:
            self._emit(MessageDropped(now, reason, ifname, src))

    def _wall(self, now: float) -> float | None:
        return None if self.wall_offset_s is None else now + self.wall_offset_s

    def _up_neighbours(self) -> list[Neighbour]:
        return [n for n in self.nbrs.values() if n.state is NeighbourState.UP]

    def _arm(self, t: float) -> None:
        """A timer was set to `t`: keep the cached next-timer a lower bound (tick recomputes it)."""
        if self._next_s is not None and t < self._next_s:
            self._next_s = t

    def _schedule_spf(self, now: float, immediate: bool = False) -> None:
        """SPF after SPF_DELAY_S, with back-off while changes keep coming (in the spirit of RFC 8405):
        the hold doubles up to SPF_MAX_HOLD_S for runs closer than SPF_QUIET_S and resets after a
        quiet period. `immediate` (a lost neighbour) skips delay and hold."""
        if immediate:
            due = now
        else:
            due = max(now + self.config.spf_delay_s, self._last_spf_s + self._spf_hold_s)
        if self._spf_due_s is None or due < self._spf_due_s:
            self._spf_due_s = due
            self._arm(due)

    def _lsa_tokens_at(self, now: float) -> float:
        """Origination tokens in the bucket at `now` (refilled since the last origination)."""
        return min(float(LSA_BURST), self._lsa_tokens + (now - self._lsa_tokens_at_s) / LSA_MAX_HOLD_S)

    def _lsa_token_time(self, now: float) -> float:
        """Earliest time at which a whole origination token is available."""
        tokens = self._lsa_tokens_at(now)
        return now if tokens >= 1.0 else now + (1.0 - tokens) * LSA_MAX_HOLD_S

    def _schedule_lsa(self, now: float, bad_news: bool = False) -> None:
        due = max(now, self._last_lsa_s + LSA_MIN_INTERVAL_S)
        if not bad_news:
            due = max(due, self._lsa_token_time(now))
        if self._lsa_due_s is None or due < self._lsa_due_s:
            self._lsa_due_s = due
            self._arm(due)

    def _advertise(self, change: int, now: float) -> None:
        """React to a neighbour's advertised (class, cost) change."""
        if change == CHANGE_COST:
            self._schedule_lsa(now)
            self._schedule_spf(now)
        elif change == CHANGE_CLASS:
            due = now + self._jitter(CLASS_ADVERTISE_DELAY_S)
            if self._lsa_due_s is None or due < self._lsa_due_s:
                self._lsa_due_s = due
                self._arm(due)

    def _want_hello(self, ifname: str) -> None:
        iface = self.ifaces.get(ifname)
        if iface is not None and iface.up:
            iface.hello_wanted = True
            self._arm(iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S)

    # ------------------------------------------------------------------------------ interfaces
    def set_wall_clock(self, wall_now: float, now: float) -> None:
        """Tell the core the wall-clock time (unix s) so certificate expiry is enforced."""
        self.wall_offset_s = wall_now - now

    def add_interface(self, ifname: str, now: float, up: bool = True) -> None:
        if ifname in self.ifaces:
            return
        if len(self.ifaces) >= MAX_INTERFACES:
            raise ValueError(f"at most {MAX_INTERFACES} interfaces")
        slots = SlotScheduler(
            self.me,
            self.config.hello_interval_s,
            now,
            self.rng,
            self.config.slots_per_frame,
            self.config.slot_jitter_fraction,
            origin_s=self._slot_origin_s,
        )
        iface = _Interface(
            ifname, up, slots, slots.next_send(now), now + self._jitter(self.config.full_hello_interval_s)
        )
        iface.hello_wanted = up
        self.ifaces[ifname] = iface
        self._next_s = None

    def remove_interface(self, ifname: str, now: float) -> None:
        self._next_s = None
        if ifname not in self.ifaces:
            return
        self._drop_interface_neighbours(ifname, now, "interface_removed")
        del self.ifaces[ifname]
        if self._spf_due_s is not None and self._spf_due_s <= now:
            self._spf_due_s = None
            self._run_spf(now)

    def link_up(self, ifname: str, now: float) -> None:
        self._next_s = None
        iface = self.ifaces.get(ifname)
        if iface is None or iface.up:
            return
        iface.up = True
        iface.hello_wanted = True
        iface.next_keepalive_s = iface.slots.next_send(now)
        self._next_s = None

    def link_down(self, ifname: str, now: float) -> None:
        self._next_s = None
        iface = self.ifaces.get(ifname)
        if iface is None or not iface.up:
            return
        iface.up = False
        self._drop_interface_neighbours(ifname, now, "link_down")
        if self._spf_due_s is not None and self._spf_due_s <= now:
            self._spf_due_s = None
            self._run_spf(now)

    def _drop_interface_neighbours(self, ifname: str, now: float, reason: str) -> None:
        for key in [k for k in self.nbrs if k[0] == ifname]:
            self._neighbour_gone(key, now, reason)

    def set_throughput(self, ifname: str, neighbour_id: bytes | str, bps: float, now: float) -> None:
        nid = bytes.fromhex(neighbour_id) if isinstance(neighbour_id, str) else neighbour_id
        n = self.nbrs.get((ifname, nid))
        if n is None or not bps > 0:
            return
        n.throughput_bps = float(bps)
        if n.state is NeighbourState.UP:
            self._advertise(n.refresh_advertised(now), now)

    def set_prefixes(self, prefixes: list[str] | tuple[str, ...], now: float) -> None:
        if len(prefixes) > MAX_LSA_PREFIXES:
            raise ValueError(f"at most {MAX_LSA_PREFIXES} prefixes")
        self.prefixes = tuple(str(ipaddress.ip_network(p, strict=True)) for p in prefixes)
        self._schedule_lsa(now)

    def update_revocations(self, crl: object, now: float) -> bool:
        """Install a newer signed revocation list and forget every revoked node at once."""
        self._next_s = None
        if not self.trust.update_revocations(crl):  # type: ignore[arg-type]
            return False
        for key in [k for k in self.nbrs if self.trust.is_revoked(k[1])]:
            self._neighbour_gone(key, now, "revoked")
        for e in self.lsdb.entries():
            if e.lsa is not None and self.trust.is_revoked(e.origin):
                self.lsdb.tombstone(e.origin, now)
                if self.members.leave(e.origin):
                    self._emit(NodeLeft(now, e.origin.hex(), "revoked"))
        self._schedule_spf(now)
        return True

    # ------------------------------------------------------------------------------ receive
    def receive(self, ifname: str, src: str, data: bytes, now: float) -> None:
        """Handle one datagram. Never raises on remote input."""
        self.counters["rx"] += 1
        self._now = now
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray / memoryview from the adapter
        iface = self.ifaces.get(ifname)
        if iface is None or not iface.up:
            self._drop("no_interface", ifname, src, now)
            return
        if self.left and (len(data) < 2 or data[1] != m.T_ACK):
            self._drop("left", ifname, src, now)  # after leave() only ACKs of our WITHDRAW matter
            return
        dup = self.lsdb.by_raw(data)
        if dup is not None:
            self._on_duplicate(iface, src, dup, now)
            return
        try:
            msg = m.decode(data)
        except DecodeError:
            self._drop("decode", ifname, src, now)
            return
        if isinstance(msg, m.Keepalive):
            self._on_keepalive(iface, src, msg, data, now)
        elif isinstance(msg, m.Hello):
            self._on_hello(iface, src, msg, data, now)
        elif isinstance(msg, m.Lsa):
            self._on_lsa(iface, src, msg, data, now)
        elif isinstance(msg, m.Ack):
            self._on_ack(iface, src, msg, data, now)
        else:
            self._on_withdraw(iface, src, msg, data, now)

    def _on_duplicate(self, iface: _Interface, src: str, entry: LsaEntry, now: float) -> None:
        """An exact copy of an LSA/WITHDRAW we hold: already verified, changes nothing but acks."""
        sender = self.by_addr.get((iface.name, src))
        if sender is None:
            self._drop("unknown_sender", iface.name, src, now)
            return
        nkey = (iface.name, sender)
        self.counters["lsa_duplicate"] += 1
        self._implicit_ack(nkey, entry.origin, entry.seq)
        self._queue_ack(nkey, entry.origin, entry.seq, now)

    def _check_credential(self, cred: Credential, ifname: str, src: str, data: bytes, now: float) -> bool:
        reason = self.trust.check(cred, self._wall(now))
        if reason is None:
            payload, sig = m.signed_bytes(data)
            reason = None if verify(cred.public_key, payload, sig) else "bad_signature"
        self.credential_checks[reason or "ok"] = self.credential_checks.get(reason or "ok", 0) + 1
        if reason is not None:
            self._drop(reason, ifname, src, now)
            return False
        return True

    # ---- HELLO
    def _on_hello(self, iface: _Interface, src: str, msg: m.Hello, data: bytes, now: float) -> None:
        sender = msg.sender
        if sender == self.me:
            self._drop("self", iface.name, src, now)
            return
        if not self._check_credential(msg.credential, iface.name, src, data, now):
            return
        sess = self.sessions.get(sender)
        new_session = False
        if sess is None or sess.epoch != msg.epoch:
            if sess is not None and msg.epoch in sess.old_epochs:
                self._drop("replay", iface.name, src, now)
                return
            key = (iface.name, sender)
            if key not in self.nbrs and not self._neighbour_room(iface.name):
                self._drop("limit_neighbours", iface.name, src, now)
                return
            old = [] if sess is None else (sess.old_epochs + [sess.epoch])[-MAX_REMEMBERED_EPOCHS:]
            if sess is None and len(self.sessions) >= 2 * MAX_NEIGHBOURS:
                self._forget_idle_sessions()
            sess = _Session(msg.epoch, old_epochs=old)
            self.sessions[sender] = sess
            new_session = True
        window = sess.windows.get(iface.name)
        if window is None:
            window = sess.windows[iface.name] = ReplayWindow(REPLAY_WINDOW, 32)
        if not window.accept(msg.seq):
            self._drop("replay", iface.name, src, now)
            return
        key = (iface.name, sender)
        n = self.nbrs.get(key)
        pair_key = None
        if n is None or new_session or n.epoch != msg.epoch:
            pair_key = self.identity.pairwise_key(msg.credential.public_key, self.epoch, msg.epoch)
            if pair_key is None:
                self._drop("bad_signature", iface.name, src, now)
                return
        if n is None:
            if not self._neighbour_room(iface.name):
                self._drop("limit_neighbours", iface.name, src, now)
                return
            n = Neighbour(
                iface.name,
                sender,
                msg.credential.public_key,
                src,
                msg.epoch,
                pair_key,
                min(max(msg.interval_ms / 1000.0, MIN_PEER_INTERVAL_S), MAX_PEER_INTERVAL_S),
                now,
            )
            self.nbrs[key] = n
            self.by_addr[(iface.name, src)] = sender
            self._want_hello(iface.name)  # let it learn about us quickly
        elif pair_key is not None:
            n.reset_session(msg.epoch, pair_key)
            self._want_hello(iface.name)
        if n.address != src:
            self.by_addr.pop((iface.name, n.address), None)
            n.address = src
            self.by_addr[(iface.name, src)] = sender
        n.interval_s = min(max(msg.interval_ms / 1000.0, MIN_PEER_INTERVAL_S), MAX_PEER_INTERVAL_S)
        n.heard(now, msg.ts_ms)
        n.last_hello_s = now
        iface.slots.forget(sender)
        listed = next((e for e in msg.neighbours if e.node_id == self.me), None)
        if listed is not None:
            n.rtt_sample(now, listed.echo_ts_ms, listed.echo_delay_ms)
            self._two_way(n, now)
        elif n.state is NeighbourState.UP:
            # it no longer hears us (restarted, or lost our session): back to one-way
            self._neighbour_gone(key, now, "lost_us", keep=True)
            self._want_hello(iface.name)

    def _neighbour_room(self, ifname: str) -> bool:
        on_if = sum(1 for k in self.nbrs if k[0] == ifname)
        return on_if < MAX_NEIGHBOURS_PER_INTERFACE and len(self.nbrs) < MAX_NEIGHBOURS

    def _forget_idle_sessions(self) -> None:
        active = {k[1] for k in self.nbrs}
        for nid in [s for s in self.sessions if s not in active]:
            del self.sessions[nid]

    def _two_way(self, n: Neighbour, now: float) -> None:
        if n.state is NeighbourState.UP:
            return
        n.state = NeighbourState.UP
        n.up_since_s = now
        self._arm(n.dead_at(self.config.hello_missed_dead, 0.0))
        n.refresh_advertised(now, force=True)
        self._emit(NeighbourUp(now, n.ifname, n.node_id.hex(), n.address))
        self._schedule_lsa(now)
        self._schedule_spf(now)
        self._want_hello(n.ifname)
        # database exchange: send it everything we have, reliably
        for e in self.lsdb.entries():
            if e.raw and e.origin != n.node_id:
                self._queue_reliable((n.ifname, n.node_id), e.origin, e.seq, e.raw, now, send_now=True)

    def _neighbour_gone(self, key: tuple[str, bytes], now: float, reason: str, keep: bool = False) -> None:
        n = self.nbrs.get(key)
        if n is None:
            return
        was_up = n.state is NeighbourState.UP
        if keep:
            n.state = NeighbourState.INIT
            n.up_since_s = None
        else:
            del self.nbrs[key]
            if self.by_addr.get((key[0], n.address)) == key[1]:
                del self.by_addr[(key[0], n.address)]
            iface = self.ifaces.get(key[0])
            if iface is not None:
                iface.slots.forget(key[1])
        pend = self._pending.pop(key, None)
        if pend:
            self._pending_count -= len(pend)
        self._acks.pop(key, None)
        if was_up:
            self._emit(NeighbourDown(now, key[0], key[1].hex(), reason))
            self.counters["neighbour_down"] += 1
            self._schedule_lsa(now, bad_news=True)
            # a lost neighbour is routed around at once (no batching delay)
            self._schedule_spf(now, immediate=True)

    # ---- KEEPALIVE
    def _on_keepalive(self, iface: _Interface, src: str, msg: m.Keepalive, data: bytes, now: float) -> None:
        sender = self.by_addr.get((iface.name, src))
        n = None if sender is None else self.nbrs.get((iface.name, sender))
        if n is None:
            self._drop("unknown_sender", iface.name, src, now)
            self._want_hello(iface.name)
            return
        header = msg.header()
        entry = None
        for e in msg.entries:
            if m.keepalive_mac_ok(n.key, n.node_id, self.me, header, e):
                entry = e
                break
        if entry is None:
            benign = not msg.entries or n.state is NeighbourState.INIT
            self._drop("not_for_us" if benign else "bad_mac", iface.name, src, now)
            self._want_hello(iface.name)  # it may have lost our session
            return
        if not n.ka_window.accept(msg.seq):
            self._drop("replay", iface.name, src, now)
            return
        n.keepalive_seen(msg.seq)
        n.heard(now, msg.ts_ms)
        n.rtt_sample(now, entry.echo_ts_ms, entry.echo_delay_ms)
        if iface.slots.observe(now, n.node_id):
            self._emit(SlotChanged(now, iface.name, iface.slots.slot))
        if n.state is NeighbourState.INIT:
            self._two_way(n, now)
        else:
            self._advertise(n.refresh_advertised(now), now)

    # ---- LSA
    def _flooded_from(
        self, iface: _Interface, src: str, origin: bytes, seq: int, data: bytes, now: float
    ) -> tuple[str, bytes] | None:
        """The neighbour key a flooded LSA/WITHDRAW came from, or None when there is nothing more to do:
        the sender is unknown (dropped), or the bytes are identical to the copy we hold (already
        verified, changes nothing: acknowledged only)."""
        sender = self.by_addr.get((iface.name, src))
        if sender is None:
            self._drop("unknown_sender", iface.name, src, now)
            return None
        nkey = (iface.name, sender)
        cur = self.lsdb.get(origin)
        if cur is not None and cur.raw == data:
            self.counters["lsa_duplicate"] += 1
            self._implicit_ack(nkey, origin, seq)
            self._queue_ack(nkey, origin, seq, now)
            return None
        return nkey

    def _on_lsa(self, iface: _Interface, src: str, msg: m.Lsa, data: bytes, now: float) -> None:
        nkey = self._flooded_from(iface, src, msg.origin, msg.seq, data, now)
        if nkey is None:
            return
        origin = msg.origin
        cur = self.lsdb.get(origin)
        if origin == self.me:
            if msg.credential.public_key == self.identity.public_key and self._check_credential(
                msg.credential, iface.name, src, data, now
            ):
                self._queue_ack(nkey, origin, msg.seq, now)
                mine = self.lsdb.get(self.me)
                if seq_newer(msg.seq, self.lsa_seq) or (
                    msg.seq == self.lsa_seq and (mine is None or mine.raw != data)
                ):
                    # an earlier incarnation of us: jump past its sequence number
                    self.lsa_seq = msg.seq
                    self._schedule_lsa(now)
            else:
                self._drop("self", iface.name, src, now)
            return
        if cur is not None and not seq_newer(msg.seq, cur.seq):
            # old (or same seq, different bytes): never installed. If the sender lacks our newer copy
            # and it is not already on its way, send it, but only after verifying, so that unsigned
            # junk costs no transmissions.
            pend = self._pending.get(nkey, {}).get(origin)
            in_flight = pend is not None and pend.seq == cur.seq
            differs = seq_newer(cur.seq, msg.seq) or cur.raw != data  # same seq, other content: tell it
            if not in_flight and cur.raw and differs:
                if not self._check_credential(msg.credential, iface.name, src, data, now):
                    return
                self._queue_reliable(nkey, origin, cur.seq, cur.raw, now, send_now=True)
            self._drop("stale", iface.name, src, now)
            return
        if not self._check_credential(msg.credential, iface.name, src, data, now):
            return
        if cur is not None and cur.public_key != msg.credential.public_key:
            self._drop("bad_signature", iface.name, src, now)
            return
        if not self.lsdb.has_room_for(origin):
            self._drop("limit_lsdb", iface.name, src, now)
            return
        self.lsdb.install(LsaEntry(origin, msg.seq, data, msg, now, msg.credential.public_key))
        self.counters["lsa_installed"] += 1
        role = msg.credential.certificate.role if msg.credential.certificate is not None else None
        if self.members.register(origin, role, now):
            self._emit(NodeJoined(now, origin.hex(), mesh_address_of(origin)))
        self._queue_ack(nkey, origin, msg.seq, now)
        self._flood(origin, msg.seq, data, now, exclude=nkey)
        self._schedule_spf(now)

    # ---- WITHDRAW
    def _on_withdraw(self, iface: _Interface, src: str, msg: m.Withdraw, data: bytes, now: float) -> None:
        nkey = self._flooded_from(iface, src, msg.origin, msg.seq, data, now)
        if nkey is None:
            return
        origin = msg.origin
        cur = self.lsdb.get(origin)
        if origin == self.me:
            payload, sig = m.signed_bytes(data)
            if verify(self.identity.public_key, payload, sig):
                self._queue_ack(nkey, origin, msg.seq, now)
                if not self.left and seq_newer(msg.seq, self.lsa_seq):
                    self.lsa_seq = msg.seq
                    self._schedule_lsa(now)
            else:
                self._drop("self", iface.name, src, now)
            return
        if cur is None:
            self._drop("unknown_origin", iface.name, src, now)
            return
        payload, sig = m.signed_bytes(data)
        if not verify(cur.public_key, payload, sig):
            self._drop("bad_signature", iface.name, src, now)
            return
        if not seq_newer(msg.seq, cur.seq):
            self._drop("stale", iface.name, src, now)
            return
        self.lsdb.install(LsaEntry(origin, msg.seq, data, None, now, cur.public_key))
        self.counters["lsa_installed"] += 1
        if self.members.leave(origin):
            self._emit(NodeLeft(now, origin.hex(), "withdraw"))
        self._queue_ack(nkey, origin, msg.seq, now)
        self._flood(origin, msg.seq, data, now, exclude=nkey)
        gone = [k for k in self.nbrs if k[1] == origin]
        if gone:
            self._flush_acks()  # acknowledge before forgetting the leaving neighbour
        for key in gone:
            self._neighbour_gone(key, now, "withdraw")
        self._schedule_spf(now)

    # ---- ACK
    def _on_ack(self, iface: _Interface, src: str, msg: m.Ack, data: bytes, now: float) -> None:
        n = self.nbrs.get((iface.name, msg.sender))
        if n is None:
            self._drop("unknown_sender", iface.name, src, now)
            return
        payload, sig = m.signed_bytes(data)
        if not verify(n.public_key, payload, sig):
            self._drop("bad_signature", iface.name, src, now)
            return
        if not n.ack_window.accept(msg.seq):
            self._drop("replay", iface.name, src, now)
            return
        for origin, seq in msg.entries:
            self._implicit_ack((iface.name, msg.sender), origin, seq)

    # ------------------------------------------------------------------------------ flooding
    def _implicit_ack(self, nkey: tuple[str, bytes], origin: bytes, seq: int) -> None:
        pend = self._pending.get(nkey)
        if pend is None:
            return
        p = pend.get(origin)
        if p is not None and not seq_newer(p.seq, seq):
            del pend[origin]
            self._pending_count -= 1

    def _queue_reliable(
        self, nkey: tuple[str, bytes], origin: bytes, seq: int, raw: bytes, now: float, send_now: bool
    ) -> None:
        pend = self._pending.setdefault(nkey, {})
        if origin not in pend:
            if self._pending_count >= MAX_RETRANSMIT_QUEUE:
                self.drops["limit_queue"] += 1
                return
            self._pending_count += 1
        due = now + self._jitter(self.config.lsa_retransmit_s)
        pend[origin] = _Pending(seq, raw, due)
        if self._rxmt_due_s is None or due < self._rxmt_due_s:
            self._rxmt_due_s = due
            self._arm(due)
        if send_now:
            n = self.nbrs.get(nkey)
            if n is not None:
                self._send(nkey[0], n.address, raw)

    def _flood(
        self, origin: bytes, seq: int, raw: bytes, now: float, exclude: tuple[str, bytes] | None
    ) -> None:
        per_if: dict[str, list[Neighbour]] = {}
        for key, n in self.nbrs.items():
            if n.state is NeighbourState.UP and key != exclude:
                self._queue_reliable(key, origin, seq, raw, now, send_now=False)
                per_if.setdefault(key[0], []).append(n)
        for ifname, lst in per_if.items():
            self._send(ifname, None if len(lst) > 1 else lst[0].address, raw)

    def _queue_ack(self, nkey: tuple[str, bytes], origin: bytes, seq: int, now: float) -> None:
        q = self._acks.setdefault(nkey, [])
        if len(q) < 4 * MAX_ACK_ENTRIES:
            q.append((origin, seq))
        if self._ack_due_s is None:
            self._ack_due_s = now + ACK_DELAY_S
            self._arm(self._ack_due_s)

    def _flush_acks(self) -> None:
        for nkey, q in self._acks.items():
            n = self.nbrs.get(nkey)
            if n is None or not q:
                continue
            for i in range(0, len(q), MAX_ACK_ENTRIES):
                self.ack_seq = seq_next(self.ack_seq)
                ack = m.Ack(self.me, self.ack_seq, tuple(q[i : i + MAX_ACK_ENTRIES]))
                self._send(nkey[0], n.address, m.sign(ack, self.identity))
        self._acks.clear()
        self._ack_due_s = None

    # ------------------------------------------------------------------------------ origination
    def _my_links(self) -> list[m.LsaLink]:
        best: dict[bytes, tuple[int, int]] = {}
        for n in self._up_neighbours():
            c = (n.adv_cost, int(n.adv_quality))
            if n.node_id not in best or c < best[n.node_id]:
                best[n.node_id] = c
        links = [m.LsaLink(nid, c, q) for nid, (c, q) in sorted(best.items())]
        return links[:MAX_LSA_NEIGHBOURS]

    def _originate(self, now: float) -> None:
        self._lsa_tokens = max(0.0, self._lsa_tokens_at(now) - 1.0)
        self._lsa_tokens_at_s = now
        self.lsa_seq = seq_next(self.lsa_seq)
        lsa = m.Lsa(self.credential, self.lsa_seq, tuple(self._my_links()), self.prefixes)
        raw = m.sign(lsa, self.identity)
        self.lsdb.install(LsaEntry(self.me, self.lsa_seq, raw, lsa, now, self.identity.public_key))
        self.counters["lsa_originated"] += 1
        self._last_lsa_s = now
        self._refresh_s = now + self._jitter(self.config.lsa_refresh_s)
        self._flood(self.me, self.lsa_seq, raw, now, exclude=None)
        self._schedule_spf(now)

    def leave(self, now: float) -> None:
        """Graceful leave: flood a signed WITHDRAW; afterwards the router ignores input."""
        self._next_s = None
        if self.left:
            return
        self.lsa_seq = seq_next(self.lsa_seq)
        raw = m.sign(m.Withdraw(self.me, self.lsa_seq), self.identity)
        self.lsdb.install(LsaEntry(self.me, self.lsa_seq, raw, None, now, self.identity.public_key))
        self._flood(self.me, self.lsa_seq, raw, now, exclude=None)
        self.left = True
        self._lsa_due_s = None
        self._changes.extend(self.rib.withdraw_all())

    # ------------------------------------------------------------------------------ hellos
    def _hello_neighbours(self, ifname: str, now: float) -> tuple[m.HelloNeighbour, ...]:
        out = []
        for key, n in self.nbrs.items():
            if key[0] == ifname:
                ts, delay = n.echo(now)
                out.append(m.HelloNeighbour(n.node_id, ts, delay))
        return tuple(out[:MAX_HELLO_NEIGHBOURS])

    def _send_full_hello(self, iface: _Interface, now: float) -> None:
        self.hello_seq = seq_next(self.hello_seq)
        hello = m.Hello(
            self.credential,
            self.hello_seq,
            self.epoch,
            ms(now),
            max(1, min(65535, round(self.config.hello_interval_s * 1000))),
            self._hello_neighbours(iface.name, now),
        )
        self._send(iface.name, None, m.sign(hello, self.identity))
        iface.last_hello_sent_s = now
        iface.hello_wanted = False
        iface.next_full_hello_s = now + self._jitter(self.config.full_hello_interval_s)

    def _send_keepalive(self, iface: _Interface, now: float) -> None:
        iface.ka_seq = (iface.ka_seq + 1) & 0xFFFF
        ts = ms(now)
        nbrs = [n for k, n in self.nbrs.items() if k[0] == iface.name][:MAX_HELLO_NEIGHBOURS]
        head = m.keepalive_header(iface.ka_seq, ts, len(nbrs))
        entries = []
        for n in nbrs:
            ets, delay = n.echo(now)
            entries.append(
                m.KeepaliveEntry(ets, delay, m.keepalive_mac(n.key, self.me, n.node_id, head, ets, delay))
            )
        self._send(iface.name, None, m.Keepalive(iface.ka_seq, ts, tuple(entries)).encode())

    # ------------------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Run every timer due at `now`."""
        self._next_s = None
        self._now = now
        if self.left:
            self._tick_retransmit(now)
            return
        cfg = self.config
        for iface in self.ifaces.values():
            if not iface.up:
                continue
            if now >= iface.next_full_hello_s or (
                iface.hello_wanted and now >= iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S
            ):
                self._send_full_hello(iface, now)
            if now + self._ka_coalesce_s >= iface.next_keepalive_s:
                self._send_keepalive(iface, now)
                iface.next_keepalive_s = iface.slots.next_send(now)
        init_hold = NEIGHBOUR_HOLD_FULL_HELLOS * cfg.full_hello_interval_s
        grace = self._lag_grace(now)
        for key, n in list(self.nbrs.items()):
            if now >= self._dead_time(n, init_hold, grace):
                self._neighbour_gone(key, now, "dead")
        if self._ack_due_s is not None and now >= self._ack_due_s:
            self._flush_acks()
        self._tick_retransmit(now)
        if now >= self._refresh_s:
            self._schedule_lsa(now)
        if self._lsa_due_s is not None and now >= self._lsa_due_s:
            self._lsa_due_s = None
            self._originate(now)
        if now >= self._housekeeping_s:
            self._housekeeping_s = now + self._jitter(HOUSEKEEPING_INTERVAL_S)
            gone = self.lsdb.expire(now, keep=self.me)
            for origin in gone:
                if self.members.leave(origin):
                    self._emit(NodeLeft(now, origin.hex(), "aged"))
            if gone:
                self._schedule_spf(now)
            for nid in self.members.prune_due(now):
                self.lsdb.tombstone(nid, now)
                if self.members.leave(nid):
                    self._emit(NodeLeft(now, nid.hex(), "unreachable"))
        if self._spf_due_s is not None and now >= self._spf_due_s:
            self._spf_due_s = None
            self._run_spf(now)

    def _tick_retransmit(self, now: float) -> None:
        if self._rxmt_due_s is None or now < self._rxmt_due_s:
            return
        nxt: float | None = None
        for nkey, pend in self._pending.items():
            n = self.nbrs.get(nkey)
            if n is None:
                continue
            for p in pend.values():
                if now >= p.due_s:
                    self._send(nkey[0], n.address, p.raw)
                    self.counters["lsa_retransmitted"] += 1
                    p.backoff = min(RETRANSMIT_BACKOFF_MAX, p.backoff * 2)
                    p.due_s = now + self._jitter(self.config.lsa_retransmit_s * p.backoff)
                if nxt is None or p.due_s < nxt:
                    nxt = p.due_s
        self._rxmt_due_s = nxt

    def note_loop_lag(self, lag_s: float, now: float) -> None:
        """The daemon's loop ran a timer `lag_s` late (measured by the adapter; data, not a clock)."""
        self._now = max(self._now, now)
        lag_s = min(max(0.0, lag_s), LOOP_LAG_GRACE_MAX_S)
        self.loop_lag_max_s = max(self.loop_lag_max_s, lag_s)
        if now - self._lag_at_s > LOOP_LAG_MEMORY_S:
            self._lag_avg_s = 0.0
        self._lag_avg_s += LOOP_LAG_EWMA_WEIGHT * (lag_s - self._lag_avg_s)
        self._lag_at_s = now
        self._next_s = None

    def _dead_time(self, n: Neighbour, init_hold_s: float, grace_s: float) -> float:
        """When neighbour n is declared dead: its own deadline, plus the loop-lag grace once UP."""
        base = n.dead_at(self.config.hello_missed_dead, init_hold_s)
        return base + grace_s if n.state is NeighbourState.UP else base

    def _lag_grace(self, now: float) -> float:
        if now - self._lag_at_s > LOOP_LAG_MEMORY_S or self._lag_avg_s < LOOP_LAG_MIN_S:
            return 0.0
        return min(LOOP_LAG_GRACE_MAX_S, LOOP_LAG_GRACE_FACTOR * self._lag_avg_s)

    def next_timer(self) -> float | None:
        """Absolute time of the next due timer."""
        if self._next_s is not None:
            return self._next_s
        cand: list[float] = []
        if not self.left:
            cfg = self.config
            for iface in self.ifaces.values():
                if iface.up:
                    cand.append(iface.next_keepalive_s)
                    cand.append(iface.next_full_hello_s)
                    if iface.hello_wanted:
                        cand.append(iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S)
            init_hold = NEIGHBOUR_HOLD_FULL_HELLOS * cfg.full_hello_interval_s
            grace = self._lag_grace(self._now)
            for n in self.nbrs.values():
                cand.append(self._dead_time(n, init_hold, grace))
            cand.append(self._refresh_s)
            cand.append(self._housekeeping_s)
            for t in (self._lsa_due_s, self._spf_due_s, self._ack_due_s):
                if t is not None:
                    cand.append(t)
        if self._rxmt_due_s is not None:
            cand.append(self._rxmt_due_s)
        self._next_s = min(cand) if cand else None
        return self._next_s

    # ------------------------------------------------------------------------------ SPF and RIB
    def _graph_links(self) -> dict[bytes, list[tuple[bytes, int]]]:
        links: dict[bytes, list[tuple[bytes, int]]] = {}
        for origin, lsa in self.lsdb.lsas().items():
            if origin == self.me:
                continue
            links[origin] = [(ln.node_id, ln.cost) for ln in lsa.links]
        mine: dict[bytes, int] = {}
        for n in self._up_neighbours():
            c = n.adv_cost or 1
            if c < mine.get(n.node_id, 1 << 30):
                mine[n.node_id] = c
        links[self.me] = sorted(mine.items())
        return links

    def _run_spf(self, now: float) -> None:
        t0 = self._perf() if self._perf else None
        if now - self._last_spf_s < SPF_QUIET_S:
            self._spf_hold_s = min(SPF_MAX_HOLD_S, self._spf_hold_s * 2)
        else:
            self._spf_hold_s = self.config.spf_delay_s
        self._last_spf_s = now
        links = self._graph_links()
        ids, index, graph = build_graph(links)
        dist, first = shortest_paths(graph, index[self.me])
        # first hop node -> best (ifname, neighbour) link to it: lowest cost, then ifname
        best_link: dict[bytes, Neighbour] = {}
        for n in self._up_neighbours():
            b = best_link.get(n.node_id)
            if b is None or (n.adv_cost, n.ifname) < (b.adv_cost, b.ifname):
                best_link[n.node_id] = n
        desired: dict[str, Route] = {}
        prefix_best: dict[str, tuple[float, bytes, Route]] = {}
        reach: dict[bytes, tuple[float, int]] = {}
        first_hop: dict[bytes, tuple[str, bytes]] = {}
        lsas = self.lsdb.lsas()
        hops = self._hop_counts(graph, index[self.me])
        mine = set(self.prefixes)
        for i, nid in enumerate(ids):
            if nid == self.me or first[i] < 0:
                continue
            via = best_link.get(ids[first[i]])
            if via is None:
                continue
            metric = int(dist[i])
            reach[nid] = (metric, hops[i])
            first_hop[nid] = (via.ifname, via.node_id)
            desired[f"{mesh_address_of(nid)}/128"] = Route(
                f"{mesh_address_of(nid)}/128", via.ifname, via.address, metric, nid.hex()
            )
            lsa = lsas.get(nid)
            if lsa is None:
                continue
            for p in lsa.prefixes:
                if p in mine:
                    continue
                r = Route(p, via.ifname, via.address, metric, nid.hex())
                cur = prefix_best.get(p)
                if cur is None or (metric, nid) < (cur[0], cur[1]):
                    prefix_best[p] = (metric, nid, r)
        for p, (_, _, r) in prefix_best.items():
            desired.setdefault(p, r)
        changes = self.rib.diff(desired)
        if changes:
            self._changes.extend(changes)
            self._emit(
                RoutesChanged(
                    now,
                    sum(1 for c in changes if c.op == "add"),
                    sum(1 for c in changes if c.op == "replace"),
                    sum(1 for c in changes if c.op == "del"),
                )
            )
        self._reach = reach
        self._first_hop = first_hop
        self.members.update_reachability(reach, now)
        self.counters["spf_runs"] += 1
        if t0 is not None and self._perf is not None:
            self.spf_last_ms = (self._perf() - t0) * 1000.0
            self.spf_total_ms += self.spf_last_ms

    @staticmethod
    def _hop_counts(graph: SpfGraph, src: int) -> list[int]:
        adj = graph.edges
        hops = [-1] * len(adj)
        hops[src] = 0
        frontier = [src]
        while frontier:
            nxt = []
            for u in frontier:
                for v, _ in adj[u]:
                    if hops[v] < 0:
                        hops[v] = hops[u] + 1
                        nxt.append(v)
            frontier = nxt
        return hops

    # ------------------------------------------------------------------------------ outputs
    def datagrams_to_send(self) -> list[Outgoing]:
        out = list(self._out)
        self._out.clear()
        return out

    def route_changes(self) -> list[RouteChange]:
        out = self._changes
        self._changes = []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------------------ views
    def neighbours(self, now: float | None = None) -> list[dict]:
        t = self._now if now is None else now
        return [n.view(t) for _, n in sorted(self.nbrs.items())]

    def routes(self) -> list[dict]:
        return [r.view() for _, r in sorted(self.rib.installed.items())]

    def rtt_histograms(self) -> dict[str, tuple[tuple[int, ...], float]]:
        """Per neighbour node id: RTT sample counts per bucket (RTT_HISTOGRAM_BOUNDS_MS, then above) and
        their sum in ms, added up over the interfaces it is a neighbour on."""
        out: dict[str, tuple[tuple[int, ...], float]] = {}
        for (_, nid), n in sorted(self.nbrs.items()):
            counts, total = out.get(nid.hex(), ((0,) * len(n.rtt_hist), 0.0))
            out[nid.hex()] = (tuple(a + b for a, b in zip(counts, n.rtt_hist, strict=True)), total + n.rtt_hist_sum_ms)
        return out

    def topology(self) -> dict:
        nodes = []
        edges = []
        lsas = self.lsdb.lsas()
        for origin, lsa in sorted(lsas.items()):
            nodes.append(
                {
                    "node_id": origin.hex(),
                    "mesh_address": mesh_address_of(origin),
                    "self": origin == self.me,
                    "reachable": origin == self.me or origin in self._reach,
                    "prefixes": list(lsa.prefixes),
                    "role": None if lsa.credential.certificate is None else int(lsa.credential.certificate.role),
                }
            )
            for ln in lsa.links:
                other = lsas.get(ln.node_id)
                if (
                    other is not None
                    and any(x.node_id == origin for x in other.links)
                    and origin < ln.node_id
                ):
                    edges.append(
                        {
                            "a": origin.hex(),
                            "b": ln.node_id.hex(),
                            "cost": ln.cost,
                            "quality": Quality(ln.quality).name,
                        }
                    )
        return {"self": self.me.hex(), "nodes": nodes, "edges": edges}

    def stats(self) -> dict:
        lsas = self.lsdb.lsas()
        links = {o: [(ln.node_id, ln.cost, ln.quality) for ln in lsa.links] for o, lsa in lsas.items()}
        return {
            "node_id": self.me.hex(),
            "mesh_address": self.identity.mesh_address,
            "interfaces": {k: {"up": i.up, "slot": i.slots.slot} for k, i in self.ifaces.items()},
            "neighbours": len(self.nbrs),
            "neighbours_up": len(self._up_neighbours()),
            "lsdb_size": len(self.lsdb),
            "routes": len(self.rib.installed),
            "drops": dict(self.drops),
            "counters": dict(self.counters),
            "credential_checks": dict(self.credential_checks),
            "spf_runs": self.counters["spf_runs"],
            "spf_last_ms": self.spf_last_ms,
            "spf_total_ms": round(self.spf_total_ms, 3),
            "retransmit_queue": self._pending_count,
            "topology": self.members.statistics(links),
        }

    def node_ids_reachable(self) -> set[bytes]:
        return set(self._reach)

    def first_hop(self, node_id: bytes) -> tuple[str, bytes] | None:
        return self._first_hop.get(node_id)
