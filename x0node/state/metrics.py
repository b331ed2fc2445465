"""Prometheus figures of the state service, collected at scrape time from the gossip core's counters.

Rules: counters only grow (they mirror the core's monotonic counters); a scrape never raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class StateCollector:
    def __init__(self, service: Any) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        g = self.service.gossip
        if g is None:
            return
        st = g.stats(self.service.now())
        c = st["counters"]
        b = CounterMetricFamily("x0node_state_gossip_bytes", "State gossip payload bytes", labels=["direction"])
        b.add_metric(["tx"], c["tx_bytes"])
        b.add_metric(["rx"], c["rx_bytes"])
        yield b
        d = CounterMetricFamily("x0node_state_gossip_datagrams", "State gossip datagrams sent", labels=["type"])
        for kind in ("digest", "vector", "delta"):
            d.add_metric([kind], c[f"tx_{kind}"])
        yield d
        a = CounterMetricFamily("x0node_state_deltas_applied", "Records applied from peers")
        a.add_metric([], c["records_applied"])
        yield a
        r = CounterMetricFamily("x0node_state_deltas_refused", "Records refused, by reason", labels=["reason"])
        for reason, n in sorted(st["refused"].items()):
            r.add_metric([reason], n)
        yield r
        x = CounterMetricFamily("x0node_state_datagrams_dropped", "Gossip datagrams dropped, by reason",
                                labels=["reason"])
        for reason, n in sorted(st["drops"].items()):
            x.add_metric([reason], n)
        yield x
        lag = GaugeMetricFamily("x0node_state_convergence_lag_seconds",
                                "How long this node's digest has differed from some neighbour's (0 = agrees)")
        lag.add_metric([], st["lag_s"])
        yield lag
        al = st["apply_lag_s"]
        s = CounterMetricFamily("x0node_state_apply_lag_seconds", "Wall time from a record's write to its "
                                "arrival here, summed over applied records (see _count)")
        s.add_metric([], al["sum"])
        yield s
        sc = CounterMetricFamily("x0node_state_apply_lag", "Records counted in x0node_state_apply_lag_seconds")
        sc.add_metric([], al["count"])
        yield sc
        for name, value, text in (("records", st["records"], "Mesh records held"),
                                  ("origins", st["origins"], "Origins with records held"),
                                  ("hop_records", st["hop_records"], "1-hop records held")):
            gm = GaugeMetricFamily(f"x0node_state_{name}", text)
            gm.add_metric([], value)
            yield gm
        svc = self.service.counters
        for name in ("store_corrupt", "persist_writes", "crl_applied", "settings_applied", "settings_refused"):
            cm = CounterMetricFamily(f"x0node_state_{name}", f"State service counter {name}")
            cm.add_metric([], svc[name])
            yield cm
