"""Rollout waves, halting, and Gluon-style timing."""

from __future__ import annotations

import random

from x0node.ota import rollout as ro


def line(n):
    nodes = [f"n{i}" for i in range(n)]
    return nodes, {(nodes[i], nodes[i + 1]) for i in range(n - 1)}


def test_articulation_points_of_a_line_and_a_ring():
    nodes, edges = line(5)
    assert ro.articulation_points(nodes, edges) == {"n1", "n2", "n3"}
    ring = edges | {("n4", "n0")}
    assert ro.articulation_points(nodes, ring) == set()


def test_leaves_first_cut_nodes_late_origin_last():
    nodes, edges = line(6)
    waves = ro.plan_waves(nodes, edges, "n0", (0.2, 0.5, 1.0))
    flat = [n for w in waves for n in w]
    assert sorted(flat) == sorted(nodes)
    assert flat[0] == "n5"  # the far leaf
    assert flat[-1] == "n0"  # the origin
    assert flat.index("n5") < flat.index("n4") < flat.index("n1")


def test_star_hub_is_last():
    nodes = ["hub", "a", "b", "c", "d"]
    edges = {("hub", x) for x in "abcd"}
    waves = ro.plan_waves(nodes, edges, "a")
    assert waves[-1][-1] == "a"
    assert [n for w in waves for n in w].index("hub") == 3


def spec(waves, **kw):
    return ro.Spec("r1", "m" * 64, "2.0", tuple(tuple(w) for w in waves), **kw)


def test_waves_open_in_turn_and_finish():
    c = ro.Coordinator(spec([["a"], ["b", "c"]]), 0.0)
    assert c.step({"a": "downloading"}, 1.0) == []
    assert c.step({"a": "good"}, 2.0) == [ro.Action("open_wave", 1)]
    assert c.step({"a": "good", "b": "good", "c": "good"}, 3.0) == [ro.Action("done", 1)]
    assert c.state == "done"


def test_halt_when_failure_rate_passes_threshold():
    c = ro.Coordinator(spec([["a", "b", "c", "d"], ["e"]], threshold=0.25), 0.0)
    assert c.step({"a": "rolled_back"}, 1.0) == []  # 1/4 is not more than 25 %
    acts = c.step({"a": "rolled_back", "b": "failed"}, 2.0)
    assert acts[0].kind == "halt" and c.state == "halted"
    assert c.step({}, 3.0) == []


def test_wave_deadline_counts_silent_nodes_as_failed():
    c = ro.Coordinator(spec([["a"], ["b"]], wave_timeout_s=100.0), 0.0)
    assert c.step({"a": "installing"}, 50.0) == []
    assert c.step({"a": "installing"}, 100.0)[0].kind == "halt"


def test_stop():
    c = ro.Coordinator(spec([["a"], ["b"]]), 0.0)
    c.stop()
    assert c.step({"a": "good"}, 1.0) == [] and c.state == "stopped"


def test_gluon_probability_shape():
    assert ro.gluon_probability(0) == 0 and ro.gluon_probability(1) == 1
    assert abs(ro.gluon_probability(0.5) - 0.5) < 1e-12
    xs = [i / 10 for i in range(11)]
    ps = [ro.gluon_probability(x) for x in xs]
    assert ps == sorted(ps)


def test_install_now():
    s = spec([["a"], ["b"]], spread_s=100.0)
    rng = random.Random(1)
    assert not ro.install_now(s, "b", 0, 0.0, 10.0, rng)
    assert ro.install_now(s, "a", 1, 0.0, 0.0, rng)  # an earlier wave: at once
    assert ro.install_now(s, "a", 0, 0.0, 100.0, rng)
    starts = sum(ro.install_now(s, "a", 0, 0.0, 20.0, random.Random(i)) for i in range(1000))
    assert 60 < starts < 150  # p(0.2) = 0.104
