"""The routing core's coordinator: a sans-I/O link-state router the daemon drives.

The daemon feeds it interface/carrier events and received datagrams, calls `tick(now)` at
`next_timer()`, and pulls `datagrams_to_send()`, `route_changes()` and `next_event()`.

Module map (each module states its own rules):
- hello.py: interfaces, the neighbour table, HELLO/KEEPALIVE sessions; neighbour.py: one neighbour
- throughput.py: each link's throughput (the kernel's, or measured with probe trains)
- flooding.py: reliable flooding and acknowledgement of LSAs and WITHDRAWs; lsdb.py: the database
- origination.py: our own LSA and WITHDRAW
- commands.py: the command API (link penalties and drains, steering around a node, the sick flag)
- routes.py: when SPF runs and the routes it yields; spf.py: the algorithm; rib.py: route changes
- membership.py: which nodes belong to the mesh; views.py: what the core shows
- timers.py: deadlines, the next wake-up and jitter; looplag.py: loop lag as data
- outbox.py: datagrams, events, drops and counters handed to the daemon

Rules:
- No I/O, no clock, no global randomness: every entry point takes `now` (monotonic seconds) and the
  only randomness is the `random.Random` given at construction (required).
- `receive` never raises on remote input. Every datagram is decoded, then dispatched by its type to
  one handler, which authenticates it (signature and trust, or keepalive MAC) and checks replay before
  it touches any state; every refusal is counted by reason.
- Everything network-fed is bounded by the MAX_* constants in protocol.py; so are the output queues.
- This module only wires the parts: it owns no protocol state of its own beyond housekeeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from x0node.proto import messages as m
from x0node.proto import views
from x0node.proto.basis import Basis
from x0node.proto.commands import DRAIN, PENALTY, SICK, STEER, CommandResult, Commands
from x0node.proto.config import RouterConfig
from x0node.proto.events import Event, NodeJoined, NodeLeft
from x0node.proto.flooding import Flooding
from x0node.proto.hello import HelloSessions, NeighbourKey
from x0node.proto.identity import Identity, mesh_address_of, verify
from x0node.proto.looplag import LoopLag
from x0node.proto.lsdb import Lsdb
from x0node.proto.membership import Membership
from x0node.proto.neighbour import CHANGE_COST, Neighbour
from x0node.proto.origination import Origination
from x0node.proto.outbox import Outbox, Outgoing
from x0node.proto.protocol import MAX_LINK_THROUGHPUT_KBPS
from x0node.proto.rib import RouteChange, RouteResult
from x0node.proto.routes import RouteComputation
from x0node.proto.throughput import Probing
from x0node.proto.timers import Deadline, Wakeup, jittered
from x0node.proto.trust import Credential, RevocationList, TrustStore
from x0node.proto.wire import DecodeError

HOUSEKEEPING_INTERVAL_S = 1.0
"""LSDB aging and dead-node pruning are checked this often (+-25 %)."""

__all__ = ["Outgoing", "Router", "RouterConfig"]


class Router:
    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        config: RouterConfig | None,
        rng: random.Random,
        now: float = 0.0,
        perf_clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(rng, random.Random):
            raise TypeError("the core needs a seeded random.Random")
        self.identity = identity
        self.me = identity.node_id
        self.trust = trust
        self.config = cfg = config or RouterConfig()
        self.rng = rng
        self.wall_offset_s: float | None = None
        # certificate checks of signed HELLOs and LSAs: "ok" or the refusal's drop reason
        self.credential_checks: dict[str, int] = {"ok": 0}
        self._now = now
        self._wake = Wakeup(now)
        self.out = Outbox()
        basis = Basis(identity, cfg, rng, self.out, self._wake)
        self.credential = basis.credential
        self.lsdb = Lsdb(max_age_s=cfg.lsa_max_age_s)
        self.members = Membership(cfg.dead_node_timeout_s)
        self.lag = LoopLag()
        # the draws happen in this order so that a seed gives the same mesh as before the split
        epoch = rng.randrange(1, 1 << 32)
        refresh_at_s = now + jittered(cfg.lsa_refresh_s, rng)
        self.housekeeping = Deadline(self._wake, now + jittered(HOUSEKEEPING_INTERVAL_S, rng))
        slot_origin_s = now + rng.uniform(0.0, cfg.hello_interval_s)
        self.hello = HelloSessions(
            basis, self.lag, epoch, slot_origin_s,
            self._check_credential, self._neighbour_up, self._neighbour_gone, self._cost_changed,
        )
        self.interfaces = self.hello.interfaces
        self.probing = Probing(basis, self.hello.nbrs, self.hello.by_addr, self.interfaces,
                               self.hello.apply_throughput)
        self.commands = Commands(basis, self.interfaces.table)
        self.origination = Origination(basis, self.lsdb, self.hello, now, refresh_at_s, self.commands)
        self.flooding = Flooding(
            basis, self.lsdb, self.hello, self.origination,
            self._check_credential, self._lsa_installed, self._withdrawn,
        )
        self.routing = RouteComputation(
            basis, self.lsdb, self.hello, self.origination, self.members, perf_clock, self.commands
        )
        self.commands.on_advertised = self._commanded_cost
        self.commands.on_spf = lambda t: self.routing.schedule(t, immediate=True)
        self._handlers = {
            m.T_HELLO: self.hello.on_hello,
            m.T_KEEPALIVE: self.hello.on_keepalive,
            m.T_LSA: self.flooding.on_lsa,
            m.T_ACK: self.flooding.on_ack,
            m.T_WITHDRAW: self.flooding.on_withdraw,
            m.T_PROBE_REPORT: self.probing.on_report,
        }  # T_PROBE also takes the receive stamp: dispatched in receive()

    # ------------------------------------------------------------------------------ reactions
    def _check_credential(self, cred: Credential, ifname: str, src: str, data: bytes, now: float) -> bool:
        """Is the signer trusted and the datagram signed by it? (refusals counted)"""
        wall = None if self.wall_offset_s is None else now + self.wall_offset_s
        reason = self.trust.check(cred, wall)
        if reason is None:
            payload, sig = m.signed_bytes(data)
            reason = None if verify(cred.public_key, payload, sig) else "bad_signature"
        self.credential_checks[reason or "ok"] = self.credential_checks.get(reason or "ok", 0) + 1
        if reason is not None:
            self.out.drop(reason, ifname, src, now)
            return False
        return True

    def _neighbour_up(self, n: Neighbour, now: float) -> None:
        self.origination.schedule(now)
        self.routing.schedule(now)
        self.interfaces.want_hello(n.ifname)
        self.flooding.database_exchange((n.ifname, n.node_id), now)

    def _neighbour_gone(self, key: NeighbourKey, was_up: bool, now: float) -> None:
        self.flooding.forget(key)
        if was_up:
            self.origination.schedule(now, bad_news=True)
            self.routing.schedule(now, immediate=True)  # a lost neighbour is routed around at once

    def _cost_changed(self, change: int, now: float) -> None:
        self.origination.advertise(change, now)
        if change == CHANGE_COST:
            self.routing.schedule(now)

    def _commanded_cost(self, now: float) -> None:
        self.origination.schedule(now)
        self.routing.schedule(now, immediate=True)

    def _lsa_installed(self, origin: bytes, lsa: m.Lsa, now: float) -> None:
        self.routing.lsa_installed(origin, lsa)
        role = lsa.credential.certificate.role if lsa.credential.certificate is not None else None
        if self.members.register(origin, role, now):
            self.out.emit(NodeJoined(now, origin.hex(), mesh_address_of(origin)))
        self.routing.schedule(now)

    def _withdrawn(self, origin: bytes, now: float) -> None:
        if self.members.leave(origin):
            self.out.emit(NodeLeft(now, origin.hex(), "withdraw"))
        self.routing.schedule(now)

    # ------------------------------------------------------------------------------ interfaces
    def set_wall_clock(self, wall_now: float, now: float) -> None:
        """Tell the core the wall-clock time (unix s) so certificate expiry is enforced."""
        self.wall_offset_s = wall_now - now

    def add_interface(self, ifname: str, now: float, up: bool = True, link_header_bytes: int = 0) -> None:
        """A mesh interface; `link_header_bytes` is its link layer's header per frame (14 on Ethernet),
        counted in measured throughput as a shaper or NIC counts it."""
        self.interfaces.add(ifname, now, up, link_header_bytes)

    def remove_interface(self, ifname: str, now: float) -> None:
        if self.interfaces.get(ifname) is not None:
            self.hello.drop_interface_neighbours(ifname, now, "interface_removed")
            self.commands.forget_interface(ifname, now)
            self.interfaces.remove(ifname)
            self.routing.run_if_due(now)

    def link_up(self, ifname: str, now: float) -> None:
        self.interfaces.set_up(ifname, now)

    def link_down(self, ifname: str, now: float) -> None:
        if self.interfaces.set_down(ifname):
            self.hello.drop_interface_neighbours(ifname, now, "link_down")
            self.routing.run_if_due(now)

    def set_throughput(self, ifname: str, neighbour_id: bytes | str, bps: float, now: float) -> None:
        """The kernel's rate of our link to a neighbour (bits/s, read by the adapter): used for class and
        cost, and no probes go to that neighbour while it is renewed (KERNEL_THROUGHPUT_HOLD_S)."""
        nid = bytes.fromhex(neighbour_id) if isinstance(neighbour_id, str) else neighbour_id
        n = self.hello.nbrs.get((ifname, nid))
        if n is None or not 0 < bps <= MAX_LINK_THROUGHPUT_KBPS * 1000.0:
            return
        self._now = max(self._now, now)
        self.probing.kernel_throughput(n, bps, now)

    def note_tx_bytes(self, ifname: str, total_bytes: int, now: float) -> None:
        """The interface's transmit byte counter as the kernel reports it: traffic that is not ours
        raises the probe budget of the neighbours on it (throughput.py)."""
        self._now = max(self._now, now)
        self.probing.note_tx_bytes(ifname, total_bytes, now)

    def set_prefixes(self, prefixes: list[str] | tuple[str, ...], now: float) -> None:
        self.origination.set_prefixes(prefixes, now)

    def apply_revocations(self, crl: RevocationList, now: float) -> str | None:
        """Install a newer signed revocation list and forget every revoked node at once: its adjacencies
        go now and SPF runs now, so its routes (and routes through it) are gone in this same call.
        Returns None when applied, else the reason it was refused ("bad_signature", "not_newer"),
        which is counted (`revocations_refused`); the list in force stays."""
        reason = self.trust.install_revocations(crl)
        if reason is not None:
            self.revocations_refused()
            return reason
        self.out.counters["revocations_applied"] += 1
        for key in [k for k in self.hello.nbrs if self.trust.is_revoked(k[1])]:
            self.hello.neighbour_gone(key, now, "revoked")
        for e in self.lsdb.entries():
            if e.lsa is not None and self.trust.is_revoked(e.origin):
                self.lsdb.tombstone(e.origin, now)
                if self.members.leave(e.origin):
                    self.out.emit(NodeLeft(now, e.origin.hex(), "revoked"))
        self.routing.schedule(now, immediate=True)
        self.routing.run_if_due(now)
        return None

    def revocations_refused(self) -> None:
        """Count a revocation list refused before it reached the core (a malformed file)."""
        self.out.counters["revocations_refused"] += 1

    def leave(self, now: float) -> None:
        """Graceful leave: flood a signed WITHDRAW; afterwards the router ignores input."""
        raw = self.origination.withdraw(now)
        if raw is None:
            return
        self.flooding.flood(self.me, self.origination.seq, raw, now, exclude=None)
        self.routing.withdraw_all()

    # ------------------------------------------------------------------------------ commands
    # The command API (commands.py rules): each states an end state with a TTL, is idempotent, is undone
    # by `lift_command` (or expires), and answers with a CommandResult; views.commands() shows them.
    def _command(self, kind: str, target: bytes | str, ifname: str, factor: float, ttl_s: float,
                 now: float) -> CommandResult:
        self._now = max(self._now, now)
        try:
            nid = bytes.fromhex(target) if isinstance(target, str) else target
        except ValueError:
            nid = b""
        if self.origination.left:
            return CommandResult(False, False, "left the mesh")
        res = self.commands.issue(kind, nid, ifname, factor, ttl_s, now)
        self.routing.run_if_due(now)
        return res

    def penalise_link(self, neighbour: bytes | str, factor: float, ttl_s: float, now: float,
                      ifname: str = "") -> CommandResult:
        """Multiply the cost of our link to `neighbour` (on `ifname`, or on every interface) by `factor`."""
        return self._command(PENALTY, neighbour, ifname, factor, ttl_s, now)

    def drain_link(self, neighbour: bytes | str, ttl_s: float, now: float, ifname: str = "") -> CommandResult:
        """Raise the cost of our link to `neighbour` to the highest usable: only what has no other way uses it."""
        return self._command(DRAIN, neighbour, ifname, 1.0, ttl_s, now)

    def steer_around(self, node: bytes | str, ttl_s: float, now: float, factor: float = 64.0) -> CommandResult:
        """Route around `node` as transit where a loop-free alternate costs less than `factor` x the path."""
        return self._command(STEER, node, "", factor, ttl_s, now)

    def set_sick(self, ttl_s: float, now: float) -> CommandResult:
        """Advertise every link of ours at the sick cost: the mesh stops using us as transit."""
        return self._command(SICK, self.me, "", 1.0, ttl_s, now)

    def lift_command(self, kind: str, target: bytes | str, now: float, ifname: str = "") -> CommandResult:
        """Undo a command ("penalty", "drain", "steer", "sick"; the sick flag's target is our own id)."""
        self._now = max(self._now, now)
        try:
            nid = bytes.fromhex(target) if isinstance(target, str) else target
        except ValueError:
            return CommandResult(False, False, "not a node id")
        res = self.commands.lift(kind, nid, ifname, now)
        self.routing.run_if_due(now)
        return res

    # ------------------------------------------------------------------------------ receive
    def receive(self, ifname: str, src: str, data: bytes, now: float, rx_stamp_s: float | None = None) -> None:
        """Handle one datagram. Never raises on remote input. `rx_stamp_s`: the kernel's receive time
        (seconds, any epoch; only differences are used, by probe trains), when the adapter has it."""
        self.out.counters["rx"] += 1
        self._now = now
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray / memoryview from the adapter
        iface = self.interfaces.get(ifname)
        if iface is None or not iface.up:
            self.out.drop("no_interface", ifname, src, now)
            return
        if self.origination.left and (len(data) < 2 or data[1] != m.T_ACK):
            self.out.drop("left", ifname, src, now)  # after leave() only ACKs of our WITHDRAW matter
            return
        dup = self.lsdb.by_raw(data)
        if dup is not None:
            self.flooding.on_duplicate(iface, src, dup, now)
            return
        try:
            msg = m.decode(data)
        except DecodeError:
            self.out.drop("decode", ifname, src, now)
            return
        if data[1] == m.T_PROBE:
            self.probing.on_probe(iface, src, msg, data, now, rx_stamp_s)  # type: ignore[arg-type]
            return
        self._handlers[data[1]](iface, src, msg, data, now)  # type: ignore[operator]

    # ------------------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Run every timer due at `now`."""
        self._wake.recompute()
        self._now = now
        if self.origination.left:
            self.flooding.retransmit(now)
            return
        if self.interfaces.rekey_wanted:
            self.hello.rekey(self._new_epoch(), now)
        self.interfaces.send_due(now)
        self.probing.send_due(now)
        self.hello.expire_dead(now)
        self.flooding.tick(now)
        self.commands.expire(now)
        raw = self.origination.tick(now)
        if raw is not None:
            self.flooding.flood(self.me, self.origination.seq, raw, now, exclude=None)
            self.routing.schedule(now)
        if self.housekeeping.due(now):
            self.housekeeping.set(now + jittered(HOUSEKEEPING_INTERVAL_S, self.rng))
            self._housekeeping(now)
        self.routing.run_if_due(now)

    def _new_epoch(self) -> int:
        epoch = self.hello.epoch
        while epoch == self.hello.epoch:
            epoch = self.rng.randrange(1, 1 << 32)
        return epoch

    def _housekeeping(self, now: float) -> None:
        self.flooding.forget_origins(lambda origin: self.lsdb.get(origin) is not None)
        gone = self.lsdb.expire(now, keep=self.me)
        for origin in gone:
            if self.members.leave(origin):
                self.out.emit(NodeLeft(now, origin.hex(), "aged"))
        if gone:
            self.routing.schedule(now)
        for nid in self.members.prune_due(now):
            self.lsdb.tombstone(nid, now)
            if self.members.leave(nid):
                self.out.emit(NodeLeft(now, nid.hex(), "unreachable"))

    def note_loop_lag(self, lag_s: float, now: float) -> None:
        """The daemon's loop ran a timer `lag_s` late (measured by the adapter; data, not a clock)."""
        self._now = max(self._now, now)
        self.lag.note(lag_s, now)
        self._wake.recompute()  # the grace may have shrunk: dead times can move earlier

    def loop_lag_peak(self, since: float) -> float:
        """The worst loop lag the daemon reported at or after `since` (its own stalls, as data)."""
        return self.lag.peak_since(since)

    def next_timer(self) -> float | None:
        """Absolute time of the next due timer."""
        if self._wake.at is not None:
            return self._wake.at
        cand: list[float] = []
        if not self.origination.left:
            cand += self.interfaces.deadlines()
            cand += self.hello.deadlines(self._now)
            for d in (self.origination.refresh, self.housekeeping, self.origination.due, self.routing.due,
                      self.flooding.ack_due, self.commands.due):
                if d.at is not None:
                    cand.append(d.at)
        if self.flooding.retransmit_due.at is not None:
            cand.append(self.flooding.retransmit_due.at)
        self._wake.at = min(cand) if cand else None
        return self._wake.at

    # ------------------------------------------------------------------------------ outputs
    def datagrams_to_send(self) -> list[Outgoing]:
        return self.out.take_datagrams()

    def route_changes(self) -> list[RouteChange]:
        """Changes for the route table, in order; report what it did with `route_results`."""
        return self.routing.take_changes()

    def route_results(self, results: list[RouteResult], now: float) -> None:
        """The route table applied (or refused) the changes: only confirmed routes count as installed."""
        self._now = max(self._now, now)
        self.routing.results(results, now)

    def next_event(self) -> Event | None:
        return self.out.next_event()

    # ------------------------------------------------------------------------------ views
    def neighbours(self, now: float | None = None) -> tuple[views.NeighbourView, ...]:
        return views.neighbours(self, self._now if now is None else now)

    def lost_neighbours(self, now: float | None = None) -> tuple[views.LostNeighbourView, ...]:
        return views.lost_neighbours(self, self._now if now is None else now)

    def routes(self) -> tuple[views.RouteView, ...]:
        return views.routes(self)

    def rtt_histograms(self) -> dict[str, tuple[tuple[int, ...], float]]:
        return views.rtt_histograms(self)

    def nodes(self) -> tuple[views.NodeView, ...]:
        return views.nodes(self)

    def topology(self) -> views.TopologyView:
        return views.topology(self)

    def drops(self) -> views.DropsView:
        return views.drops(self)

    def stats(self) -> views.StatsView:
        return views.stats(self)

    def commands_in_force(self, now: float | None = None) -> tuple[views.CommandView, ...]:
        return views.commands(self, self._now if now is None else now)
