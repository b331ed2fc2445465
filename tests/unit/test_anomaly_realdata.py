"""The real-fault table's replay of version-1 recordings (x0lab.anomaly.realdata.load): link changes
recomputed from the recorded UP sets by the collector's own link state machine."""

import gzip
import json

import numpy as np

from x0lab.anomaly.realdata import load
from x0node.anomaly.features import FEATURES

LC = FEATURES.index("link_changes")


def _write(run, node, ticks):
    with gzip.open(run / f"n{node}.jsonl.gz", "wt") as fh:
        for d in ticks:
            fh.write(json.dumps(d) + "\n")


def _tick(t, node, up, lc, peers=None, version=None):
    d = {"mono": t, "node": node, "raw": [0.2, 0.4, 0.2, 10.0, 0.0, lc, 0.0, 1.0], "up": up, "peers": peers or {}}
    if version:
        d["features"] = version
    return d


def _truth(run):
    doc = {"fault_free": {"seed": 1}, "faults": [],
           "testbed": {"topology": "random:3:1:3", "links": [[1, 2], [1, 3]],
                       "nodes": {"1": {"node_id": "A"}, "2": {"node_id": "B"}, "3": {"node_id": "C"}}}}
    (run / "truth.json").write_text(json.dumps(doc))


def test_version_1_recordings_are_replayed_and_bounces_stop_counting(tmp_path):
    run = tmp_path / "quiet1"
    run.mkdir()
    _truth(run)
    # A: B bounces for one tick (the old count said 2), then C is lost and stays lost
    a_ups = [["B", "C"], ["C"], ["B", "C"], ["B"], ["B"], ["B"]]
    _write(run, 1, [_tick(3.0 * i, "A", up, 2 * (i >= 2), {"B": [0.2, 0.4, 0.2, 10, 0, 7, 0, 1, 0.5]})
                    for i, up in enumerate(a_ups)])
    _write(run, 2, [_tick(3.0 * i + 0.5, "B", ["A"], 7) for i in range(6)])
    _write(run, 3, [_tick(3.0 * i + 1.0, "C", ["A"], 3, version=2) for i in range(6)])
    tb = load(tmp_path)
    a = tb.node == "A"
    assert tb.x[a, LC].tolist() == [0, 0, 0, 0, 1, 1]  # the bounce never counts; C's loss once held
    assert (tb.x[tb.node == "B", LC] == 0).all()  # B never lost A: its recorded 7 was the old count
    assert all(d["B"][LC] == 0 for d, is_a in zip(tb.deployed, a, strict=True) if is_a)  # ... and so is A's copy
    assert np.all(tb.x[tb.node == "C", LC] == 3)  # a version-2 recording is kept as recorded


def test_transit_flows_send_each_node_to_its_farthest_node():
    from x0lab.anomaly.realdata import transit_flows
    from x0lab.testbed.topology import parse

    assert transit_flows(parse("line:4")) == [(1, 4), (2, 4), (3, 1), (4, 1)]
    assert transit_flows(parse("line:2")) == []  # neighbours only: nothing would transit


def test_version_3_ticks_with_an_own_stall_measure_no_loss(tmp_path):
    from x0node.anomaly.collector import OWN_STALL_S

    loss = FEATURES.index("loss_max")
    run = tmp_path / "quiet2"
    run.mkdir()
    _truth(run)

    def tick(t, node, stall, version=3, value=0.3):
        d = _tick(t, node, ["A"] if node != "A" else ["B", "C"], 0, version=version)
        d["raw"][loss] = value
        if stall is not None:
            d["stall"] = stall
        return d

    _write(run, 1, [tick(0.0, "A", OWN_STALL_S), tick(3.0, "A", OWN_STALL_S - 0.01), tick(6.0, "A", None)])
    _write(run, 2, [tick(0.5, "B", 2.0, version=4, value=0.0), tick(3.5, "B", 2.0, version=2)])
    _write(run, 3, [tick(1.0, "C", "2.0"), tick(4.0, "C", float("nan"))])
    tb = load(tmp_path)
    assert tb.x[tb.node == "A", loss].tolist() == [0.0, 0.3, 0.3]  # only the stalled tick loses its loss
    assert tb.x[tb.node == "B", loss].tolist() == [0.0, 0.3]  # version 4 applied it itself; version 2 has no stall
    assert tb.x[tb.node == "C", loss].tolist() == [0.3, 0.3]  # a stall that is not a number changes nothing


def test_ticks_after_the_recording_finished_are_not_part_of_it(tmp_path):
    run = tmp_path / "quiet3"
    run.mkdir()
    _truth(run)
    doc = json.loads((run / "truth.json").read_text())
    doc["clock"] = {"t0_mono": 0.0, "finished_mono": 7.0}
    (run / "truth.json").write_text(json.dumps(doc))
    _write(run, 1, [_tick(3.0 * i, "A", ["B", "C"], 0, version=3) for i in range(4)])  # 0, 3, 6 | 9: teardown
    _write(run, 2, [_tick(3.0 * i + 0.5, "B", ["A"], 0, version=3) for i in range(4)])
    _write(run, 3, [_tick(3.0 * i + 1.0, "C", ["A"], 0, version=3) for i in range(2)])
    tb = load(tmp_path)
    assert tb.t[tb.node == "A"].tolist() == [0.0, 3.0, 6.0]
    assert tb.t[tb.node == "B"].tolist() == [0.5, 3.5, 6.5] and len(tb.t[tb.node == "C"]) == 2
