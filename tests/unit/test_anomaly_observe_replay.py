"""Observe mode judged by the fault lab's schedule (lab/x0lab/anomaly/observe_replay.py) on a small
hand-made table: alarms in a fault are real, on negative rows false, on ignored rows unjudged; a fault
with no alarm raised inside it is missed."""

import numpy as np

from x0lab.anomaly.observe_replay import replay
from x0lab.anomaly.realdata import Event, Table


def _table():
    # one run, two nodes, ticks every 3 s; a fault on n1 in [9, 15]; n2's ticks 6-9 are collateral (-1)
    t = np.arange(0.0, 30.0, 3.0)
    n = len(t)
    label1 = np.where((t >= 9) & (t <= 15), 1, 0)
    label2 = np.where((t >= 6) & (t <= 9), -1, 0)
    rows = {"run": ["r"] * 2 * n, "topo": ["ring"] * 2 * n, "node": ["n1"] * n + ["n2"] * n,
            "t": np.concatenate([t, t]), "tick": np.concatenate([np.arange(n)] * 2),
            "label": np.concatenate([label1, label2])}
    events = [Event("r", "hang", {}, 9.0, 15.0, ("n1",), True), Event("r", "kill", {}, 21.0, 24.0, ("n2",), True)]
    return Table(np.array(rows["run"]), np.array(rows["topo"]), np.array(rows["node"]), rows["t"], rows["tick"],
                 np.zeros((2 * n, 8)), rows["label"], np.full(2 * n, -1), [{}] * (2 * n), [{}] * (2 * n),
                 np.array(["gbt"] * 2 * n), np.zeros(2 * n, dtype=bool), np.zeros(2 * n, dtype=bool), events)


def test_schedule_judges_alarms_and_counts_missed_faults():
    table = _table()
    alarm = np.zeros(len(table), dtype=bool)
    alarm[[3, 4]] = True  # n1: raised at t=9, in its fault
    alarm[[7]] = True  # n1: raised at t=21, no fault on n1: false alarm
    alarm[[10 + 2, 10 + 3]] = True  # n2: raised at t=6, collateral: unjudged; n2's kill at 21-24 missed
    out = replay(table, alarm)
    assert out["alarms_judged"] == 2 and out["alarms_real"] == 1 and out["alarms_unjudged"] == 1
    assert out["precision"] == 0.5 and out["faults"] == 2 and out["faults_detected"] == 1 and out["recall"] == 0.5
    assert out["phases"] == {"validate": 2}  # two judged alarms are far from the 40 needed
