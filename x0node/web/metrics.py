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
- `mesh_latency_seconds` is a gauge of each neighbour's current smoothed RTT (the router already
  smooths it; a histogram of scrape-time samples would only measure the scrape interval).
- `node_health_status` is 1 for "ok", 0.5 for "degraded", 0 for "down".
- A provider failure during a scrape is logged and yields `x0node_web_scrape_errors_total`, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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

        lat = GaugeMetricFamily("mesh_latency_seconds", "Smoothed round-trip time to each neighbour",
                                labels=["peer_id"])
        for n in neighbours:
            if isinstance(n.get("rtt_ms"), int | float):
                lat.add_metric([str(n.get("node_id", ""))], _num(n["rtt_ms"]) / 1000.0)
        yield lat

        health = GaugeMetricFamily("node_health_status", "1 ok, 0.5 degraded, 0 down", labels=["node_id"])
        health.add_metric([node_id], HEALTH_VALUE.get(str(status.get("health")), 0.0))
        yield health

        uptime = GaugeMetricFamily("node_uptime_seconds", "Seconds since the daemon started", labels=["node_id"])
        uptime.add_metric([node_id], _num(status.get("uptime_s")))
        yield uptime

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
        counters = stats.get("counters")
        if isinstance(counters, dict):
            for name, value in sorted(counters.items()):
                metric = CounterMetricFamily(f"x0node_core_{name}", f"Routing core counter {name}")
                metric.add_metric([], _num(value))
                yield metric


def _by_reason(name: str, doc: str, counts: Any) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["reason"])
    if isinstance(counts, dict):
        for reason, count in sorted(counts.items()):
            family.add_metric([str(reason)], _num(count))
    return family
