"""Data-plane probes: does each neighbour forward our traffic? Scheduler and evaluator (sans-I/O).

Why: hellos prove that a neighbour's daemon is alive and that the link carries them; they say nothing
about the neighbour's forwarding. A transit node that drops part of what it forwards (a partial black
hole) keeps its hellos and its routes. So each node sends echo probes *through* each up neighbour (the
adapter pins the first hop: the packet goes to the neighbour's link-layer address whatever our routes
say). A probe that is not answered within PROBE_TIMEOUT_S is lost. Three kinds, each tick of a
neighbour N:
- link probe (dest = N): an echo to N's link-local address. N answers it without forwarding it, to
  our link-local address, so the answer cannot leave the link (an answer to a mesh address would take
  N's route to us, which goes round when N has drained or penalised its link to us). Its loss is our
  link's, both ways, measured at the probe rate (hello loss is an EWMA over 128 hellos, ~13 s).
- loop probe (dest = us): an echo addressed to our own mesh address, handed to N. N forwards it once,
  straight back to us over the same link (N's route to a neighbour), and our kernel answers it to
  itself. Its loss is the link's (both ways) plus N's forwarding drop, and nothing else: no third
  node and no guess of anyone's return path. Loop loss beyond link-probe loss is N's forwarding loss.
- path probe (dest = one of N's own neighbours, rotating): two hops out; the answer takes the
  destination's own route back. It localises a lossy link beyond N; its way back is a guess.
The monitor compares each with the loss the first link explains, so a lossy link is not mistaken for
a black hole and a black hole on some other node's return path is not blamed on N.

Rules and invariants:
- Rate is bounded twice: each neighbour gets PROBES_PER_TICK probes every PROBE_INTERVAL_S (jittered
  +-25 %; fewer when a kind has no address yet), stretched so that all neighbours together stay under
  PROBE_RATE_MAX_PER_S, and a token bucket of
  PROBE_BURST tokens refilled at PROBE_RATE_MAX_PER_S is the hard cap.
- Each neighbour has at most MAX_DESTS_PER_NEIGHBOUR path destinations, picked with the seeded rng among
  its reachable neighbours other than us and re-picked every DEST_REFRESH_S or when they change;
  probes rotate over them.
- At most MAX_OUTSTANDING probes wait for an answer; ids are 16-bit and reused only after their probe
  was answered or timed out. An answer with an unknown id or after the timeout is counted, not used.
- Results per path are the last PROBE_WINDOW outcomes no older than PROBE_WINDOW_S: loss, the median
  RTT and the median of the last RECENT_RTT_PROBES answers (a link probe's is the link's queueing delay,
  timed by the kernel and not by a daemon that may be starved of CPU).
- No clock, socket or randomness of its own: `now` and a `random.Random` come in.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from x0node.healing.observation import ProbeObs, RoutingObs

if TYPE_CHECKING:
    import random

PROBE_INTERVAL_S = 0.2  # per neighbour: ~10 outcomes of each kind in 2 s, enough to see a 40 % black hole
LINK_PROBES_PER_TICK = 2  # the link's own loss is the lossy-link sensor: twice the samples, judged in half the time
PROBES_PER_TICK = LINK_PROBES_PER_TICK + 2  # link probes, a loop and one path probe
PROBE_RATE_MAX_PER_S = 80.0  # all probes of a node (~5 kB/s of 64-byte echoes each way; 4 neighbours at full rate)
PROBE_BURST = 16
PROBE_TIMEOUT_S = 0.5  # mesh RTTs are tens of ms (a congested hop queues <= 100 ms each way); a late answer is as bad as a lost one, and a loss counts only once timed out
PROBE_WINDOW = 32
PROBE_WINDOW_S = 15.0  # ~15 outcomes per path at 4 destinations per neighbour
RECENT_RTT_PROBES = 8  # the recent RTT: a queue that began to fill a second ago, not the window's median
MAX_DESTS_PER_NEIGHBOUR = 4
MAX_NEIGHBOURS_PROBED = 64
MAX_OUTSTANDING = 256
DEST_REFRESH_S = 30.0
JITTER_FRACTION = 0.25
PROBE_ID_SPACE = 1 << 16


@dataclass(frozen=True)
class ProbeTarget:
    via: str  # neighbour node id
    ifname: str
    via_address: str  # the neighbour's link-local address (the adapter resolves its link-layer address)
    dest: str  # destination node id
    dest_address: str  # its mesh address


@dataclass(frozen=True)
class ProbeRequest:
    probe_id: int
    target: ProbeTarget
    sent_s: float
    deadline_s: float


@dataclass
class _Neighbour:
    ifname: str
    address: str
    dests: list[tuple[str, str]]  # (node id, mesh address): path probes
    picked_s: float
    candidates: frozenset[str]
    next_due_s: float
    turn: int = 0


@dataclass
class ProbeCounters:
    sent: int = 0
    answered: int = 0
    timed_out: int = 0
    late_or_unknown: int = 0
    rate_limited: int = 0
    unsent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "answered": self.answered, "timed_out": self.timed_out,
                "late_or_unknown": self.late_or_unknown, "rate_limited": self.rate_limited, "unsent": self.unsent}


class ProbeScheduler:
    def __init__(self, self_id: str, rng: random.Random, now: float, self_address: str = "") -> None:
        self.self_id = self_id
        self.self_address = self_address  # our mesh address (loop probes); "" = read from the routing view
        self._rng = rng
        self._nbrs: dict[str, _Neighbour] = {}
        self._outstanding: dict[int, ProbeRequest] = {}
        self._results: dict[tuple[str, str], collections.deque[tuple[float, float | None]]] = {}
        self._next_id = rng.randrange(PROBE_ID_SPACE)
        self._tokens = float(PROBE_BURST)
        self._tokens_at = now
        self.counters = ProbeCounters()

    # ---- inputs
    def update(self, routing: RoutingObs, now: float) -> None:
        """New routing view: which neighbours are up and which destinations lie beyond each."""
        adj = routing.adjacency()
        reachable = {n.node_id: n.mesh_address for n in routing.nodes if n.reachable and n.mesh_address}
        if not self.self_address:
            self.self_address = next((n.mesh_address for n in routing.nodes if n.node_id == self.self_id), "")
        seen: set[str] = set()
        for n in sorted(routing.neighbours, key=lambda x: (x.node_id, x.ifname)):
            if not n.up or not n.address or n.node_id in seen or len(seen) >= MAX_NEIGHBOURS_PROBED:
                continue
            seen.add(n.node_id)
            cands = frozenset(d for d in adj.get(n.node_id, ()) if d != self.self_id and d in reachable)
            cur = self._nbrs.get(n.node_id)
            if cur is None or cur.candidates != cands or now - cur.picked_s >= DEST_REFRESH_S \
                    or (cur.ifname, cur.address) != (n.ifname, n.address):
                picked = sorted(cands)
                if len(picked) > MAX_DESTS_PER_NEIGHBOUR:
                    picked = sorted(self._rng.sample(picked, MAX_DESTS_PER_NEIGHBOUR))
                due = cur.next_due_s if cur is not None else now + self._rng.uniform(0.0, PROBE_INTERVAL_S)
                self._nbrs[n.node_id] = _Neighbour(n.ifname, n.address, [(d, reachable[d]) for d in picked],
                                                   now, cands, due)
        for gone in set(self._nbrs) - seen:
            del self._nbrs[gone]
        for key in [k for k in self._results if k[0] not in self._nbrs]:
            del self._results[key]

    def answer(self, probe_id: int, now: float) -> bool:
        """An echo reply for `probe_id` arrived at `now`. False (counted) when unknown or too late."""
        req = self._outstanding.pop(probe_id, None)
        if req is None or now > req.deadline_s:
            self.counters.late_or_unknown += 1
            if req is not None:
                self._record(req, None)
                self.counters.timed_out += 1
            return False
        self.counters.answered += 1
        self._record(req, (now - req.sent_s) * 1000.0)
        return True

    def cancel(self, probe_id: int) -> None:
        """The adapter could not send the probe: it is neither answered nor lost."""
        if self._outstanding.pop(probe_id, None) is not None:
            self.counters.sent -= 1
            self.counters.unsent += 1

    # ---- outputs
    def poll(self, now: float) -> list[ProbeRequest]:
        """Time out what is overdue, then return the probes due now (within the rate bounds)."""
        for pid in [p for p, r in self._outstanding.items() if now > r.deadline_s]:
            self._record(self._outstanding.pop(pid), None)
            self.counters.timed_out += 1
        self._refill(now)
        out: list[ProbeRequest] = []
        interval = self._interval()
        for node_id in sorted(self._nbrs, key=lambda k: self._nbrs[k].next_due_s):
            nb = self._nbrs[node_id]
            if nb.next_due_s > now:
                break
            nb.next_due_s = now + interval * (1.0 + self._rng.uniform(-JITTER_FRACTION, JITTER_FRACTION))
            for dest, addr in self._tick_targets(node_id, nb):
                if self._tokens < 1.0 or len(self._outstanding) >= MAX_OUTSTANDING:
                    self.counters.rate_limited += 1
                    continue
                pid = self._take_id()
                if pid is None:
                    self.counters.rate_limited += 1
                    continue
                self._tokens -= 1.0
                req = ProbeRequest(pid, ProbeTarget(node_id, nb.ifname, nb.address, dest, addr), now,
                                   now + PROBE_TIMEOUT_S)
                self._outstanding[pid] = req
                self.counters.sent += 1
                out.append(req)
        return out

    def _tick_targets(self, node_id: str, nb: _Neighbour) -> list[tuple[str, str]]:
        """This tick's (dest id, dest address) through neighbour node_id: link, loop, next path."""
        out = [(node_id, nb.address)] * LINK_PROBES_PER_TICK  # link probes: to its link-local address
        if self.self_address:
            out.append((self.self_id, self.self_address))
        if nb.dests:
            out.append(nb.dests[nb.turn % len(nb.dests)])
            nb.turn += 1
        return out

    def next_timer(self) -> float | None:
        times = [nb.next_due_s for nb in self._nbrs.values()]
        times += [r.deadline_s for r in self._outstanding.values()]
        return min(times) if times else None

    def results(self, now: float) -> tuple[ProbeObs, ...]:
        out = []
        for (via, dest), window in sorted(self._results.items()):
            while window and window[0][0] < now - PROBE_WINDOW_S:
                window.popleft()
            if not window:
                continue
            rtts = [r for _, r in window if r is not None]
            lost = sum(1 for _, r in window if r is None)
            out.append(ProbeObs(via, dest, len(window), lost, statistics.median(rtts) if rtts else None,
                                tuple(r is None for _, r in window),
                                statistics.median(rtts[-RECENT_RTT_PROBES:]) if rtts else None))
        return tuple(out)

    # ---- internals
    def _interval(self) -> float:
        demand = len(self._nbrs) * PROBES_PER_TICK / PROBE_INTERVAL_S
        return PROBE_INTERVAL_S * max(1.0, demand / PROBE_RATE_MAX_PER_S)

    def _refill(self, now: float) -> None:
        self._tokens = min(float(PROBE_BURST), self._tokens + max(0.0, now - self._tokens_at) * PROBE_RATE_MAX_PER_S)
        self._tokens_at = now

    def _take_id(self) -> int | None:
        for _ in range(MAX_OUTSTANDING + 1):
            pid = self._next_id
            self._next_id = (self._next_id + 1) % PROBE_ID_SPACE
            if pid not in self._outstanding:
                return pid
        return None

    def _record(self, req: ProbeRequest, rtt_ms: float | None) -> None:
        key = (req.target.via, req.target.dest)
        if req.target.via not in self._nbrs:
            return
        window = self._results.setdefault(key, collections.deque(maxlen=PROBE_WINDOW))
        window.append((req.sent_s, rtt_ms))
