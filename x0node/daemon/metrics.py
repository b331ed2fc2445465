"""The daemon's Prometheus registry: routing-core and adapter figures, collected at scrape time.

Rules: counters only grow (they mirror the core's and adapters' own monotonic counters); collection
reads JSON-ready views and never blocks or raises into the scrape (a failing view yields no sample).
Imported only when at least one service is enabled, so a plain router does not load prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def make_registry(node: Any) -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class NodeCollector:
        def collect(self) -> Iterator[Any]:
            try:
                stats = node.router.stats()
            except Exception:  # noqa: BLE001
                return
            drops = CounterMetricFamily("x0node_drops", "Datagrams refused by the routing core", labels=["reason"])
            for reason, n in sorted(stats.get("drops", {}).items()):
                drops.add_metric([reason], n)
            yield drops
            udp = CounterMetricFamily("x0node_udp_drops", "Datagrams dropped by the UDP adapter", labels=["reason"])
            for reason, n in sorted(node.transport.drops.items()):
                udp.add_metric([reason], n)
            yield udp
            for name, value in sorted(stats.get("counters", {}).items()):
                c = CounterMetricFamily(f"x0node_core_{name}", f"Routing core counter {name}")
                c.add_metric([], value)
                yield c
            for name, help_text in (
                ("neighbours_up", "Neighbours in state up"),
                ("lsdb_size", "Origins in the link-state database"),
                ("routes", "Routes the core wants installed"),
                ("retransmit_queue", "LSAs waiting for acknowledgement"),
            ):
                g = GaugeMetricFamily(f"x0node_{name}", help_text)
                g.add_metric([], stats.get(name, 0) or 0)
                yield g
            spf = CounterMetricFamily("x0node_spf_seconds", "Time spent in SPF")
            spf.add_metric([], (stats.get("spf_total_ms") or 0.0) / 1000.0)
            yield spf
            kr = GaugeMetricFamily("x0node_kernel_routes", "Routes of ours installed in the kernel")
            kr.add_metric([], len(node.netlink.installed))
            yield kr
            ke = CounterMetricFamily("x0node_kernel_route_errors", "Route changes the kernel refused")
            ke.add_metric([], node.netlink.errors)
            yield ke

    registry = CollectorRegistry()
    registry.register(NodeCollector())
    return registry
