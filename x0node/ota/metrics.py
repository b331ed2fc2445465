"""Prometheus collector of the `[ota]` service, read at scrape time from the service's own state.

Rules: nothing here changes the service; every family is derived from `OtaService.status()` and the
mesh state's rollout record, so a scrape shows what `x0node ota status` shows.
- `x0node_ota_rollout_halted{rollout}`: 1 while the mesh's rollout of release `rollout` is halted, 0
  while it runs or after it ended otherwise; no sample without a rollout record (fleet alert
  X0RolloutHalted, fleet/prometheus/rules/x0node.rules.yml).
- `x0node_ota_phase{phase}`: 1 for this node's current phase.
- counters: refusals by reason, chunks verified and bad, bytes served and fetched from the uplink.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from x0node.ota.service import PHASES

LABEL_MAX = 64


class OtaCollector:
    def __init__(self, service: Any) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        svc = self.service
        st = svc.status()
        ro = svc.records().get("rollout")
        halted = GaugeMetricFamily("x0node_ota_rollout_halted", "1 while the mesh's rollout is halted",
                                   labels=["rollout"])
        if isinstance(ro, dict) and ro.get("v") is not None:
            halted.add_metric([str(ro.get("v"))[:LABEL_MAX]], 1.0 if ro.get("state") == "halted" else 0.0)
        yield halted
        phase = GaugeMetricFamily("x0node_ota_phase", "This node's update phase (1 for the current one)",
                                  labels=["phase"])
        for p in sorted(set(PHASES) | {st["phase"]}):
            phase.add_metric([p], 1.0 if p == st["phase"] else 0.0)
        yield phase
        ref = CounterMetricFamily("x0node_ota_refusals", "Manifests and bundles refused, by reason", labels=["reason"])
        for reason, n in sorted(st["refusals"].items()):
            ref.add_metric([reason], n)
        yield ref
        c = st["counters"]
        chunks = CounterMetricFamily("x0node_ota_chunks", "Chunks received and checked, by result", labels=["result"])
        chunks.add_metric(["ok"], c.get("chunks_ok", 0))
        chunks.add_metric(["bad"], c.get("chunks_bad", 0))
        yield chunks
        up = CounterMetricFamily("x0node_ota_uplink_bytes", "Bundle bytes fetched from the uplink")
        up.add_metric([], c.get("uplink_bytes", 0))
        yield up
        served = CounterMetricFamily("x0node_ota_served_bytes", "Bundle bytes served to other nodes")
        served.add_metric([], st.get("server", {}).get("bytes_sent", 0))
        yield served
