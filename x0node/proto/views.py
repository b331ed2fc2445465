"""The routing core's read model: frozen views of neighbours, routes, nodes, topology, drops, stats.

Everything outside the core (web UI and API, /metrics, anomaly detection, healing) reads these and
nothing else; their field names are the ones docs/web.md documents, so nobody renames on the way
(`dataclasses.asdict(view)` is the API's JSON).

Rules:
- A view is built on request from the core's tables and never aliases live state: every field is an
  immutable value or a fresh copy.
- Node ids are hex strings; times are seconds; quality classes are lower-case ("excellent" .. "bad").
- `routes` lists what the kernel confirmed (the RIB's installed table), never what was only asked for.
- Throughputs are bits per second (None: unknown); the mesh statistics' quality histogram lists every
  class, zero included, so a consumer never has to guess a missing key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from x0node.proto.commands import is_sick
from x0node.proto.identity import mesh_address_of
from x0node.proto.neighbour import Neighbour
from x0node.proto.quality import Quality
from x0node.proto.trust import Role

if TYPE_CHECKING:
    from x0node.proto.router import Router


def quality_name(q: int) -> str:
    return Quality(q).name.lower()


@dataclass(frozen=True)
class NeighbourView:
    node_id: str
    ifname: str
    addr: str  # its link-local address on ifname
    state: str  # "init" | "up"
    rtt_ms: float | None
    loss: float  # 0..1
    throughput_bps: float | None  # our link towards it
    quality: str
    cost: int
    last_seen_s: float  # seconds since anything authenticated arrived from it
    up_for_s: float | None
    throughput_source: str | None = None  # "kernel" (link speed the adapter read) | "probe" (measured)
    ctl_received: int = 0  # control packets accepted from it so far (only grows while it exists)
    ctl_missed: int = 0  # control sequence numbers missed so far (gaps; only grows while it exists)


@dataclass(frozen=True)
class LostNeighbourView:
    """A neighbour that was UP and is gone (hello.LOST_NEIGHBOUR_MEMORY_S, until it is UP again)."""

    node_id: str
    ifname: str
    down_for_s: float  # seconds since the core declared it gone
    reason: str  # "dead" (nothing heard for its dead time), "lost_us", ...


@dataclass(frozen=True)
class RouteView:
    dest: str  # "addr/len"
    via: str  # link-local next hop
    ifname: str
    metric: int
    node_id: str  # the node the destination belongs to


@dataclass(frozen=True)
class NodeView:
    node_id: str
    mesh_addr: str
    self: bool
    reachable: bool
    prefixes: tuple[str, ...]
    role: str | None  # "node" | "gateway" | "admin" from its certificate, None for a raw key
    metric: int | None
    hops: int | None
    sick: bool = False  # its LSA carries the sick flag (commands.py): the mesh avoids it as transit


@dataclass(frozen=True)
class CommandView:
    """A routing command in force (commands.py): what it does, to what, and until when."""

    kind: str  # "penalty" | "drain" | "steer" | "sick"
    target: str  # node id: the neighbour (link commands), the steered node, or this node (sick)
    ifname: str  # link commands on one interface; "" = every interface (and for the others)
    factor: float  # penalty and steer factor; 1.0 for drain and sick
    expires_in_s: float
    cost: int | None = None  # link commands: the link's cost now, after every command on it


@dataclass(frozen=True)
class LinkView:
    a: str
    b: str
    cost: int  # as a advertises its link to b (so are quality and throughput)
    quality: str
    throughput_bps: float | None = None
    cost_back: int | None = None  # as b advertises its link to a (SPF uses each direction's own cost)


@dataclass(frozen=True)
class MeshStatsView:
    """The node manager's topology statistics (membership.py) over the two-way links of the LSDB."""

    nodes: int = 0  # nodes that joined and have not left (not counting this one)
    reachable: int = 0
    links: int = 0  # two-way links, each once
    mean_degree: float = 0.0
    max_hops: int = 0  # the farthest reachable node, in hops
    quality_histogram: dict[str, int] = field(default_factory=lambda: {quality_name(q): 0 for q in Quality})
    joins: int = 0  # since the daemon started
    leaves: int = 0


@dataclass(frozen=True)
class TopologyView:
    nodes: tuple[NodeView, ...]
    links: tuple[LinkView, ...]  # two-way links only, each once (a < b)
    statistics: MeshStatsView = field(default_factory=MeshStatsView)


@dataclass(frozen=True)
class DropsView:
    datagrams: dict[str, int]  # received datagrams refused, by reason
    routes: dict[str, int]  # route changes the kernel refused, by reason


@dataclass(frozen=True)
class InterfaceView:
    name: str
    up: bool
    slot: int


@dataclass(frozen=True)
class StatsView:
    node_id: str
    mesh_addr: str
    interfaces: tuple[InterfaceView, ...]
    neighbours: int
    neighbours_up: int
    lsdb_size: int
    routes: int
    drops: DropsView
    counters: dict[str, int]
    spf_runs: int
    spf_last_ms: float | None
    spf_seconds_total: float
    retransmit_queue: int
    mesh: MeshStatsView
    credential_checks: dict[str, int]  # certificate-and-signature checks: "ok" or the refusal's reason


def neighbour_view(n: Neighbour, now: float) -> NeighbourView:
    return NeighbourView(
        node_id=n.node_id.hex(),
        ifname=n.ifname,
        addr=n.address,
        state=n.state.value,
        rtt_ms=None if n.rtt_ms is None else round(n.rtt_ms, 3),
        loss=round(n.loss(), 4),
        throughput_bps=n.throughput_bps,
        throughput_source=n.throughput_source,
        quality=quality_name(n.adv_quality),
        cost=n.adv_cost,
        last_seen_s=round(max(0.0, now - n.last_rx_s), 3),
        up_for_s=None if n.up_since_s is None else round(now - n.up_since_s, 3),
        ctl_received=n.ctl_received,
        ctl_missed=n.ctl_missed,
    )


def neighbours(r: Router, now: float) -> tuple[NeighbourView, ...]:
    return tuple(neighbour_view(n, now) for _, n in sorted(r.hello.nbrs.items()))


def lost_neighbours(r: Router, now: float) -> tuple[LostNeighbourView, ...]:
    """Neighbours lost in the last LOST_NEIGHBOUR_MEMORY_S and not UP since, by node id."""
    return tuple(LostNeighbourView(nid, ifname, round(max(0.0, now - at), 3), reason)
                 for nid, (ifname, at, reason) in sorted(r.hello.recently_lost(now).items()))


def rtt_histograms(r: Router) -> dict[str, tuple[tuple[int, ...], float]]:
    """Per neighbour node id: RTT sample counts per bucket (neighbour.RTT_HISTOGRAM_BOUNDS_MS, then
    above) and their sum in ms, added up over the interfaces it is a neighbour on."""
    out: dict[str, tuple[tuple[int, ...], float]] = {}
    for (_, nid), n in sorted(r.hello.nbrs.items()):
        counts, total = out.get(nid.hex(), ((0,) * len(n.rtt_hist), 0.0))
        out[nid.hex()] = (tuple(a + b for a, b in zip(counts, n.rtt_hist, strict=True)), total + n.rtt_hist_sum_ms)
    return out


def routes(r: Router) -> tuple[RouteView, ...]:
    return tuple(
        RouteView(x.dest, x.via, x.ifname, x.metric, x.origin) for _, x in sorted(r.routing.rib.installed.items())
    )


def _role(role: int | None) -> str | None:
    return None if role is None or role not in Role._value2member_map_ else Role(role).name.lower()


def nodes(r: Router) -> tuple[NodeView, ...]:
    """This node and every node with an LSA in the database, by node id."""
    lsas = r.lsdb.lsas()
    reach = r.routing.reach
    out = []
    for nid in sorted(set(lsas) | {r.me}):
        lsa = lsas.get(nid)
        cert = None if lsa is None else lsa.credential.certificate
        if nid == r.me:
            cert = r.credential.certificate
        metric_hops = reach.get(nid)
        out.append(
            NodeView(
                node_id=nid.hex(),
                mesh_addr=mesh_address_of(nid),
                self=nid == r.me,
                reachable=nid == r.me or metric_hops is not None,
                prefixes=tuple(lsa.prefixes) if lsa is not None else tuple(r.origination.prefixes),
                role=_role(None if cert is None else cert.role),
                metric=None if metric_hops is None else int(metric_hops[0]),
                hops=None if metric_hops is None else metric_hops[1],
                sick=lsa is not None and is_sick(lsa),
            )
        )
    return tuple(out)


def topology(r: Router) -> TopologyView:
    lsas = r.lsdb.lsas()
    links = []
    for origin, lsa in sorted(lsas.items()):
        for ln in lsa.links:
            other = lsas.get(ln.node_id)
            back = None if other is None else next((x for x in other.links if x.node_id == origin), None)
            if back is not None and origin < ln.node_id:
                bps = ln.throughput_kbps * 1000.0 if ln.throughput_kbps else None
                links.append(LinkView(origin.hex(), ln.node_id.hex(), ln.cost, quality_name(ln.quality), bps,
                                      back.cost))
    return TopologyView(nodes(r), tuple(links), mesh_stats(r))


def mesh_stats(r: Router) -> MeshStatsView:
    links = {o: [(ln.node_id, ln.cost, ln.quality) for ln in lsa.links] for o, lsa in r.lsdb.lsas().items()}
    st = r.members.statistics(links)
    hist = {quality_name(q): int(st["quality_histogram"].get(int(q), 0)) for q in Quality}
    return MeshStatsView(
        nodes=st["nodes"], reachable=st["reachable"], links=st["links"], mean_degree=st["mean_degree"],
        max_hops=st["max_hops"], quality_histogram=hist, joins=st["joins"], leaves=st["leaves"],
    )


def commands(r: Router, now: float) -> tuple[CommandView, ...]:
    out = []
    for kind, target, ifname, factor, expires_s in r.commands.in_force():
        cost = None
        if kind in ("penalty", "drain"):
            costs = [r.commands.link_cost(n) for n in r.hello.up_neighbours()
                     if n.node_id == target and (not ifname or n.ifname == ifname)]
            cost = max(costs) if costs else None
        out.append(CommandView(kind, target.hex(), ifname, factor, round(max(0.0, expires_s - now), 3), cost))
    return tuple(out)


def drops(r: Router) -> DropsView:
    return DropsView(dict(r.out.drops), dict(r.routing.rib.refusals))


def stats(r: Router) -> StatsView:
    counters = dict(r.out.counters)
    return StatsView(
        node_id=r.me.hex(),
        mesh_addr=r.identity.mesh_address,
        interfaces=tuple(InterfaceView(k, i.up, i.slots.slot) for k, i in r.interfaces.table.items()),
        neighbours=len(r.hello.nbrs),
        neighbours_up=len(r.hello.up_neighbours()),
        lsdb_size=len(r.lsdb),
        routes=len(r.routing.rib.installed),
        drops=drops(r),
        counters=counters,
        spf_runs=counters["spf_runs"],
        spf_last_ms=r.routing.last_ms,
        spf_seconds_total=round(r.routing.total_ms / 1000.0, 6),
        retransmit_queue=r.flooding.pending_count,
        mesh=mesh_stats(r),
        credential_checks=dict(r.credential_checks),
    )
