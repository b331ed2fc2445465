"""Route computation: when SPF runs, the graph it runs on, and the routes it yields.

Rules:
- SPF runs spf_delay_s after the first change that needs it, with back-off while changes keep coming
  (in the spirit of RFC 8405): the hold doubles up to SPF_MAX_HOLD_S for runs closer than
  SPF_QUIET_S and resets after a quiet period. A lost neighbour skips delay and hold.
- Our own links come from the live neighbour table (a dead neighbour is routed around at once, before
  our new LSA is even flooded); other nodes' links come from the LSDB, two-way only (spf.py).
- A drain is the link's, both ways (`drained_both_ways`): a link one end advertises at
  LINK_COST_MAX_USABLE costs at least that from the other end too, in every node's SPF (ours included,
  for our own link to a neighbour that drained it). All nodes apply it to the same LSDB, so forwarding
  stays consistent, and nothing is re-advertised, so no end latches the other's drain.
- For every reachable node: a /128 route to its mesh address and one per prefix it announces and may
  announce (ownership.py: its certificate's grants, no more-specific of another node's grant), via the
  first hop's best link (lowest cost after penalties, then interface name). Penalties, drains and
  steering come from commands.py (its rules); a steered destination's first hop and metric are the
  loop-free alternate's. A prefix announced by several
  nodes goes to the best metric, then the lowest node id; our own prefixes are never routed away.
  Prefixes a node may not announce are counted ("prefix_not_owned") when its LSA is installed.
- The RIB turns the desired set into ordered changes (rib.py); the route table's results come back
  through `results`: a refusal is counted, reported (RouteRefused) and retried after ROUTE_RETRY_S.
  Reachability and hop counts feed the node manager after every run.
"""

from __future__ import annotations

from collections.abc import Callable

from x0node.proto.basis import Basis, Part
from x0node.proto.commands import LINK_COST_MAX_USABLE, Commands, steer_first_hops
from x0node.proto.events import RouteRefused, RoutesChanged
from x0node.proto.hello import HelloSessions
from x0node.proto.identity import mesh_address_of
from x0node.proto.lsdb import Lsdb
from x0node.proto.membership import Membership
from x0node.proto.messages import Lsa
from x0node.proto.neighbour import Neighbour
from x0node.proto.origination import Origination
from x0node.proto.ownership import Grants
from x0node.proto.rib import Rib, Route, RouteChange, RouteResult
from x0node.proto.spf import SpfGraph, build_graph, shortest_paths
from x0node.proto.timers import Deadline

SPF_MAX_HOLD_S = 0.1
"""Longest SPF hold while LSAs keep changing (back-off)."""
SPF_QUIET_S = 0.5
"""SPF runs further apart than this reset the hold to spf_delay_s."""


def drained_both_ways(links: dict[bytes, list[tuple[bytes, int]]]) -> dict[bytes, list[tuple[bytes, int]]]:
    """A link one end drained (advertised at LINK_COST_MAX_USABLE) is drained both ways: u->v costs at
    least that much when v lists u at it. Every node applies this to the same LSDB, so all SPFs agree;
    nothing is re-advertised, so a lifted drain is gone everywhere with the drainer's next LSA."""
    drained = {(v, u) for u, lst in links.items() for v, c in lst if c == LINK_COST_MAX_USABLE}
    if not drained:
        return links
    return {u: [(v, max(c, LINK_COST_MAX_USABLE) if (u, v) in drained else c) for v, c in lst]
            for u, lst in links.items()}


def hop_counts(graph: SpfGraph, src: int) -> list[int]:
    """Hops from `src` to every node (breadth first; -1 = unreachable)."""
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


class RouteComputation(Part):
    def __init__(
        self,
        basis: Basis,
        lsdb: Lsdb,
        hello: HelloSessions,
        own: Origination,
        members: Membership,
        perf_clock: Callable[[], float] | None,
        commands: Commands,
    ) -> None:
        super().__init__(basis)
        self.commands = commands
        self.own_certificate = basis.credential.certificate
        self.lsdb = lsdb
        self.hello = hello
        self.own = own
        self.members = members
        self._perf = perf_clock  # only for SPF duration statistics; never affects decisions
        self.rib = Rib()
        self.due = Deadline(self.wake)
        self._last_s = -1e9
        self._hold_s: float = self.config.spf_delay_s
        self._changes: list[RouteChange] = []
        self.reach: dict[bytes, tuple[float, int]] = {}
        self.first_hop: dict[bytes, tuple[str, bytes]] = {}
        self.last_ms: float | None = None
        self.total_ms = 0.0
        self.grants = Grants.of([(self.me, self.own_certificate)])

    def lsa_installed(self, origin: bytes, lsa: Lsa) -> None:
        """A verified LSA: learn its certificate's grants, count the prefixes it may not announce."""
        self.grants.add(origin, lsa.credential.certificate)
        refused = sum(1 for p in lsa.prefixes if not self.grants.may_announce(origin, p))
        if refused:
            self.out.drops["prefix_not_owned"] += refused

    def schedule(self, now: float, immediate: bool = False) -> None:
        due = now if immediate else max(now + self.config.spf_delay_s, self._last_s + self._hold_s)
        self.due.arm(due)

    def run_if_due(self, now: float) -> None:
        if self.due.take(now):
            self.run(now)

    def _graph_links(self) -> dict[bytes, list[tuple[bytes, int]]]:
        links: dict[bytes, list[tuple[bytes, int]]] = {}
        for origin, lsa in self.lsdb.lsas().items():
            if origin == self.me:
                continue
            links[origin] = [(ln.node_id, ln.cost) for ln in lsa.links]
        mine: dict[bytes, int] = {}
        for n in self.hello.up_neighbours():
            c = self.commands.link_cost(n)
            if c < mine.get(n.node_id, 1 << 30):
                mine[n.node_id] = c
        links[self.me] = sorted(mine.items())
        return drained_both_ways(links)

    def run(self, now: float) -> None:
        t0 = self._perf() if self._perf else None
        if now - self._last_s < SPF_QUIET_S:
            self._hold_s = min(SPF_MAX_HOLD_S, self._hold_s * 2)
        else:
            self._hold_s = self.config.spf_delay_s
        self._last_s = now
        ids, index, graph = build_graph(self._graph_links())
        dist, first = shortest_paths(graph, index[self.me])
        steered = {index[x]: f for x, f in self.commands.steers().items() if x in index}
        moved, missing = steer_first_hops(graph, index[self.me], dist, first, steered)
        for d, (hop, metric) in moved.items():
            first[d], dist[d] = hop, metric
        self.out.counters["steer_no_alternate"] += missing
        # first hop node -> best (ifname, neighbour) link to it: lowest cost, then ifname
        best_link: dict[bytes, Neighbour] = {}
        cost = self.commands.link_cost
        for n in self.hello.up_neighbours():
            b = best_link.get(n.node_id)
            if b is None or (cost(n), n.ifname) < (cost(b), b.ifname):
                best_link[n.node_id] = n
        desired: dict[str, Route] = {}
        prefix_best: dict[str, tuple[float, bytes, Route]] = {}
        reach: dict[bytes, tuple[float, int]] = {}
        first_hop: dict[bytes, tuple[str, bytes]] = {}
        lsas = self.lsdb.lsas()
        self.grants = grants = Grants.of(
            [(self.me, self.own_certificate)] + [(o, lsa.credential.certificate) for o, lsa in lsas.items()]
        )
        hops = hop_counts(graph, index[self.me])
        mine = set(self.own.prefixes)
        for i, nid in enumerate(ids):
            if nid == self.me or first[i] < 0:
                continue
            via = best_link.get(ids[first[i]])
            if via is None:
                continue
            metric = int(dist[i])
            reach[nid] = (metric, hops[i])
            first_hop[nid] = (via.ifname, via.node_id)
            host = f"{mesh_address_of(nid)}/128"
            desired[host] = Route(host, via.ifname, via.address, metric, nid.hex())
            lsa = lsas.get(nid)
            if lsa is None:
                continue
            for p in lsa.prefixes:
                if p in mine or not grants.may_announce(nid, p):
                    continue
                r = Route(p, via.ifname, via.address, metric, nid.hex())
                cur = prefix_best.get(p)
                if cur is None or (metric, nid) < (cur[0], cur[1]):
                    prefix_best[p] = (metric, nid, r)
        for p, (_, _, r) in prefix_best.items():
            desired.setdefault(p, r)
        changes = self.rib.diff(desired, now)
        if changes:
            self._changes.extend(changes)
            self.out.emit(
                RoutesChanged(
                    now,
                    sum(1 for c in changes if c.op == "add"),
                    sum(1 for c in changes if c.op in ("replace", "metric")),
                    sum(1 for c in changes if c.op == "del"),
                )
            )
        self.reach = reach
        self.first_hop = first_hop
        self.members.update_reachability(reach, now)
        self.out.counters["spf_runs"] += 1
        if t0 is not None and self._perf is not None:
            self.last_ms = (self._perf() - t0) * 1000.0
            self.total_ms += self.last_ms

    def results(self, results: list[RouteResult], now: float) -> None:
        """The route table's outcome of the changes handed out (in order)."""
        for res in results:
            if self.rib.result(res, now):
                ch = res.change
                self.out.emit(RouteRefused(now, ch.op, ch.dest, ch.ifname, res.error or ""))
        retry = self.rib.next_retry()
        if retry is not None:
            self.due.arm(retry)

    def withdraw_all(self) -> None:
        self._changes.extend(self.rib.withdraw_all())

    def take_changes(self) -> list[RouteChange]:
        out = self._changes
        self._changes = []
        return out
