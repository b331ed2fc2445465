"""Typed observations the healing loop reads: what routing, telemetry, the data-plane probes, the anomaly
detector and the daemon's services report at one moment.

Rules and invariants:
- Every type here is a frozen dataclass of plain values. Node ids are lowercase hex strings, times are
  the daemon's monotonic seconds, fractions are in [0, 1], RTTs in milliseconds.
- The healing core reads only these types. `routing_from_views` maps the routing core's read model
  (the frozen views of x0node/proto/views.py, read by field name, or their JSON form) onto them;
  nothing else in healing/ knows the router's shapes.
- Parsing is total and bounded: a malformed entry is dropped and counted by reason in `ParseDrops`,
  one bad entry never drops the others, and at most the MAX_* entries of each kind are kept.
- Sans-I/O: no clock, socket or file here.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_NEIGHBOURS = 256  # the core's neighbour table is smaller; more is malformed input
MAX_ROUTES = 4096
MAX_NODES = 4096
MAX_EDGES = 32768
MAX_INTERFACES = 64
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 64
RTT_MAX_MS = 60_000.0  # anything slower is as good as lost


@dataclass(frozen=True)
class NeighbourObs:
    node_id: str
    ifname: str
    address: str  # the neighbour's link-local address on `ifname`
    up: bool  # two-way and usable for routing
    loss: float  # hello loss (EWMA), 0..1
    rtt_ms: float | None
    link_class: str  # the core's quality class (EXCELLENT .. BAD)
    cost: int  # the cost we advertise for the link
    transitions: int = 0  # up/down transitions seen so far (monotonic, from the core's events)
    up_for_s: float | None = None  # age of the current session (the core starts its loss EWMA at 0)
    timeouts: int | None = None  # of the downs, those by hellos that stopped with the carrier up (None: unknown)


@dataclass(frozen=True)
class RouteObs:
    dest: str  # "addr/len"
    ifname: str
    via: str  # link-local next hop
    metric: int
    origin: str  # node id the destination belongs to


@dataclass(frozen=True)
class NodeObs:
    node_id: str
    mesh_address: str
    reachable: bool
    sick: bool = False  # the node says in its LSA that it knows it is sick (views.NodeView.sick)


@dataclass(frozen=True)
class EdgeObs:
    a: str
    b: str
    cost: int  # a's cost towards b
    cost_back: int | None = None  # b's cost towards a (None: as `cost`)

    def costs(self) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
        """Both directions, (from, to, cost >= 1), as the routing core's SPF weighs them."""
        ab = max(1, self.cost)
        return (self.a, self.b, ab), (self.b, self.a, ab if self.cost_back is None else max(1, self.cost_back))


@dataclass(frozen=True)
class InterfaceObs:
    name: str
    up: bool


@dataclass(frozen=True)
class RoutingObs:
    self_id: str
    neighbours: tuple[NeighbourObs, ...] = ()
    routes: tuple[RouteObs, ...] = ()
    nodes: tuple[NodeObs, ...] = ()
    edges: tuple[EdgeObs, ...] = ()
    interfaces: tuple[InterfaceObs, ...] = ()

    def first_hop(self, route: RouteObs) -> str | None:
        """Node id of the neighbour a route goes through (None when no neighbour has that address)."""
        for n in self.neighbours:
            if n.ifname == route.ifname and n.address == route.via:
                return n.node_id
        return None

    def adjacency(self) -> dict[str, set[str]]:
        """Undirected graph: LSDB edges plus our up neighbours."""
        adj: dict[str, set[str]] = collections.defaultdict(set)
        for e in self.edges:
            adj[e.a].add(e.b)
            adj[e.b].add(e.a)
        for n in self.neighbours:
            if n.up:
                adj[self.self_id].add(n.node_id)
                adj[n.node_id].add(self.self_id)
        return dict(adj)

    def address_of(self, node_id: str) -> str | None:
        for n in self.nodes:
            if n.node_id == node_id:
                return n.mesh_address
        return None


@dataclass(frozen=True)
class NodeMetricsObs:
    """A node's own health figures (ours from telemetry, peers' from the mesh state when shared)."""

    node_id: str
    cpu_util: float | None = None  # busy fraction
    mem_util: float | None = None  # used fraction
    fwd_ratio: float | None = None  # forwarded / transit received (1.0 without transit)
    if_errors_per_s: float | None = None
    at_s: float = 0.0


@dataclass(frozen=True)
class ProbeObs:
    """Data-plane probes sent through neighbour `via` to `dest` over the evaluator's window. dest == via:
    link probes (answered by the neighbour itself); dest == the observing node: loop probes (forwarded
    once by the neighbour, straight back to us); otherwise path probes two hops out (probe.py)."""

    via: str
    dest: str
    sent: int
    lost: int
    rtt_ms: float | None  # median of the answered probes
    lost_flags: tuple[bool, ...] = ()  # the window's outcomes, oldest first (True = lost); () = unknown
    recent_rtt_ms: float | None = None  # median of the last RECENT_RTT_PROBES answered (probe.py); None = unknown

    @property
    def loss(self) -> float:
        return self.lost / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class VerdictObs:
    """The anomaly detector's current verdict on a node (only nodes it has flagged are listed)."""

    node_id: str
    score: float
    actionable: bool  # the detector's observe mode lets its verdicts act
    reasons: tuple[str, ...] = ()
    at_s: float = 0.0


@dataclass(frozen=True)
class ServiceObs:
    name: str
    running: bool
    healthy: bool  # running and making progress (no error, ticks advancing)
    detail: str = ""


@dataclass(frozen=True)
class UplinkObs:
    """An uplink over a possibly hostile network (transport service)."""

    name: str
    transport: str  # "plain" | "obfuscated"
    reachable: bool  # the far end answers over the current transport
    network_ok: bool  # the underlying network works (e.g. other destinations reachable)
    obfuscated_available: bool  # an obfuscated transport is configured for this uplink


@dataclass(frozen=True)
class Snapshot:
    """Everything one MAPE-K cycle reads, taken at `now`."""

    now: float
    routing: RoutingObs
    metrics: tuple[NodeMetricsObs, ...] = ()
    probes: tuple[ProbeObs, ...] = ()
    verdicts: tuple[VerdictObs, ...] = ()
    services: tuple[ServiceObs, ...] = ()
    uplinks: tuple[UplinkObs, ...] = ()
    boot_s: float | None = None  # monotonic time of boot (usually 0.0 on Linux); None = unknown
    update_in_progress: bool = False

    def metrics_of(self, node_id: str) -> NodeMetricsObs | None:
        for m in self.metrics:
            if m.node_id == node_id:
                return m
        return None


# --- reading the routing core's read model ---------------------------------------------------------

@dataclass
class ParseDrops:
    """Entries dropped while reading, by reason."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1


def _get(obj: Any, name: str) -> Any:
    """A field of a read-model view (x0node/proto/views.py) or of its JSON form (`dataclasses.asdict`)."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _str(value: Any, limit: int = MAX_ID_CHARS) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _fraction(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _rtt(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return min(float(value), RTT_MAX_MS)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _bounded(items: Any, limit: int, kind: str, drops: ParseDrops) -> list[Any]:
    if not isinstance(items, list | tuple):
        if items is not None:
            drops.add(f"{kind}_not_a_list")
        return []
    if len(items) > limit:
        drops.counts[f"{kind}_over_limit"] += len(items) - limit
    return list(items[:limit])


def _neighbour(d: Any, transitions: Mapping[tuple[str, str], int],
               timeouts: Mapping[tuple[str, str], int] | None = None) -> NeighbourObs | None:
    node_id, ifname = _str(_get(d, "node_id")), _str(_get(d, "ifname"), MAX_NAME_CHARS)
    loss = _fraction(_get(d, "loss") or 0.0)
    if node_id is None or ifname is None or loss is None:
        return None
    cost = _int(_get(d, "cost") or 0)
    return NeighbourObs(
        node_id=node_id.lower(),
        ifname=ifname,
        address=_str(_get(d, "addr")) or "",
        up=_get(d, "state") == "up",
        loss=loss,
        rtt_ms=_rtt(_get(d, "rtt_ms")),
        link_class=_str(_get(d, "quality"), MAX_NAME_CHARS) or "",
        cost=cost if cost is not None and cost >= 0 else 0,
        transitions=transitions.get((ifname, node_id.lower()), 0),
        up_for_s=_up_for(_get(d, "up_for_s")),
        timeouts=None if timeouts is None else timeouts.get((ifname, node_id.lower()), 0),
    )


def _up_for(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return min(float(value), 1e9)


def _route(d: Any) -> RouteObs | None:
    dest, ifname, metric = _str(_get(d, "dest")), _str(_get(d, "ifname"), MAX_NAME_CHARS), _int(_get(d, "metric"))
    if dest is None or ifname is None or metric is None:
        return None
    return RouteObs(dest, ifname, _str(_get(d, "via")) or "", metric, (_str(_get(d, "node_id")) or "").lower())


def _node(d: Any) -> NodeObs | None:
    node_id = _str(_get(d, "node_id"))
    if node_id is None:
        return None
    return NodeObs(node_id.lower(), _str(_get(d, "mesh_addr")) or "", _get(d, "reachable") is True,
                   _get(d, "sick") is True)


def _edge(d: Any) -> EdgeObs | None:
    a, b, cost = _str(_get(d, "a")), _str(_get(d, "b")), _int(_get(d, "cost") or 0)
    if a is None or b is None or a == b:
        return None
    back = _get(d, "cost_back")
    back = None if back is None else _int(back)
    return EdgeObs(a.lower(), b.lower(), cost if cost is not None and cost >= 0 else 0,
                   back if back is not None and back >= 0 else None)


def _interface(d: Any) -> InterfaceObs | None:
    name = _str(_get(d, "name"), MAX_NAME_CHARS)
    return None if name is None else InterfaceObs(name, _get(d, "up") is True)


def routing_from_views(
    self_id: str,
    neighbours: Any,
    routes: Any,
    topology: Any,
    stats: Any,
    transitions: Mapping[tuple[str, str], int] | None = None,
    drops: ParseDrops | None = None,
    timeouts: Mapping[tuple[str, str], int] | None = None,
) -> tuple[RoutingObs, ParseDrops]:
    """The routing core's read model (`router.neighbours()`, `routes()`, `topology()`, `stats()`: the
    frozen views of x0node/proto/views.py, or their JSON form) as a RoutingObs. `transitions` maps
    (ifname, node id) to up/down transitions counted from the core's events, `timeouts` to the downs among
    them by hello timeout (the core's NeighbourDown reasons `dead` and `lost_us`: the carrier stayed up)."""
    drops = drops if drops is not None else ParseDrops()
    trans = transitions or {}

    def parse(items: Iterable[Any], fn: Any, kind: str) -> tuple[Any, ...]:
        out = []
        for item in items:
            value = fn(item)
            if value is None:
                drops.add(f"bad_{kind}")
            else:
                out.append(value)
        return tuple(out)

    nbrs = parse(_bounded(neighbours, MAX_NEIGHBOURS, "neighbours", drops), lambda d: _neighbour(d, trans, timeouts),
                 "neighbour")
    rts = parse(_bounded(routes, MAX_ROUTES, "routes", drops), _route, "route")
    nodes = parse(_bounded(_get(topology, "nodes") if topology is not None else None, MAX_NODES, "nodes", drops),
                  _node, "node")
    edges = parse(_bounded(_get(topology, "links") if topology is not None else None, MAX_EDGES, "links", drops),
                  _edge, "edge")
    ifaces = parse(_bounded(_get(stats, "interfaces") if stats is not None else None, MAX_INTERFACES, "interfaces",
                            drops), _interface, "interface")
    return RoutingObs(self_id.lower(), nbrs, rts, nodes, edges, ifaces), drops


def metrics_from_features(node_id: str, features: Mapping[str, Any], at_s: float) -> NodeMetricsObs:
    """A node's metrics from the anomaly detector's feature vector (FEATURES names); bad values -> None."""

    def f(name: str) -> float | None:
        return _fraction(features.get(name))

    errs = features.get("if_errors_per_s")
    ok_errs = isinstance(errs, int | float) and not isinstance(errs, bool) and math.isfinite(errs) and errs >= 0
    return NodeMetricsObs(node_id.lower(), f("cpu_util"), f("mem_util"), f("fwd_ratio"),
                          float(errs) if ok_errs else None, at_s)
