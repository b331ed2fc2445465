"""In-memory N-node mesh for the routing core: manual clock, seeded lossy point-to-point links.

Rules:
- Time is simulated: an event heap of datagram deliveries and router timers; nothing sleeps.
- Every link is a pair of interfaces with a latency and a loss probability drawn from one seeded rng,
  so a run is reproducible from its seed. A link may have a rate (`rate_bps`): each direction then
  serialises its datagrams (IPv6+UDP headers included) one after another at that rate, like a real
  link's transmit queue, before the latency. `send_gap_s` is the sending host's own spacing between two
  datagrams (its send path's cost): a datagram enters the queue no sooner than that after the last.
- A "cut" link silently drops everything (carrier stays up), as a radio link that fades out would.
- The harness applies each router's RouteChanges to a per-node in-memory route table (the kernel seam's
  fake, which reports every outcome back to the router) and can walk those tables hop by hop to check
  that every node reaches every other node without loops.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

from x0node.io.route_table import MemoryRouteTable
from x0node.proto.identity import Identity
from x0node.proto.protocol import IPV6_UDP_HEADER_BYTES
from x0node.proto.router import Router, RouterConfig
from x0node.proto.trust import TrustAnchor, TrustStore

MAX_SPINS = 1000
"""A router re-arming its timer for the same instant this many times in a row is a livelock (a bug)."""
ANCHOR_SEED = hashlib.blake2b(b"sim-anchor", digest_size=32).digest()


def node_seed(seed: int, i: int) -> bytes:
    return hashlib.blake2b(f"sim-node-{seed}-{i}".encode(), digest_size=32).digest()


@dataclass
class Link:
    a: int
    a_if: str
    a_addr: str
    b: int
    b_if: str
    b_addr: str
    latency_s: float
    loss: float
    up: bool = True
    rate_bps: float | None = None
    busy_until: dict[int, float] = field(default_factory=dict)  # sender -> its direction's queue end
    send_gap_s: float = 0.0
    entered: dict[int, float] = field(default_factory=dict)  # sender -> when its last datagram was queued

    def departure(self, sender: int, now: float, size_bytes: int) -> float:
        """When a datagram sent by `sender` at `now` has left the link's transmit queue."""
        if self.rate_bps is None:
            return now
        start = max(now, self.entered.get(sender, -1.0) + self.send_gap_s)
        self.entered[sender] = start
        done = max(start, self.busy_until.get(sender, 0.0)) + (size_bytes + IPV6_UDP_HEADER_BYTES) * 8 / self.rate_bps
        self.busy_until[sender] = done
        return done


@dataclass
class Segment:
    """A multi-access link (one broadcast domain): members are (node, ifname, address)."""

    members: list[tuple[int, str, str]]
    latency_s: float
    loss: float
    up: bool = True


@dataclass
class Node:
    index: int
    router: Router
    table: MemoryRouteTable = field(default_factory=MemoryRouteTable)
    events: list = field(default_factory=list)
    tx_bytes: int = 0
    tx_packets: int = 0
    alive: bool = True

    @property
    def routes(self) -> dict[str, tuple[str, str, int]]:
        """dest -> (ifname, via, metric): the node's route table."""
        return self.table.routes


class SimMesh:
    def __init__(
        self,
        n: int,
        seed: int = 1,
        config: RouterConfig | None = None,
        certify: bool = True,
        grants: dict[int, tuple[str, ...]] | None = None,
        roles: dict[int, int] | None = None,
    ) -> None:
        """`grants`/`roles`: per node index, the prefixes / role its certificate carries."""
        self.grants = grants or {}
        self.roles = roles or {}
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.config = config or RouterConfig()
        self.anchor = TrustAnchor.from_seed(ANCHOR_SEED)
        self.trust_anchors = [self.anchor.public_key]
        self.nodes: list[Node] = []
        self.links: list[Link] = []
        self.if_link: dict[tuple[int, str], Link | Segment] = {}
        self._heap: list[tuple[float, int, str, object]] = []
        self._seq = 0
        self._sched: dict[int, float | None] = {}
        self.delivered = 0
        self._spins = 0
        self.capture: list[tuple[float, int, str, bytes]] | None = None  # (time, sender, ifname, payload)
        for _ in range(n):
            self.add_node(certify=certify)

    # ---- construction
    def make_identity(self, i: int, certify: bool = True) -> Identity:
        ident = Identity.from_seed(node_seed(self.seed, i))
        if certify:
            extra = {"prefixes": self.grants[i]} if i in self.grants else {}
            ident = ident.with_certificate(self.anchor.certify(ident.public_key, self.roles.get(i, 1), 0, **extra))
        return ident

    def add_node(self, certify: bool = True, identity: Identity | None = None) -> int:
        i = len(self.nodes)
        ident = identity or self.make_identity(i, certify)
        trust = TrustStore(list(self.trust_anchors))
        r = Router(ident, trust, self.config, random.Random(self.seed * 100003 + i), self.now)
        self.nodes.append(Node(i, r))
        self._sched[i] = None
        self._schedule(i)
        return i

    def connect(self, a: int, b: int, latency_s: float = 0.001, loss: float = 0.0,
                rate_bps: float | None = None) -> Link:
        a_if = f"m{sum(1 for k in self.if_link if k[0] == a)}"
        b_if = f"m{sum(1 for k in self.if_link if k[0] == b)}"
        link = Link(
            a, a_if, f"fe80::{a + 1:x}:{a_if[1:]}", b, b_if, f"fe80::{b + 1:x}:{b_if[1:]}", latency_s, loss,
            rate_bps=rate_bps,
        )
        self.links.append(link)
        self.if_link[(a, a_if)] = link
        self.if_link[(b, b_if)] = link
        self.nodes[a].router.add_interface(a_if, self.now)
        self.nodes[b].router.add_interface(b_if, self.now)
        self._schedule(a)
        self._schedule(b)
        return link

    def connect_segment(self, nodes: list[int], latency_s: float = 0.001, loss: float = 0.0) -> Segment:
        """Put `nodes` on one shared link (each gets one new interface on it)."""
        members = []
        for i in nodes:
            ifname = f"m{sum(1 for k in self.if_link if k[0] == i)}"
            members.append((i, ifname, f"fe80::{i + 1:x}:{ifname[1:]}"))
        seg = Segment(members, latency_s, loss)
        for i, ifname, _ in members:
            self.if_link[(i, ifname)] = seg
            self.nodes[i].router.add_interface(ifname, self.now)
            self._schedule(i)
        return seg

    def link_between(self, a: int, b: int) -> Link:
        for ln in self.links:
            if {ln.a, ln.b} == {a, b}:
                return ln
        raise KeyError((a, b))

    # ---- event loop
    def _push(self, t: float, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    def _schedule(self, i: int) -> None:
        node = self.nodes[i]
        if not node.alive:
            return
        nt = node.router.next_timer()
        if nt is None:
            return
        nt = max(nt, self.now)
        if self._sched.get(i) is not None and self._sched[i] <= nt:
            return
        self._sched[i] = nt
        self._push(nt, "timer", i)

    def _flush(self, i: int) -> None:
        node = self.nodes[i]
        r = node.router
        for out in r.datagrams_to_send():
            node.tx_packets += 1
            node.tx_bytes += len(out.payload)
            if self.capture is not None and len(self.capture) < 100_000:
                self.capture.append((self.now, i, out.ifname, out.payload))
            link = self.if_link.get((i, out.ifname))
            if link is None or not link.up:
                continue
            if isinstance(link, Segment):
                src = next(a for j, f, a in link.members if (j, f) == (i, out.ifname))
                for j, f, addr in link.members:
                    if j == i or (out.dst is not None and out.dst != addr):
                        continue
                    if link.loss and self.rng.random() < link.loss:
                        continue
                    self._push(self.now + link.latency_s, "rx", (j, f, src, out.payload, link))
                continue
            if link.a == i:
                peer, peer_if, src, peer_addr = link.b, link.b_if, link.a_addr, link.b_addr
            else:
                peer, peer_if, src, peer_addr = link.a, link.a_if, link.b_addr, link.a_addr
            if out.dst is not None and out.dst != peer_addr:
                continue
            sent = link.departure(i, self.now, len(out.payload))
            if link.loss and self.rng.random() < link.loss:
                continue
            self._push(sent + link.latency_s, "rx", (peer, peer_if, src, out.payload, link))
        changes = r.route_changes()
        if changes:
            r.route_results(node.table.apply(changes), self.now)
        while (ev := r.next_event()) is not None:
            node.events.append(ev)
        self._schedule(i)

    def inject_flush(self, i: int) -> None:
        """Collect what node i produced after it was driven directly (outside the event loop)."""
        self._flush(i)

    def inject(self, i: int, ifname: str, src: str, data: bytes) -> None:
        """Deliver a datagram to node i now, as if it came from `src` on `ifname`."""
        self.nodes[i].router.receive(ifname, src, data, self.now)
        self._flush(i)

    def run_until(self, t_end: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            t, _, kind, payload = heapq.heappop(heap)
            self.now = t
            if kind == "timer":
                i = payload  # type: ignore[assignment]
                if self._sched.get(i) != t:
                    continue
                self._sched[i] = None
                node = self.nodes[i]
                if not node.alive:
                    continue
                node.router.tick(t)
                self._flush(i)
                if self._sched.get(i) == t:
                    # the router asked to be woken at the time it was just ticked for
                    self._spins += 1
                    if self._spins > MAX_SPINS:
                        raise RuntimeError(f"node {i} timer does not advance at t={t}")
                else:
                    self._spins = 0
            else:
                peer, peer_if, src, data, link = payload  # type: ignore[misc]
                if not link.up or not self.nodes[peer].alive:
                    continue
                self.delivered += 1
                self.nodes[peer].router.receive(peer_if, src, data, t)
                self._flush(peer)
        self.now = max(self.now, t_end)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def kill(self, i: int) -> None:
        """Node vanishes silently (power loss)."""
        self.nodes[i].alive = False

    # ---- checks
    def mesh_route(self, src: int, dst: int, max_hops: int | None = None) -> list[int] | None:
        """Walk the installed routes from src towards dst's mesh address; None if no route or loop."""
        dest = f"{self.nodes[dst].router.identity.mesh_address}/128"
        path = [src]
        cur = src
        limit = max_hops or len(self.nodes) + 1
        while cur != dst:
            r = self.nodes[cur].routes.get(dest)
            if r is None:
                return None
            link = self.if_link.get((cur, r[0]))
            if link is None:
                return None
            if isinstance(link, Segment):
                ends = [j for j, _, a in link.members if a == r[1] and j != cur]
                if not ends:
                    return None
                nxt, via_ok = ends[0], True
            else:
                nxt = link.b if link.a == cur else link.a
                via_ok = (link.b_addr if link.a == cur else link.a_addr) == r[1]
            if not via_ok or not link.up or not self.nodes[nxt].alive:
                return None
            path.append(nxt)
            cur = nxt
            if len(path) > limit:
                return None
        return path

    def all_pairs_ok(self, nodes: list[int] | None = None) -> bool:
        idx = nodes if nodes is not None else [n.index for n in self.nodes if n.alive]
        return all(self.mesh_route(a, b) is not None for a in idx for b in idx if a != b)

    def broken_pairs(self, nodes: list[int] | None = None) -> list[tuple[int, int]]:
        idx = nodes if nodes is not None else [n.index for n in self.nodes if n.alive]
        return [(a, b) for a in idx for b in idx if a != b and self.mesh_route(a, b) is None]

    def run_until_converged(
        self, timeout_s: float, step_s: float = 0.01, nodes: list[int] | None = None
    ) -> float | None:
        """Advance until all pairs route; returns the simulated time taken or None."""
        start = self.now
        while self.now - start <= timeout_s:
            if self.all_pairs_ok(nodes):
                return self.now - start
            self.run_for(step_s)
        return None

    def drops(self, i: int) -> dict[str, int]:
        return dict(self.nodes[i].router.out.drops)


# ---- topologies
def line(mesh: SimMesh, n: int, **kw: float) -> None:
    for i in range(n - 1):
        mesh.connect(i, i + 1, **kw)


def ring(mesh: SimMesh, n: int, **kw: float) -> None:
    line(mesh, n, **kw)
    mesh.connect(n - 1, 0, **kw)


def grid(mesh: SimMesh, w: int, h: int, **kw: float) -> None:
    for y in range(h):
        for x in range(w):
            i = y * w + x
            if x + 1 < w:
                mesh.connect(i, i + 1, **kw)
            if y + 1 < h:
                mesh.connect(i, i + w, **kw)


def random_connected(mesh: SimMesh, n: int, extra_edges: int, rng: random.Random, **kw: float) -> None:
    """A random spanning tree plus `extra_edges` random extra links (no duplicates)."""
    edges: set[tuple[int, int]] = set()
    order = list(range(n))
    rng.shuffle(order)
    for k in range(1, n):
        a, b = order[k], order[rng.randrange(k)]
        edges.add((min(a, b), max(a, b)))
    while len(edges) < n - 1 + extra_edges:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            edges.add((min(a, b), max(a, b)))
    for a, b in sorted(edges):
        mesh.connect(a, b, **kw)


def neighbour_addr(mesh: SimMesh, at: int, peer: int) -> tuple[str, str]:
    """(ifname at `at`, link-local source address of `peer`) on the link between them."""
    ln = mesh.link_between(at, peer)
    return (ln.a_if, ln.b_addr) if ln.a == at else (ln.b_if, ln.a_addr)


def state_of(mesh: SimMesh, i: int) -> tuple:
    """Everything routing-relevant a datagram could change at node i."""
    r = mesh.nodes[i].router
    lsdb = sorted((e.origin, e.seq, e.raw) for e in r.lsdb.entries())
    nbrs = sorted((k, n.state.value, n.epoch, n.address) for k, n in r.hello.nbrs.items())
    return lsdb, nbrs, sorted(r.routing.rib.installed.items()), sorted(mesh.nodes[i].routes.items())


def measure_cut(
    mesh: SimMesh, a: int, b: int, poll_s: float = 0.002, limit_s: float = 3.0
) -> tuple[float, float]:
    """Silently cut the a-b link now; return (detection time, time until every pair routes again)."""
    link = mesh.link_between(a, b)
    t0 = mesh.now
    seen = {a: len(mesh.nodes[a].events), b: len(mesh.nodes[b].events)}
    link.up = False
    detect = None
    while mesh.now - t0 < limit_s:
        mesh.run_for(poll_s)
        if detect is None:
            for i in (a, b):
                for ev in mesh.nodes[i].events[seen[i] :]:
                    if ev.kind == "NeighbourDown":
                        detect = ev.at_s - t0 if detect is None else min(detect, ev.at_s - t0)
        if detect is not None and mesh.all_pairs_ok():
            return detect, mesh.now - t0
    raise AssertionError("did not reconverge")
