"""A synthetic mesh for the healing loop: seeded topology, injected faults with known truth, and what one
node would observe (routing views, probe answers, shared node metrics) at each simulated instant.

Rules:
- Time is simulated; `run_node` steps the monitor/engine every CYCLE_S and the probe scheduler every
  PROBE_STEP_S, delivering probe answers after their RTT. Nothing sleeps; every draw uses the seed.
- Faults act as they would on the wire: a lossy link drops in both directions (hellos see its loss),
  a congested link adds delay, a partial black hole drops only what the node forwards (its hellos
  and its own answers pass), an overloaded node answers hellos late and reports high CPU, a down node
  answers nothing and leaves the LSDB's reachable set, a flapping link goes down and up.
- The observing node's own mitigations (penalties, drains, steering) change its routes through the
  same SPF the world uses, so verification sees their effect.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from x0node.healing.actions import DRAIN_FACTOR, ActionKind, ActionRequest
from x0node.healing.monitor import Element, ElementKind, link_element
from x0node.healing.observation import (
    EdgeObs,
    InterfaceObs,
    NeighbourObs,
    NodeMetricsObs,
    NodeObs,
    RouteObs,
    RoutingObs,
    ServiceObs,
    Snapshot,
)
from x0node.healing.probe import ProbeScheduler

CYCLE_S = 1.0
PROBE_STEP_S = 0.05
BASE_COST = 10
NOISE_LOSS = 0.005


def nid(i: int) -> str:
    return f"{i:02x}" * 4


@dataclass
class Fault:
    kind: str  # link_lossy | link_congested | link_flapping | node_blackhole | node_overload | node_down
    element: Element
    start: float
    end: float = float("inf")
    amount: float = 0.0  # loss fraction, extra delay ms, drop fraction

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class World:
    n: int
    seed: int
    edges: dict[str, float] = field(default_factory=dict)  # link id -> base rtt ms
    faults: list[Fault] = field(default_factory=list)
    penalties: dict[tuple[str, str], float] = field(default_factory=dict)  # (observer, link id) -> factor
    services: dict[str, bool] = field(default_factory=dict)  # service -> healthy
    share_metrics: bool = True
    jitter: float = 0.0  # RTT samples vary by up to this fraction (a busy radio)
    busy: frozenset[str] = frozenset()  # nodes with high CPU that harms nothing (decoys for analysis)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _spf_cache: dict[tuple[object, ...], dict[str, tuple[float, str]]] = field(default_factory=dict)

    @classmethod
    def random(cls, n: int, seed: int, extra: float = 0.6) -> World:
        """Connected: a random spanning tree plus about extra * n chords."""
        rng = random.Random(seed)
        w = cls(n, seed)
        order = list(range(n))
        rng.shuffle(order)
        for i in range(1, n):
            a, b = order[i], order[rng.randrange(i)]
            w.edges[link_element(nid(a), nid(b)).id] = rng.uniform(1.0, 5.0)
        for _ in range(int(extra * n)):
            a, b = rng.sample(range(n), 2)
            w.edges.setdefault(link_element(nid(a), nid(b)).id, rng.uniform(1.0, 5.0))
        return w

    # ---- the truth
    def ids(self) -> list[str]:
        return [nid(i) for i in range(self.n)]

    def adjacency(self) -> dict[str, set[str]]:
        adj: dict[str, set[str]] = {x: set() for x in self.ids()}
        for lid in self.edges:
            a, b = lid.split("~")
            adj[a].add(b)
            adj[b].add(a)
        return adj

    def _active(self, kind: str, element: Element, t: float) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.element == element and f.active(t):
                return f
        return None

    def node_up(self, x: str, t: float) -> bool:
        return self._active("node_down", Element(ElementKind.NODE, x), t) is None

    def link_up(self, lid: str, t: float) -> bool:
        a, b = lid.split("~")
        if not (self.node_up(a, t) and self.node_up(b, t)):
            return False
        f = self._active("link_flapping", Element(ElementKind.LINK, lid), t)
        return f is None or int((t - f.start) / max(1.0, f.amount)) % 2 == 1

    def link_loss(self, lid: str, t: float) -> float:
        f = self._active("link_lossy", Element(ElementKind.LINK, lid), t)
        loss = NOISE_LOSS + (f.amount if f else 0.0)
        c = self._active("link_congested", Element(ElementKind.LINK, lid), t)
        return min(1.0, loss + (0.02 if c else 0.0))

    def link_rtt(self, lid: str, t: float) -> float:
        rtt = self.edges[lid]
        c = self._active("link_congested", Element(ElementKind.LINK, lid), t)
        if c:
            rtt += c.amount
        for end in lid.split("~"):
            if self._active("node_overload", Element(ElementKind.NODE, end), t):
                rtt += 40.0  # its daemon answers hellos late
        if self.jitter:
            rtt *= 1.0 + self._rng.uniform(0.0, self.jitter)
        return rtt

    def forward_drop(self, x: str, t: float) -> float:
        f = self._active("node_blackhole", Element(ElementKind.NODE, x), t)
        return f.amount if f else 0.0

    # ---- what node s sees
    def _cost(self, s: str, lid: str, t: float) -> float:
        return BASE_COST * self.penalties.get((s, lid), 1.0) * (1.0 + self.link_loss(lid, t) * 10)

    def spf(self, s: str, t: float) -> dict[str, tuple[float, str]]:
        """dest -> (cost, first hop) over up links, with s's own penalties on its links (memoised per
        quarter second: faults and penalties change no faster)."""
        key = (s, int(t * 4), tuple(sorted(self.penalties.items())))
        hit = self._spf_cache.get(key)
        if hit is None:
            if len(self._spf_cache) > 4096:
                self._spf_cache.clear()
            hit = self._spf_cache[key] = self._spf(s, t)
        return hit

    def _spf(self, s: str, t: float) -> dict[str, tuple[float, str]]:
        adj = {x: [y for y in ys if self.link_up(link_element(x, y).id, t)] for x, ys in self.adjacency().items()}
        dist: dict[str, tuple[float, str]] = {s: (0.0, "")}
        heap = [(0.0, s, "")]
        done: set[str] = set()
        while heap:
            d, u, first = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            for v in sorted(adj[u]):
                lid = link_element(u, v).id
                c = d + (self._cost(s, lid, t) if u == s else BASE_COST)
                fh = v if u == s else first
                if v not in dist or c < dist[v][0]:
                    dist[v] = (c, fh)
                    heapq.heappush(heap, (c, v, fh))
        return dist

    def routing(self, s: str, t: float, transitions: dict[str, int]) -> RoutingObs:
        nbrs = []
        for y in sorted(self.adjacency()[s]):
            lid = link_element(s, y).id
            if not self.node_up(y, t):
                continue
            up = self.link_up(lid, t)
            nbrs.append(NeighbourObs(y, f"e{y}", f"fe80::{y}", up, self.link_loss(lid, t) if up else 1.0,
                                     self.link_rtt(lid, t) if up else None, "GOOD", BASE_COST,
                                     transitions.get(y, 0)))
        dist = self.spf(s, t)
        routes = tuple(RouteObs(f"fd00::{d}/128", f"e{fh}", f"fe80::{fh}", int(c), d)
                       for d, (c, fh) in sorted(dist.items()) if d != s)
        nodes = tuple(NodeObs(x, f"fd00::{x}", x in dist) for x in self.ids())  # a dead node's LSA lingers
        edges = tuple(EdgeObs(*lid.split("~"), BASE_COST) for lid in sorted(self.edges) if self.link_up(lid, t))
        ifaces = tuple(InterfaceObs(f"e{y}", True) for y in sorted(self.adjacency()[s]))
        return RoutingObs(s, tuple(nbrs), routes, nodes, edges, ifaces)

    def probe(self, s: str, via: str, dest: str, t: float, rng: random.Random) -> float | None:
        """RTT of a probe pinned through `via` to `dest` (None when lost)."""
        l1 = link_element(s, via).id
        if dest in (s, via):  # link probe (via answers) or loop probe (via forwards it straight back)
            if not (self.node_up(via, t) and self.link_up(l1, t)) or rng.random() < self.link_loss(l1, t):
                return None
            if (dest == s and rng.random() < self.forward_drop(via, t)) or rng.random() < self.link_loss(l1, t):
                return None
            return self.link_rtt(l1, t)
        l2 = link_element(via, dest).id
        if not (self.node_up(dest, t) and self.node_up(via, t) and self.link_up(l1, t)):
            return None
        if rng.random() < self.link_loss(l1, t) or rng.random() < self.forward_drop(via, t):
            return None
        if not self.link_up(l2, t) or rng.random() < self.link_loss(l2, t):
            return None
        back = self.spf(dest, t).get(s)  # the answer takes dest's own best path back
        if back is None:
            return None
        rtt = self.link_rtt(l1, t) / 2 + self.link_rtt(l2, t) / 2 + back[0] / BASE_COST * 2.0
        if self.forward_drop(back[1], t) and back[1] != s and rng.random() < self.forward_drop(back[1], t):
            return None
        return rtt

    def metrics(self, s: str, t: float) -> tuple[NodeMetricsObs, ...]:
        out = []
        for x in self.ids():
            if not self.share_metrics and x != s:
                continue
            if not self.node_up(x, t):
                continue
            cpu = 0.99 if self._active("node_overload", Element(ElementKind.NODE, x), t) or x in self.busy else 0.2
            fwd = 1.0 - self.forward_drop(x, t)
            out.append(NodeMetricsObs(x, cpu, 0.4, fwd, 0.0, t))
        return tuple(out)

    # ---- applying the observer's actions
    def apply(self, s: str, req: ActionRequest) -> bool:
        if req.action in (ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK):
            lid = req.target.id
            if req.undo:
                self.penalties.pop((s, lid), None)
            else:
                self.penalties[(s, lid)] = float(req.param("factor", 1.0))
            return True
        if req.action is ActionKind.STEER_AROUND_NODE:
            n = req.target.id
            for y in self.adjacency()[s]:
                if y == n:
                    lid = link_element(s, y).id
                    if req.undo:
                        self.penalties.pop((s, lid), None)
                    else:
                        self.penalties[(s, lid)] = DRAIN_FACTOR
            return True
        if req.action is ActionKind.RESTART_SUBSYSTEM:
            name = str(req.param("service", ""))
            if name in self.services and not req.undo:
                self.services[name] = True
                return True
            return False
        return False

    def service_obs(self) -> tuple[ServiceObs, ...]:
        return tuple(ServiceObs(k, True, v, "" if v else "stuck") for k, v in sorted(self.services.items()))


def observer_run(world: World, s: str, until: float, seed: int, on_cycle=None, start: float = 0.0):
    """Drive the monitor side for node s: yields (t, Snapshot) every CYCLE_S with live probe results.
    `on_cycle(t, snapshot)` may return action requests the world applies (the engine's adapter)."""
    rng = random.Random(seed)
    sched = ProbeScheduler(s, random.Random(seed + 1), start)
    answers: list[tuple[float, int]] = []
    transitions: dict[str, int] = {}
    last_up: dict[str, bool] = {}
    t = start
    next_cycle = start + CYCLE_S
    routing, routing_key = None, None
    while t < until:
        key = (int(t * 4), tuple(sorted(world.penalties.items())))
        if key != routing_key:  # the world changes no faster than every quarter second
            routing, routing_key = world.routing(s, t, transitions), key
        for nb in routing.neighbours:
            if last_up.get(nb.node_id, nb.up) != nb.up:
                transitions[nb.node_id] = transitions.get(nb.node_id, 0) + 1
            last_up[nb.node_id] = nb.up
        sched.update(routing, t)
        while answers and answers[0][0] <= t:
            at, pid = heapq.heappop(answers)
            sched.answer(pid, at)
        for req in sched.poll(t):
            rtt = world.probe(s, req.target.via, req.target.dest, t, rng)
            if rtt is not None:
                heapq.heappush(answers, (t + rtt / 1000.0, req.probe_id))
        if t >= next_cycle - 1e-9:
            snap = Snapshot(t, routing, metrics=world.metrics(s, t), probes=sched.results(t),
                            services=world.service_obs(), boot_s=None)
            yield t, snap
            next_cycle += CYCLE_S
        t = round(t + PROBE_STEP_S, 6)
