"""Hello sessions: the neighbour table, and the HELLO/KEEPALIVE receive side that creates, keeps and
ends neighbours (what each interface sends is interfaces.py).

Rules:
- A neighbour exists only after a verified signed HELLO from it (state INIT) and is UP once it shows
  it hears us (neighbour.py). Signed HELLOs pass a replay window per origin and interface within a
  session epoch; epochs seen before are refused (MAX_REMEMBERED_EPOCHS per origin). The per-origin
  session state outlives the neighbour entry and is bounded (2 x MAX_NEIGHBOURS).
- The neighbour table is bounded by MAX_NEIGHBOURS and MAX_NEIGHBOURS_PER_INTERFACE; a HELLO beyond
  them is dropped and counted.
- A keepalive from an address we know no neighbour at, or without a valid entry for us, asks its
  interface for an early HELLO (the peer may have lost our session).
- A neighbour is dead when nothing authenticated arrived in its dead time (neighbour.py) plus, once
  UP, the loop-lag grace (looplag.py).
- A neighbour that was UP and is gone is remembered with the time the core declared it gone (`lost`,
  `recently_lost`) for LOST_NEIGHBOUR_MEMORY_S or until it is UP again; at most MAX_NEIGHBOURS entries
  (the oldest is forgotten first). Readers (the anomaly collector) time a loss from this instant
  instead of from when they happened to look.
- Reactions beyond the table (flooding, origination, SPF) are the coordinator's: this module reports
  a neighbour up, gone, or with a changed advertised cost through the callbacks it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from x0node.proto import messages as m
from x0node.proto.basis import Basis, Part
from x0node.proto.events import NeighbourDown, NeighbourUp, SlotChanged
from x0node.proto.interfaces import Interface, Interfaces, NeighbourKey
from x0node.proto.looplag import LoopLag
from x0node.proto.neighbour import CHANGE_CLASS, CHANGE_NONE, Neighbour, NeighbourState
from x0node.proto.protocol import (
    MAX_NEIGHBOURS,
    MAX_NEIGHBOURS_PER_INTERFACE,
    MAX_REMEMBERED_EPOCHS,
    NEIGHBOUR_HOLD_FULL_HELLOS,
    REPLAY_WINDOW,
)
from x0node.proto.seqno import ReplayWindow
from x0node.proto.trust import Credential

LOST_NEIGHBOUR_MEMORY_S = 60.0
"""How long a lost neighbour's down time is kept (far beyond the anomaly collector's 3 s link samples)."""
MIN_PEER_INTERVAL_S = 0.01
MAX_PEER_INTERVAL_S = 10.0
"""A neighbour's announced keepalive interval is clamped to this range before it sets its dead timer."""

@dataclass
class Session:
    """Per-origin signed-HELLO replay state (survives the neighbour entry, bounded). Windows are per
    interface: the same multicast HELLO may legitimately arrive on two of our interfaces."""

    epoch: int
    windows: dict[str, ReplayWindow] = field(default_factory=dict)  # per interface (<= MAX_INTERFACES)
    old_epochs: list[int] = field(default_factory=list)


class HelloSessions(Part):
    def __init__(
        self,
        basis: Basis,
        lag: LoopLag,
        epoch: int,
        slot_origin_s: float,
        check_credential: Callable[[Credential, str, str, bytes, float], bool],
        on_up: Callable[[Neighbour, float], None],
        on_gone: Callable[[NeighbourKey, bool, float], None],
        on_cost_change: Callable[[int, float], None],
    ) -> None:
        super().__init__(basis)
        self.lag = lag
        self.epoch = epoch
        self._check_credential = check_credential
        self._on_up = on_up
        self._on_gone = on_gone
        self._on_cost_change = on_cost_change
        self.nbrs: dict[NeighbourKey, Neighbour] = {}
        self.by_addr: dict[tuple[str, str], bytes] = {}
        self.sessions: dict[bytes, Session] = {}
        self.lost: dict[str, tuple[str, float, str]] = {}  # node id hex -> (ifname, when gone, reason)
        self.interfaces = Interfaces(basis, slot_origin_s, self)

    # ------------------------------------------------------------------------------ table
    def up_neighbours(self) -> list[Neighbour]:
        return [n for n in self.nbrs.values() if n.state is NeighbourState.UP]

    def neighbour_at(self, ifname: str, src: str) -> NeighbourKey | None:
        """The neighbour that uses link-local address `src` on `ifname` (an address is no proof)."""
        sender = self.by_addr.get((ifname, src))
        return None if sender is None else (ifname, sender)

    def _room(self, ifname: str) -> bool:
        on_if = sum(1 for k in self.nbrs if k[0] == ifname)
        return on_if < MAX_NEIGHBOURS_PER_INTERFACE and len(self.nbrs) < MAX_NEIGHBOURS

    def _forget_idle_sessions(self) -> None:
        active = {k[1] for k in self.nbrs}
        for nid in [s for s in self.sessions if s not in active]:
            del self.sessions[nid]

    # ------------------------------------------------------------------------------ interfaces
    def drop_interface_neighbours(self, ifname: str, now: float, reason: str) -> None:
        for key in [k for k in self.nbrs if k[0] == ifname]:
            self.neighbour_gone(key, now, reason)

    def apply_throughput(self, n: Neighbour, bps: float, source: str, now: float) -> None:
        """A new throughput for n ("kernel" or "probe"): its class and cost follow. The first one known
        is taken without the class band (neighbour.py) and reaches our LSA at least lazily."""
        first = n.throughput_bps is None
        n.throughput_bps, n.throughput_source = float(bps), source
        if n.state is NeighbourState.UP:
            change = n.refresh_advertised(now, force=first)
            self._on_cost_change(CHANGE_CLASS if first and change == CHANGE_NONE else change, now)

    # ------------------------------------------------------------------------------ receive
    def on_hello(self, iface: Interface, src: str, msg: m.Hello, data: bytes, now: float) -> None:
        sender = msg.sender
        if sender == self.me:
            self.out.drop("self", iface.name, src, now)
            return
        if not self._check_credential(msg.credential, iface.name, src, data, now):
            return
        sess = self.sessions.get(sender)
        new_session = False
        if sess is None or sess.epoch != msg.epoch:
            if sess is not None and msg.epoch in sess.old_epochs:
                self.out.drop("replay", iface.name, src, now)
                return
            key = (iface.name, sender)
            if key not in self.nbrs and not self._room(iface.name):
                self.out.drop("limit_neighbours", iface.name, src, now)
                return
            old = [] if sess is None else (sess.old_epochs + [sess.epoch])[-MAX_REMEMBERED_EPOCHS:]
            if sess is None and len(self.sessions) >= 2 * MAX_NEIGHBOURS:
                self._forget_idle_sessions()
            sess = Session(msg.epoch, old_epochs=old)
            self.sessions[sender] = sess
            new_session = True
        window = sess.windows.get(iface.name)
        if window is None:
            window = sess.windows[iface.name] = ReplayWindow(REPLAY_WINDOW, 32)
        if not window.accept(msg.seq):
            self.out.drop("replay", iface.name, src, now)
            return
        key = (iface.name, sender)
        n = self.nbrs.get(key)
        pair_key = None
        if n is None or new_session or n.epoch != msg.epoch:
            pair_key = self.identity.pairwise_key(msg.credential.public_key, self.epoch, msg.epoch)
            if pair_key is None:
                self.out.drop("bad_signature", iface.name, src, now)
                return
        interval_s = min(max(msg.interval_ms / 1000.0, MIN_PEER_INTERVAL_S), MAX_PEER_INTERVAL_S)
        if n is None:
            if not self._room(iface.name):
                self.out.drop("limit_neighbours", iface.name, src, now)
                return
            n = Neighbour(iface.name, sender, msg.credential.public_key, src, msg.epoch, pair_key, interval_s, now)
            self.nbrs[key] = n
            self.by_addr[(iface.name, src)] = sender
            self.interfaces.want_hello(iface.name)  # let it learn about us quickly
        elif pair_key is not None:
            n.reset_session(msg.epoch, pair_key)
            self.interfaces.want_hello(iface.name)
        if n.address != src:
            self.by_addr.pop((iface.name, n.address), None)
            n.address = src
            self.by_addr[(iface.name, src)] = sender
        n.interval_s = interval_s
        n.control_seen(msg.seq)
        n.heard(now, msg.ts_ms)
        n.last_hello_s = now
        iface.slots.forget(sender)
        listed = next((e for e in msg.neighbours if e.node_id == self.me), None)
        if listed is not None:
            n.rtt_sample(now, listed.echo_ts_ms, listed.echo_delay_ms)
            self._two_way(n, now)
        elif n.state is NeighbourState.UP:
            # it no longer hears us (restarted, or lost our session): back to one-way
            self.neighbour_gone(key, now, "lost_us", keep=True)
            self.interfaces.want_hello(iface.name)

    def on_keepalive(self, iface: Interface, src: str, msg: m.Keepalive, data: bytes, now: float) -> None:
        sender = self.by_addr.get((iface.name, src))
        n = None if sender is None else self.nbrs.get((iface.name, sender))
        if n is None:
            self.out.drop("unknown_sender", iface.name, src, now)
            self.interfaces.want_hello(iface.name)
            return
        header = msg.header()
        seq = n.full_seq(msg.seq)
        entry = None
        for e in msg.entries:
            if m.keepalive_mac_ok(n.key, n.node_id, self.me, seq, header, e):
                entry = e
                break
        if entry is None:
            benign = not msg.entries or n.state is NeighbourState.INIT
            self.out.drop("not_for_us" if benign else "bad_mac", iface.name, src, now)
            self.interfaces.want_hello(iface.name)  # it may have lost our session
            return
        if not n.ka_window.check(seq):
            self.out.drop("replay", iface.name, src, now)
            return
        if not n.clock_ok(msg.ts_ms, now):
            self.out.drop("bad_timestamp", iface.name, src, now)
            return
        n.ka_window.accept(seq)
        n.control_seen(seq)
        n.heard(now, msg.ts_ms)
        n.rtt_sample(now, entry.echo_ts_ms, entry.echo_delay_ms)
        if iface.slots.observe(now, n.node_id):
            self.out.emit(SlotChanged(now, iface.name, iface.slots.slot))
        if n.state is NeighbourState.INIT:
            self._two_way(n, now)
        else:
            self._on_cost_change(n.refresh_advertised(now), now)

    def _two_way(self, n: Neighbour, now: float) -> None:
        if n.state is NeighbourState.UP:
            return
        n.state = NeighbourState.UP
        n.up_since_s = now
        self.lost.pop(n.node_id.hex(), None)
        self.wake.arm(n.dead_at(self.config.hello_missed_dead, 0.0))
        n.refresh_advertised(now, force=True)
        self.out.emit(NeighbourUp(now, n.ifname, n.node_id.hex(), n.address))
        self._on_up(n, now)

    def neighbour_gone(self, key: NeighbourKey, now: float, reason: str, keep: bool = False) -> None:
        """Forget the neighbour (`keep`: back to INIT instead) and report it."""
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
            iface = self.interfaces.get(key[0])
            if iface is not None:
                iface.slots.forget(key[1])
        if was_up:
            self._remember_lost(key, now, reason)
            self.out.emit(NeighbourDown(now, key[0], key[1].hex(), reason))
            self.out.counters["neighbour_down"] += 1
        self._on_gone(key, was_up, now)

    def _remember_lost(self, key: NeighbourKey, now: float, reason: str) -> None:
        self._forget_old_losses(now)
        nid = key[1].hex()
        self.lost.pop(nid, None)
        while len(self.lost) >= MAX_NEIGHBOURS:
            del self.lost[next(iter(self.lost))]  # insertion order: the oldest loss
        self.lost[nid] = (key[0], now, reason)

    def recently_lost(self, now: float) -> dict[str, tuple[str, float, str]]:
        """Lost neighbours (node id hex -> (ifname, when gone, reason)) of the last LOST_NEIGHBOUR_MEMORY_S."""
        self._forget_old_losses(now)
        return dict(self.lost)

    def _forget_old_losses(self, now: float) -> None:
        for nid in [k for k, (_, at, _) in self.lost.items() if now - at > LOST_NEIGHBOUR_MEMORY_S]:
            del self.lost[nid]

    def rekey(self, epoch: int, now: float) -> None:
        """Take a new session epoch: new pairwise keys with every neighbour, counters from 1 again.
        Each neighbour learns it from our next HELLO (sent at once) and starts a new session."""
        self.epoch = epoch
        for key, n in list(self.nbrs.items()):
            pair_key = self.identity.pairwise_key(n.public_key, epoch, n.epoch)
            if pair_key is None:
                self.neighbour_gone(key, now, "lost_us")
            else:
                n.rekeyed(pair_key)
        self.interfaces.restart_counters()

    # ------------------------------------------------------------------------------ timers
    def _init_hold_s(self) -> float:
        return NEIGHBOUR_HOLD_FULL_HELLOS * self.config.full_hello_interval_s

    def dead_time(self, n: Neighbour, init_hold_s: float, grace_s: float) -> float:
        """When neighbour n is declared dead: its own deadline, plus the loop-lag grace once UP."""
        base = n.dead_at(self.config.hello_missed_dead, init_hold_s)
        return base + grace_s if n.state is NeighbourState.UP else base

    def expire_dead(self, now: float) -> None:
        init_hold, grace = self._init_hold_s(), self.lag.grace(now)
        for key, n in list(self.nbrs.items()):
            if now >= self.dead_time(n, init_hold, grace):
                self.neighbour_gone(key, now, "dead")

    def deadlines(self, now: float) -> list[float]:
        """Every neighbour's dead time (for the next wake-up)."""
        cand: list[float] = []
        init_hold, grace = self._init_hold_s(), self.lag.grace(now)
        for n in self.nbrs.values():
            cand.append(self.dead_time(n, init_hold, grace))
        return cand
