"""Prometheus metrics for `/metrics`: HTTP request metrics plus node state read at scrape time.

Names follow the original system description where they apply (`http_requests_total`,
`http_request_duration_seconds`, `mesh_peers_count`, `mesh_latency_seconds`, `node_health_status`,
`node_uptime_seconds`); our own are prefixed `x0node_`.

Rules:
- This is the one collector of node state: every family about the routing core (drops by reason,
  routes, LSDB, SPF, the core's counters) is produced here from the provider, under the `x0node_` prefix.
- Node state is never cached here: `NodeStateCollector.collect()` asks the provider on each scrape, so
  a scrape always shows the router's current counters.
- Label values are bounded: `endpoint` is the matched route template (or "unmatched"), never the raw
  path; `peer_id` comes from the neighbour table, which the router bounds.
- `mesh_latency_seconds{peer_id}` is a histogram of every RTT sample the routing core measured to that
  neighbour (the core counts them in fixed buckets as they arrive, so none is lost between scrapes and
  the scrape interval does not shape it); a neighbour that goes away and comes back starts from zero,
  which Prometheus reads as a counter reset.
- `node_health_status{node_id}` and `node_uptime_seconds{node_id}` cover every node this router knows
  (its routing view of the mesh): for itself 1 "ok", 0.5 "degraded", 0 "down" and the daemon's uptime;
  for another node 1 while it is reachable and 0 while it is known but unreachable, and the seconds it
  has been continuously reachable from here (a lower bound of its uptime, 0 when unreachable). Its own
  series of a node is authoritative; the others let an operator see a node that cannot be scraped.
  `x0node_node_info{node_id,mesh_addr,role,self}` (always 1) names each known node's address and role;
  `x0node fleet targets` turns it into scrape targets.
- Credential checks (the certificate and signature of every signed HELLO and LSA) are counted as
  `x0node_cert_auth_success_total` and `x0node_cert_auth_failure_total{reason}`: the ratio an operator
  watches is the seed's `spire_auth_*` failure rate, for our certificates.
- Resource figures: the process's own (`process_*`, prometheus_client's process collector) and the
  host's CPU and memory from the status view (`x0node_host_cpu_percent`, `x0node_host_memory_*_bytes`).
- `x0node_neighbour_throughput_bytes_per_second` is each neighbour link's throughput (the kernel's link
  speed or the probed estimate, label `source`); a neighbour of unknown throughput has no sample.
- `x0node_mesh_*` are the node manager's topology statistics from the provider's `stats()["mesh"]`
  (the core's MeshStatsView): nodes, reachable nodes, links, mean degree, max hops, links by quality
  class (every class, zero included), joins and leaves.
- A provider failure during a scrape is logged and yields `x0node_web_scrape_errors_total`, never a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from x0node.web.provider import NodeStateProvider

log = logging.getLogger(__name__)

HTTP_DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)
HEALTH_VALUE = {"ok": 1.0, "degraded": 0.5, "down": 0.0}
# Unlabelled families that carry one number of the router's stats: (kind, name, help, stats key).
ROUTER_STAT_FAMILIES: tuple[tuple[Callable[[str, str], Metric], str, str, str], ...] = (
    (GaugeMetricFamily, "x0node_routes", "Routes currently installed by the router", "routes"),
    (GaugeMetricFamily, "x0node_lsdb_size", "Link-state records held", "lsdb_size"),
    (CounterMetricFamily, "x0node_spf_runs", "Shortest-path computations run", "spf_runs"),
    (CounterMetricFamily, "x0node_spf_seconds", "Total time spent in shortest-path computations", "spf_seconds_total"),
)

# Host figures of the status view: (name, help, status key); left out while the host reports none.
HOST_FAMILIES = (
    ("x0node_host_cpu_percent", "Host CPU busy, percent of all cores", "cpu_percent"),
    ("x0node_host_memory_used_bytes", "Host memory in use", "mem_used_bytes"),
    ("x0node_host_memory_total_bytes", "Host memory installed", "mem_total_bytes"),
)


class _Unregistered:
    """Stands in for a metric whose name another part of the process already registered."""

    def labels(self, *args: Any) -> _Unregistered:
        return self

    def inc(self, *args: Any) -> None:
        pass

    def observe(self, *args: Any) -> None:
        pass


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, taken: set[str] | None = None) -> None:
        taken = taken or set()
        if "http_requests_total" in taken or "http_request_duration_seconds" in taken:
            log.warning("HTTP metrics already registered elsewhere; the web UI will not count requests")
            self.requests: Any = _Unregistered()
            self.duration: Any = _Unregistered()
            return
        self.requests = Counter("http_requests_total", "HTTP requests served by the web UI and API",
                                ["method", "endpoint", "status"], registry=registry)
        self.duration = Histogram("http_request_duration_seconds", "HTTP request handling time",
                                  ["method", "endpoint"], buckets=HTTP_DURATION_BUCKETS_S, registry=registry)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


class NodeStateCollector(Collector):
    def __init__(self, provider: NodeStateProvider, taken: set[str] | None = None) -> None:
        self.provider = provider
        self.scrape_errors = 0
        self.taken = set(taken or ())
        self.reachable_since: dict[str, float] = {}  # other nodes' node id -> monotonic s (known nodes only)
        self.process = ProcessCollector(registry=None)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are produced dynamically at scrape time

    def collect(self) -> Iterator[Metric]:
        try:
            families = [f for f in self._families() if f.name not in self.taken]
        except Exception:  # a scrape must not fail because one view misbehaved
            log.exception("metrics scrape failed")
            self.scrape_errors += 1
            families = []
        errors = CounterMetricFamily("x0node_web_scrape_errors", "Scrapes where reading node state failed")
        errors.add_metric([], self.scrape_errors)
        families.append(errors)
        yield from families

    def _families(self) -> Iterator[Metric]:
        status = self.provider.status()
        neighbours = self.provider.neighbours()
        stats = self.provider.stats()
        node_id = str(status.get("node_id", ""))

        peers = GaugeMetricFamily("mesh_peers_count", "Neighbours currently up")
        peers.add_metric([], sum(1 for n in neighbours if n.get("state", "up") == "up"))
        yield peers

        yield self._latency()
        tput = GaugeMetricFamily("x0node_neighbour_throughput_bytes_per_second",
                                 "Throughput of our link to each neighbour (link speed or probed estimate)",
                                 labels=["peer_id", "ifname", "source"])
        for n in neighbours:
            if isinstance(n.get("throughput_bps"), int | float):
                tput.add_metric([str(n.get("node_id", "")), str(n.get("ifname", "")),
                                 str(n.get("throughput_source") or "unknown")], _num(n["throughput_bps"]) / 8.0)
        yield tput

        yield from self._nodes(status, node_id)
        yield from self._credentials(stats.get("credential_checks"))

        yield _by_reason("x0node_packets_dropped", "Received routing packets dropped, by reason", stats.get("drops"))
        if "route_refusals" in stats:
            yield _by_reason("x0node_route_refusals", "Route changes the kernel refused, by reason",
                             stats["route_refusals"])

        for family, name, doc, key in ROUTER_STAT_FAMILIES:
            metric = family(name, doc)
            metric.add_metric([], _num(stats.get(key)))
            yield metric
        if "retransmit_queue" in stats:
            queue = GaugeMetricFamily("x0node_retransmit_queue", "LSAs waiting for acknowledgement")
            queue.add_metric([], _num(stats["retransmit_queue"]))
            yield queue
        mesh = stats.get("mesh")
        if isinstance(mesh, dict):
            yield from _mesh_families(mesh)
        counters = stats.get("counters")
        if isinstance(counters, dict):
            for name, value in sorted(counters.items()):
                metric = CounterMetricFamily(f"x0node_core_{name}", f"Routing core counter {name}")
                metric.add_metric([], _num(value))
                yield metric

        for name, doc, key in HOST_FAMILIES:
            if isinstance(status.get(key), int | float):
                host = GaugeMetricFamily(name, doc)
                host.add_metric([], _num(status[key]))
                yield host
        yield from self.process.collect()

    def _latency(self) -> Metric:
        lat = HistogramMetricFamily("mesh_latency_seconds", "Round-trip time samples to each neighbour",
                                    labels=["peer_id"])
        shapes = getattr(self.provider, "rtt_histograms", None)
        got = shapes() if shapes is not None else {}
        bounds = [float(b) / 1000.0 for b in got.get("bounds_ms", [])]
        for peer, h in sorted((got.get("peers") or {}).items()):
            counts = [int(c) for c in h.get("counts", [])]
            if len(counts) != len(bounds) + 1:
                continue
            cumulative, acc = [], 0
            for bound, c in zip([*(f"{b:g}" for b in bounds), "+Inf"], counts, strict=True):
                acc += c
                cumulative.append((bound, acc))
            lat.add_metric([str(peer)], cumulative, _num(h.get("sum_ms")) / 1000.0)
        return lat

    def _nodes(self, status: dict[str, Any], node_id: str) -> Iterator[Metric]:
        topo = self.provider.topology()
        health = GaugeMetricFamily("node_health_status", "1 ok, 0.5 degraded, 0 down or unreachable, per known node",
                                   labels=["node_id"])
        uptime = GaugeMetricFamily("node_uptime_seconds", "This daemon's uptime; for other nodes the seconds "
                                   "they have been continuously reachable from here", labels=["node_id"])
        info = GaugeMetricFamily("x0node_node_info", "Nodes this router knows: mesh address and role",
                                 labels=["node_id", "mesh_addr", "role", "self"])
        health.add_metric([node_id], HEALTH_VALUE.get(str(status.get("health")), 0.0))
        uptime.add_metric([node_id], _num(status.get("uptime_s")))
        now = time.monotonic()
        seen: set[str] = set()
        for n in topo.get("nodes", []):
            nid = str(n.get("node_id", ""))
            me = nid == node_id or bool(n.get("self"))
            info.add_metric([nid, str(n.get("mesh_addr") or ""), str(n.get("role") or ""), "1" if me else "0"], 1.0)
            if me or not nid:
                continue
            seen.add(nid)
            if n.get("reachable"):
                since = self.reachable_since.setdefault(nid, now)
                health.add_metric([nid], 1.0)
                uptime.add_metric([nid], round(now - since, 3))
            else:
                self.reachable_since.pop(nid, None)
                health.add_metric([nid], 0.0)
                uptime.add_metric([nid], 0.0)
        for gone in set(self.reachable_since) - seen:
            del self.reachable_since[gone]
        yield health
        yield uptime
        yield info

    @staticmethod
    def _credentials(checks: Any) -> Iterator[Metric]:
        checks = checks if isinstance(checks, dict) else {}
        ok = CounterMetricFamily("x0node_cert_auth_success", "Credential checks passed (certificate and signature)")
        ok.add_metric([], _num(checks.get("ok")))
        yield ok
        bad = CounterMetricFamily("x0node_cert_auth_failure", "Credential checks refused, by reason",
                                  labels=["reason"])
        for reason, count in sorted(checks.items()):
            if reason != "ok":
                bad.add_metric([str(reason)], _num(count))
        yield bad


# The node manager's statistics: (kind, name, help, key in stats()["mesh"]).
MESH_FAMILIES: tuple[tuple[Callable[[str, str], Metric], str, str, str], ...] = (
    (GaugeMetricFamily, "x0node_mesh_nodes", "Nodes of the mesh known to this node (itself excluded)", "nodes"),
    (GaugeMetricFamily, "x0node_mesh_nodes_reachable", "Nodes this node has a path to", "reachable"),
    (GaugeMetricFamily, "x0node_mesh_links", "Two-way links in the mesh", "links"),
    (GaugeMetricFamily, "x0node_mesh_mean_degree", "Mean number of links per node", "mean_degree"),
    (GaugeMetricFamily, "x0node_mesh_max_hops", "Hops to the farthest reachable node", "max_hops"),
    (CounterMetricFamily, "x0node_mesh_joins", "Nodes that joined the mesh since the daemon started", "joins"),
    (CounterMetricFamily, "x0node_mesh_leaves", "Nodes that left the mesh since the daemon started", "leaves"),
)


def _mesh_families(mesh: dict[str, Any]) -> Iterator[Metric]:
    for family, name, doc, key in MESH_FAMILIES:
        metric = family(name, doc)
        metric.add_metric([], _num(mesh.get(key)))
        yield metric
    hist = GaugeMetricFamily("x0node_mesh_links_by_quality", "Two-way links in the mesh by quality class",
                             labels=["quality"])
    counts = mesh.get("quality_histogram")
    if isinstance(counts, dict):
        for quality, count in sorted(counts.items()):
            hist.add_metric([str(quality)], _num(count))
    yield hist


def _by_reason(name: str, doc: str, counts: Any) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["reason"])
    if isinstance(counts, dict):
        for reason, count in sorted(counts.items()):
            family.add_metric([str(reason)], _num(count))
    return family
