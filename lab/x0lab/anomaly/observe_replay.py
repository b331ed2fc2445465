"""Observe mode judged by the fault lab's schedule: recorded alarms replayed through the daemon's own
ObserveMode (x0node/anomaly/observe.py), each injected fault given to it as the lab's ground truth.

Rules and invariants:
- One fresh ObserveMode per (run, node) series, fed every recorded tick in time order with the alarm
  state given (`record_evaluation`); then every fault of the run that acts on that node
  (realdata.Event.nodes: a node fault's target, both ends of a link fault, a stopped node's
  neighbours) is given as `fault(start, end, "schedule")`: the alarms raised in its window are real
  faults, and none raised there is a missed fault. An alarm raised on a negative row (no fault acts on
  the node, outside the grace and collateral rows) is judged a false alarm by the schedule; one raised
  on an ignored row (recovery grace, a 1-hop neighbour of a fault) is left unjudged, as it would be on
  a device without a verdict. Nothing here asks the rules or a detector whether a fault happened.
- The gates are the device's (ObserveConfig defaults) except the observation time and evaluation
  count, which a 10-minute run cannot reach: they are 0, so `phase` says where the judged alarms alone
  would take the node.
- Pure: the table (realdata.load) and a per-row alarm array in; figures out.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from typing import Any

import numpy as np

from x0lab.anomaly.realdata import Table
from x0node.anomaly.observe import ObserveConfig, ObserveMode

REPLAY_CONFIG = dataclasses.replace(ObserveConfig(), min_observe_s=0.0, min_predictions=0)


def replay(table: Table, alarm: np.ndarray, config: ObserveConfig = REPLAY_CONFIG) -> dict[str, Any]:
    """Pooled observe-mode figures over every (run, node) series of `table` with per-row `alarm`."""
    alarm = np.asarray(alarm, dtype=bool)
    judged = real = faults = detected = unjudged = 0
    phases: Counter[str] = Counter()
    by_run: dict[str, list[Any]] = {}
    for ev in table.events:
        by_run.setdefault(ev.run, []).append(ev)
    keys = sorted(set(zip(table.run.tolist(), table.node.tolist(), strict=True)))
    for run, node in keys:
        idx = np.flatnonzero((table.run == run) & (table.node == node))
        idx = idx[np.argsort(table.t[idx], kind="stable")]
        m = ObserveMode(config, float(table.t[idx[0]]))
        raised_label: dict[int, int] = {}
        for i in idx:
            before = m._current  # noqa: SLF001 - the id of the alarm up before this tick
            aid = m.record_evaluation(bool(alarm[i]), float(table.t[i]))
            if aid is not None and aid != before:
                raised_label[aid] = int(table.label[i])
        end = float(table.t[idx[-1]])
        for ev in by_run.get(run, []):
            if node in ev.nodes:
                got = m.fault(ev.start, ev.end, "schedule", end)
                if got is not None:
                    faults += 1
                    detected += int(got)
        for aid, label in raised_label.items():
            a = m.alarm(aid)
            if a is not None and a.fault is None and label == 0:
                m.judge(aid, False, "schedule", end)
        for aid in raised_label:
            a = m.alarm(aid)
            if a is None or a.fault is None:
                unjudged += 1
            else:
                judged += 1
                real += int(a.fault)
        phases[m.phase.value] += 1
    return {
        "series": len(keys), "alarms_judged": judged, "alarms_real": real, "alarms_unjudged": unjudged,
        "precision": round(real / judged, 4) if judged else None,
        "faults": faults, "faults_detected": detected, "recall": round(detected / faults, 4) if faults else None,
        "phases": dict(sorted(phases.items())),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import pathlib

    from x0lab.anomaly import realdata

    p = argparse.ArgumentParser(description="observe mode judged by the fault lab's schedule, on the "
                                            "alarms the recording daemons raised")
    p.add_argument("--data", default="models/realfaults")
    a = p.parse_args(argv)
    table = realdata.load(pathlib.Path(a.data))
    out = replay(table, table.live_alarm)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
