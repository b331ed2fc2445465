"""Neighbours' feature vectors reach a running daemon's detector through the state layer.

A 3-node line of real daemons (`x0node run` in namespaces) with `[state]` and `[anomaly]` (1 s ticks,
per-tick recording). The middle node's detector must receive both neighbours' vectors — exactly what
each neighbour's own collector computed, carried as signed 1-hop records — and score itself with the
neighbour model; once its neighbours stop, their vectors expire and it falls back to the self-only model.
"""


import pytest

from tests.integration.anomaly_mesh import anomaly_bed, ticks, wait

SECTIONS = {"state": {}, "anomaly": {"interval_s": 1.0, "record": True, "seed": 3, "observe_days": 0.0,
                                     "cgroup": "parent"}}


@pytest.fixture
def bed(tmp_path):
    with anomaly_bed(tmp_path, SECTIONS) as b:
        yield b


def test_middle_node_detector_receives_both_neighbours_vectors(bed):
    bed.start_all(timeout_s=90)
    ids = {k: bed.node(k).node_id for k in (1, 2, 3)}

    def both():
        return [t for t in ticks(bed, 2) if set(t["peers"]) == {ids[1], ids[3]}]

    rows = wait(both, 60)
    assert rows, ticks(bed, 2)[-3:]
    last = rows[-1]
    assert last["layer"] in ("gbt", "gnn")  # the neighbour model, with real neighbour context
    assert last["features"] == 4 and last["lost"] == {}  # tick loss (none in a stalled tick), held losses timed by the router
    # the node's own worst loop lag since its previous tick is recorded (its stalls, for the dataset)
    assert all(0.0 <= t["stall"] <= 2.0 for t in rows)
    from x0lab.testbed import cgroups

    if cgroups.available() and cgroups.own_group("cpuacct") is not None:
        # CPU and memory are the node's own (its cgroups, seen inside the namespace), not the host's
        assert last["cpu_mem"] == "cgroup" and 0.0 <= last["raw"][0] <= 1.0
    # each delivered vector is one its origin's own collector computed (float32 on the wire)
    for k in (1, 3):
        own = [t["raw"] for t in ticks(bed, k)]
        got = last["peers"][ids[k]][:8]
        assert any(all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for a, b in zip(r, got, strict=True)) for r in own)
        assert last["peers"][ids[k]][8] < 5.0  # received within the last few ticks
    # the ends see only their one neighbour (1-hop scope: never forwarded)
    assert wait(lambda: [t for t in ticks(bed, 1) if set(t["peers"]) == {ids[2]}], 30)
    assert not any(ids[3] in t["peers"] for t in ticks(bed, 1))
    # neighbours gone: their vectors expire (TTL 4 ticks) and the self-only model takes over
    bed.stop(1)
    # the router reports when it declared the stopped neighbour gone; the recording keeps it
    lost = wait(lambda: [t for t in ticks(bed, 2) if ids[1] in t.get("lost", {})], 30)
    assert lost and 0.0 <= lost[-1]["lost"][ids[1]] <= 60.0
    bed.stop(3)
    n0 = len(ticks(bed, 2))
    alone = wait(lambda: [t for t in ticks(bed, 2)[n0:] if not t["peers"]], 30)
    assert alone and alone[-1]["layer"] in ("gbt_self", "self")
