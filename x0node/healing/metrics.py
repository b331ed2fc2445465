"""Prometheus metrics of the healing loop, with the names the fleet dashboards use.

- `mape_k_cycle_duration_seconds{phase}` (histogram): each phase's time and `phase="cycle"` for the
  whole step.
- `self_healing_events_total{root_cause,action,success}` (counter): one per verified or failed action.
- `self_healing_mttr_seconds{recovery_type}` (histogram): detection to the first verified action, by
  the action that recovered it (recovery_type="none" when the symptoms cleared without one).
- `x0_healing_open_incidents`, `x0_healing_mitigations_in_force`, `x0_healing_mode{mode}`,
  `x0_healing_probes_total{outcome}`.
Registration tolerates a registry that already holds them (a restarted service in one process).
"""

from __future__ import annotations

from typing import Any

from x0node.healing.incident import IncidentClosed, Verified

CYCLE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MTTR_BUCKETS_S = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class HealingMetrics:
    def __init__(self, registry: Any) -> None:
        self.ok = False
        if registry is None:
            return
        from prometheus_client import Counter, Gauge, Histogram

        try:
            self.cycle = Histogram("mape_k_cycle_duration_seconds", "MAPE-K cycle time by phase", ["phase"],
                                   buckets=CYCLE_BUCKETS_S, registry=registry)
            self.events = Counter("self_healing_events", "Healing actions verified or failed",
                                  ["root_cause", "action", "success"], registry=registry)
            self.mttr = Histogram("self_healing_mttr_seconds", "Detection to recovery", ["recovery_type"],
                                  buckets=MTTR_BUCKETS_S, registry=registry)
            self.open = Gauge("x0_healing_open_incidents", "Open healing incidents", registry=registry)
            self.in_force = Gauge("x0_healing_mitigations_in_force", "Verified mitigations held now",
                                  registry=registry)
            self.mode = Gauge("x0_healing_mode", "1 for the current healing mode", ["mode"], registry=registry)
            self.probes = Counter("x0_healing_probes", "Data-plane probes by outcome", ["outcome"], registry=registry)
        except ValueError:  # already registered
            return
        self.ok = True
        self._probe_seen: dict[str, int] = {}

    def cycle_done(self, phases: tuple[tuple[str, float], ...], total_s: float, open_incidents: int, mode: str,
                   mitigations: int = 0) -> None:
        if not self.ok:
            return
        for name, dur in phases:
            self.cycle.labels(name).observe(dur)
        self.cycle.labels("cycle").observe(total_s)
        self.open.set(open_incidents)
        self.in_force.set(mitigations)
        for m in ("observe", "active"):
            self.mode.labels(m).set(1.0 if m == mode else 0.0)

    def event(self, ev: Any) -> None:
        if not self.ok:
            return
        if isinstance(ev, Verified):
            self.events.labels(ev.fault or "unknown", ev.action, "true" if ev.success else "false").inc()
        elif isinstance(ev, IncidentClosed) and ev.outcome in ("recovered", "cleared"):
            self.mttr.labels(ev.action or "none").observe(ev.mttr_s)

    def probe_counters(self, counters: dict[str, int]) -> None:
        if not self.ok:
            return
        for name, value in counters.items():
            delta = value - self._probe_seen.get(name, 0)
            if delta > 0:
                self.probes.labels(name).inc(delta)
            self._probe_seen[name] = value
