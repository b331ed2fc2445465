"""In-memory mesh of state-gossip cores (x0node/state/gossip.py): manual clock, seeded lossy links.

Rules:
- Time is simulated: an event heap of datagram deliveries and gossip timers; nothing sleeps.
- Every link is point to point with a latency drawn from [lat_min, lat_max] per datagram (so datagrams
  reorder), a loss probability and a duplication probability, all from one seeded rng.
- Neighbour sets come from the topology and the links' state (as the routing core would report them);
  a cut link is removed from both ends' neighbour sets after `detect_s`, a healed one comes back after
  `detect_s`, as the router's dead timer and hello would do.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

from x0node.proto.identity import Identity
from x0node.proto.trust import TrustAnchor, TrustStore
from x0node.state.gossip import Gossip, Neighbour
from x0node.state.service import StateService

ANCHOR_SEED = hashlib.blake2b(b"state-sim-anchor", digest_size=32).digest()


def node_seed(seed: int, i: int) -> bytes:
    return hashlib.blake2b(f"state-sim-node-{seed}-{i}".encode(), digest_size=32).digest()


@dataclass
class Link:
    a: int
    b: int
    up: bool = True
    loss: float = 0.0


@dataclass
class SimNode:
    index: int
    gossip: Gossip
    alive: bool = True
    acked: list[tuple[str, str, bytes | None]] = field(default_factory=list)


class StateSim:
    def __init__(self, n: int, links: list[tuple[int, int]], seed: int = 1, loss: float = 0.0,
                 dup: float = 0.0, lat_min_s: float = 0.001, lat_max_s: float = 0.005, detect_s: float = 0.3,
                 certify: bool = True, wall0: float = 1_700_000_000.0) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.wall0 = wall0
        self.dup = dup
        self.lat = (lat_min_s, lat_max_s)
        self.detect_s = detect_s
        self.anchor = TrustAnchor.from_seed(ANCHOR_SEED)
        self.nodes: list[SimNode] = []
        self.links: dict[tuple[int, int], Link] = {}
        self._heap: list[tuple[float, int, str, object]] = []
        self._seq = 0
        self.delivered = 0
        idents = []
        for i in range(n):
            ident = Identity.from_seed(node_seed(seed, i))
            if certify:
                ident = ident.with_certificate(self.anchor.certify(ident.public_key))
            idents.append(ident)
        for i, ident in enumerate(idents):
            trust = TrustStore(anchors=[self.anchor.public_key]) if certify else \
                TrustStore(allowed_keys={x.public_key for x in idents})
            g = Gossip(ident, trust, random.Random(seed * 1000 + i), 0.0)
            g.set_wall_clock(wall0, 0.0)
            self.nodes.append(SimNode(i, g))
        for a, b in links:
            self.links[(min(a, b), max(a, b))] = Link(min(a, b), max(a, b), True, loss)
        for i in range(n):
            self._refresh_neighbours(i)
            self._schedule_timer(i)

    # --- addressing: node i's interface towards j is "m<j>", its address there "fe80::<i+1>" ---------
    @staticmethod
    def addr(i: int) -> str:
        return f"fe80::{i + 1:x}"

    def _neighbours_of(self, i: int) -> list[Neighbour]:
        out = []
        for (a, b), ln in self.links.items():
            if not ln.up or i not in (a, b):
                continue
            j = b if a == i else a
            if self.nodes[j].alive:
                out.append(Neighbour(f"m{j}", self.nodes[j].gossip.me, self.addr(j)))
        return out

    def _refresh_neighbours(self, i: int) -> None:
        if self.nodes[i].alive:
            self.nodes[i].gossip.set_neighbours(self._neighbours_of(i), self.now)
            self._flush(i)

    def _push(self, t: float, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _schedule_timer(self, i: int) -> None:
        t = self.nodes[i].gossip.next_timer()
        if t is not None:
            self._push(max(t, self.now), "timer", (i, t))

    def _flush(self, i: int) -> None:
        g = self.nodes[i].gossip
        for out in g.datagrams_to_send():
            j = int(out.ifname[1:])
            ln = self.links.get((min(i, j), max(i, j)))
            if ln is None or not ln.up or not self.nodes[j].alive:
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            for _ in range(copies):
                if self.rng.random() < ln.loss:
                    continue
                self._push(self.now + self.rng.uniform(*self.lat), "rx", (j, f"m{i}", self.addr(i), out.payload))
        self._schedule_timer(i)

    # --- driving ----------------------------------------------------------------------------------------
    def run_until(self, t_end: float) -> None:
        while self._heap and self._heap[0][0] <= t_end:
            t, _, kind, payload = heapq.heappop(self._heap)
            self.now = max(self.now, t)
            if kind == "timer":
                i, due = payload  # type: ignore[misc]
                g = self.nodes[i].gossip
                if not self.nodes[i].alive or g.next_timer() != due:
                    continue
                g.tick(self.now)
                self._flush(i)
            elif kind == "rx":
                j, ifname, src, data = payload  # type: ignore[misc]
                if not self.nodes[j].alive:
                    continue
                self.delivered += 1
                self.nodes[j].gossip.receive(ifname, src, data, self.now)
                self._flush(j)
            elif kind == "nbrs":
                self._refresh_neighbours(payload)  # type: ignore[arg-type]
        self.now = max(self.now, t_end)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def write(self, i: int, ns: str, key: str, **kw: object) -> None:
        g = self.nodes[i].gossip
        g.write(ns, key, self.now, **kw)  # type: ignore[arg-type]
        self.nodes[i].acked.append((ns, key, kw.get("value")))  # type: ignore[arg-type]
        self._flush(i)

    def set_link(self, a: int, b: int, up: bool) -> None:
        self.links[(min(a, b), max(a, b))].up = up
        for k in (a, b):
            self._push(self.now + self.detect_s, "nbrs", k)

    def set_loss(self, loss: float) -> None:
        for ln in self.links.values():
            ln.loss = loss

    # --- observation ------------------------------------------------------------------------------------
    def digests(self) -> set[bytes]:
        return {n.gossip.store.digest() for n in self.nodes if n.alive}

    def converged(self) -> bool:
        return len(self.digests()) == 1

    def run_until_converged(self, timeout_s: float, step_s: float = 0.01) -> float | None:
        start = self.now
        while self.now - start <= timeout_s:
            if self.converged():
                return self.now - start
            self.run_for(step_s)
        return None


def ring_links(n: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % n) for i in range(n)]


def random_links(n: int, seed: int, degree: float = 3.0) -> list[tuple[int, int]]:
    """A connected random mesh: a random spanning tree plus extra edges up to the mean degree."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    links: set[tuple[int, int]] = set()
    for k in range(1, n):
        j = order[rng.randrange(k)]
        links.add((min(order[k], j), max(order[k], j)))
    while len(links) < int(n * degree / 2):
        a, b = rng.sample(range(n), 2)
        links.add((min(a, b), max(a, b)))
    return sorted(links)


class SimStateService(StateService):
    """The real service's API methods (web routes, control socket) over one simulated node: no sockets,
    no disk."""

    def __init__(self, sim: StateSim, index: int = 0) -> None:
        super().__init__({})
        self.gossip = sim.nodes[index].gossip
        self.ctx = type("Ctx", (), {"router": type("R", (), {"trust": self.gossip.trust})(), "wake": lambda: None})()

    async def _persist_now(self) -> None:
        return None

    def _pump(self) -> None:
        self.gossip.datagrams_to_send()


def validated_line3(namespace: str, validator, seed: int) -> StateSim:  # type: ignore[no-untyped-def]
    """Three nodes in a line (0-1-2), each checking `namespace`'s records with `validator`, run 0.5 s."""
    sim = StateSim(3, [(0, 1), (1, 2)], seed=seed)
    for n in sim.nodes:
        n.gossip.validators[namespace] = validator
    sim.run_for(0.5)
    return sim
