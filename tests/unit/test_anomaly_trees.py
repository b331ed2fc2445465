"""Tree models on the device (trees.py), their export from scikit-learn, and the real-fault protocol's
metrics (x0lab.anomaly.realeval) on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest

from x0lab.anomaly import realeval, realtrain
from x0lab.anomaly.realdata import Event, Table
from x0node.anomaly.chain import GBT, GBT_SELF, DetectorChain
from x0node.anomaly.features import (
    FEATURES,
    K_NEIGHBOURS,
    N_AGGREGATES,
    N_FEATURES,
    NEUTRAL_RAW,
    links_down_input,
    neighbour_aggregates,
)
from x0node.anomaly.trees import TreeError, TreeModel

STUMP = {"feature": [3, 0, 0], "threshold": [0.5, 0, 0], "left": [1, 0, 0], "right": [2, 0, 0],
         "leaf": [False, True, True], "value": [0.0, -1.0, 2.0]}


def test_a_stump_scores_by_its_split():
    m = TreeModel.from_dict({"inputs": N_FEATURES, "baseline": 0.5, "trees": [STUMP, STUMP]})
    x = np.zeros((2, N_FEATURES), np.float32)
    x[1, 3] = 0.9
    assert m.logits(x).tolist() == pytest.approx([0.5 - 2.0, 0.5 + 4.0])


@pytest.mark.parametrize("bad", [
    {"left": [0, 0, 0]},  # a cycle: child not after its parent
    {"feature": [8, 0, 0]},  # out of range
    {"threshold": [float("nan"), 0, 0]},
    {"value": [0.0, float("inf"), 1.0]},
    {"leaf": [False, True]},  # ragged
])
def test_malformed_trees_are_refused(bad):
    with pytest.raises(TreeError):
        TreeModel.from_dict({"inputs": N_FEATURES, "baseline": 0.0, "trees": [STUMP | bad]})
    with pytest.raises(TreeError):
        TreeModel.from_dict({"inputs": 7, "baseline": 0.0, "trees": [STUMP]})
    with pytest.raises(TreeError):
        TreeModel.from_dict({"inputs": N_FEATURES, "baseline": 0.0, "trees": []})


def test_aggregates_ignore_masked_rows():
    xn = np.zeros((2, K_NEIGHBOURS, N_FEATURES), np.float32)
    m = np.zeros((2, K_NEIGHBOURS), np.float32)
    xn[0, 0], xn[0, 1], xn[0, 2] = 0.2, 0.6, 0.9  # the third is masked out
    m[0, :2] = 1
    a = neighbour_aggregates(xn, m)
    assert a.shape == (2, N_AGGREGATES)
    assert a[0, 0] == pytest.approx(0.4) and a[0, N_FEATURES] == pytest.approx(0.6)
    assert a[0, 2 * N_FEATURES] == pytest.approx(0.2) and a[0, -1] == pytest.approx(2 / K_NEIGHBOURS)
    assert not a[1].any()


def _sk_fit(width, seed=0):
    from sklearn.ensemble import HistGradientBoostingClassifier

    r = np.random.default_rng(seed)
    x = r.random((400, width)).astype(np.float32)
    y = (x[:, 0] + x[:, 4] > 1.1).astype(int)
    return HistGradientBoostingClassifier(max_iter=20, max_depth=4, random_state=0).fit(x, y), r


def test_export_reproduces_scikit_learn_and_the_chain_picks_the_model_by_neighbour_data():
    clf_n, r = _sk_fit(N_FEATURES + N_AGGREGATES)
    clf_s, _ = _sk_fit(N_FEATURES, 1)
    xs = r.random((50, N_FEATURES)).astype(np.float32)
    xn = r.random((50, K_NEIGHBOURS, N_FEATURES)).astype(np.float32)
    m = (r.random((50, K_NEIGHBOURS)) > 0.5).astype(np.float32)
    m[:10] = 0.0  # ten rows without neighbour data
    dn = realtrain.export_hgb(clf_n, N_FEATURES + N_AGGREGATES)
    ds = realtrain.export_hgb(clf_s, N_FEATURES)
    assert realtrain.check_export(clf_n, dn, xs, xn, m) < 1e-4
    assert realtrain.check_export(clf_s, ds, xs, xn, m) < 1e-4
    chain = realtrain.chain_of({"nbr": dn, "self": ds, "thresholds": {"nbr": 0.0, "self": 0.0}})
    ev = chain.evaluate(xs, xn, m)
    assert ev.row_layers == tuple([GBT_SELF] * 10 + [GBT] * 40)
    assert np.allclose(ev.scores[:10], clf_s.decision_function(xs[:10]), atol=1e-4)
    assert np.allclose(ev.scores[10:], clf_n.decision_function(
        np.concatenate([xs[10:], neighbour_aggregates(xn[10:], m[10:])], axis=1)), atol=1e-4)


def test_models_one_wider_take_links_down_after_the_features():

    clf_n, r = _sk_fit(N_FEATURES + 1 + N_AGGREGATES, 2)
    clf_s, _ = _sk_fit(N_FEATURES + 1, 3)
    xs = r.random((40, N_FEATURES)).astype(np.float32)
    xn = r.random((40, K_NEIGHBOURS, N_FEATURES)).astype(np.float32)
    m = np.ones((40, K_NEIGHBOURS), np.float32)
    m[:8] = 0.0
    down = links_down_input(r.integers(0, 12, 40))
    assert down.max() == 1.0 and down.min() >= 0.0
    dn = realtrain.export_hgb(clf_n, N_FEATURES + 1 + N_AGGREGATES)
    ds = realtrain.export_hgb(clf_s, N_FEATURES + 1)
    assert realtrain.check_export(clf_n, dn, xs, xn, m, down) < 1e-4
    assert realtrain.check_export(clf_s, ds, xs, xn, m, down) < 1e-4
    tn, ts = TreeModel.from_dict(dn), TreeModel.from_dict(ds)
    assert tn.uses_neighbours and tn.uses_links_down and ts.uses_links_down and not ts.uses_neighbours
    chain = realtrain.chain_of({"nbr": dn, "self": ds, "thresholds": {"nbr": 0.0, "self": 0.0}})
    ev = chain.evaluate(xs, xn, m, down)
    assert np.allclose(ev.scores[:8], clf_s.decision_function(np.concatenate([xs[:8], down[:8]], axis=1)), atol=1e-4)
    assert np.allclose(ev.scores[8:], clf_n.decision_function(
        np.concatenate([xs[8:], down[8:], neighbour_aggregates(xn[8:], m[8:])], axis=1)), atol=1e-4)
    zero = chain.evaluate(xs, xn, m)  # no links_down given: 0 for every row
    assert np.allclose(zero.scores[:8], clf_s.decision_function(np.concatenate([xs[:8], np.zeros((8, 1))], axis=1)),
                       atol=1e-4)
    with pytest.raises(TreeError):
        TreeModel.from_dict({**dn, "inputs": N_FEATURES + 2})
    assert np.isnan(links_down_input([float("nan")])).sum() == 0


def test_a_failing_tree_layer_degrades():
    class Broken:
        uses_neighbours = True

        def logits(self, *a):
            raise RuntimeError("boom")

    own = TreeModel.from_dict({"inputs": N_FEATURES, "baseline": 0.0, "trees": [STUMP]})
    chain = DetectorChain(None, 0.0, "none", trees=(Broken(), own))
    xs = np.zeros((1, N_FEATURES), np.float32)
    ev = chain.evaluate(xs, np.ones((1, K_NEIGHBOURS, N_FEATURES), np.float32), np.ones((1, K_NEIGHBOURS), np.float32))
    assert ev.layer == GBT_SELF and ev.fallbacks == (GBT,) and not chain.layers[GBT].live


def _table(alarm_rows=()):
    # one run, two nodes, 10 ticks each, 3 s apart; node a under a fault at ticks 4..6
    n = 20
    node = np.array(["a"] * 10 + ["b"] * 10)
    t = np.r_[np.arange(10) * 3.0, np.arange(10) * 3.0]
    label = np.zeros(n, dtype=np.int64)
    event = np.full(n, -1)
    label[4:7], event[4:7] = 1, 0
    label[7] = -1  # grace
    ev = Event("r", "hang", {}, 11.0, 19.0, ("a",), True)
    tb = Table(np.array(["r"] * n), np.array(["ring:2"] * n), node, t, np.r_[np.arange(10), np.arange(10)],
               np.zeros((n, N_FEATURES)), label, event, [{}] * n, [{}] * n, np.array(["gbt"] * n),
               np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), [ev])
    alarms = np.zeros(n, dtype=bool)
    alarms[list(alarm_rows)] = True
    return tb, alarms


def test_judge_counts_events_ticks_and_false_alarm_runs():
    tb, alarms = _table([5, 6, 12, 13, 17])  # hit at tick 5; b: one run (12, 13) and one single (17)
    r = realeval.judge(tb, alarms)
    assert r["event_recall"] == 1.0 and r["detect_ticks_p50"] == 2.0  # (15 - 11) / 3 -> 2 ticks
    hours = (20 - 3 - 1) * 3.0 / 3600
    assert r["false_alarms_between_faults_per_node_hour"] == pytest.approx(2 / hours, rel=1e-3)
    assert r["false_alarms_per_node_hour"] is None  # no fault-free recording in this table
    assert r["f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3), rel=1e-3)
    missed = realeval.judge(tb, np.zeros(20, dtype=bool))
    assert missed["event_recall"] == 0.0 and missed["detect_ticks_p50"] is None


def test_best_threshold_maximises_f1_on_distinct_scores():
    s = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    y = np.array([1, 1, 0, 0, 0], dtype=bool)
    thr, f1 = realeval.best_threshold(s, y)
    assert thr == pytest.approx(0.8) and f1 == pytest.approx(0.8)


def _with_fault_free(tb, n_quiet=400):
    """tb plus one fault-free recording of one node (n_quiet ticks, 3 s apart)."""
    cat = np.concatenate
    return Table(cat([tb.run, np.array(["ff"] * n_quiet)]), cat([tb.topo, np.array(["random:9"] * n_quiet)]),
                 cat([tb.node, np.array(["q"] * n_quiet)]), cat([tb.t, np.arange(n_quiet) * 3.0]),
                 cat([tb.tick, np.arange(n_quiet)]), cat([tb.x, np.zeros((n_quiet, N_FEATURES))]),
                 cat([tb.label, np.zeros(n_quiet, dtype=np.int64)]), cat([tb.event, np.full(n_quiet, -1)]),
                 tb.deployed + [{}] * n_quiet, tb.full + [{}] * n_quiet, cat([tb.live_layer, np.array(["gbt"] * n_quiet)]),
                 cat([tb.live_alarm, np.zeros(n_quiet, dtype=bool)]), cat([tb.fault_free, np.ones(n_quiet, dtype=bool)]),
                 tb.events)


def test_fault_free_recordings_are_judged_apart_and_never_trained_on():
    tb, alarms = _table([5, 6])
    q = _with_fault_free(tb)
    a = np.r_[alarms, np.zeros(400, dtype=bool)]
    a[len(tb) + 150] = a[len(tb) + 151] = True  # one false alarm (two ticks) after the start window
    a[len(tb) + 3] = True  # one during the first 300 s
    r = realeval.judge(q, a)
    hours = 400 * 3.0 / 3600
    assert r["false_alarms_fault_free"] == 2 and r["fault_free_node_hours"] == pytest.approx(hours, rel=1e-3)
    assert r["false_alarms_per_node_hour"] == pytest.approx(2 / hours, rel=1e-3)
    assert r["false_alarms_per_node_hour_after_start"] == pytest.approx(1 / ((400 - 100) * 3.0 / 3600), rel=1e-3)
    assert r["event_recall"] == 1.0 and r["false_alarms_between_faults_per_node_hour"] == 0.0
    for _test, _val, tr, va, _te in realeval.folds(q):
        assert not q.fault_free[tr].any() and not q.fault_free[va].any()
    assert q.fault_free[realeval.folds(q)[-1][4]].all()


def test_operating_point_trades_stray_ticks_for_an_alarm_policy():
    # node a: fault at ticks 4..6 scores high three ticks running; node b: single stray high ticks
    tb, _ = _table()
    s = np.zeros(len(tb))
    s[[4, 5, 6]] = 1.0
    s[[11, 14, 18]] = 1.0
    thr, pol, f = realeval.choose_operating_point(tb, np.arange(len(tb)), s)
    assert thr == pytest.approx(1.0) and pol.raise_ticks >= 2 and f == pytest.approx(1.0)


def test_budget_point_prefers_fast_hard_recall_within_the_false_alarm_budget():
    # the fault starts at 11 s (ticks 4..6 at 12, 15, 18 s): 0.6 at its first tick, 1.0 only at 18 s
    # (7 s in: more than 2 ticks); node b strays at 0.8 once
    tb, _ = _table()
    s = np.zeros(len(tb))
    s[4], s[6] = 0.6, 1.0
    s[14] = 0.8
    rows = np.arange(len(tb))
    hours = 16 * 3.0 / 3600  # label-0 ticks
    thr, pol, rec, fa = realeval.choose_budget_point(tb, rows, s, budget=100.0)
    assert 0.0 < thr <= 0.6 and pol.raise_ticks == 1 and rec == 1.0 and fa == pytest.approx(1 / hours)
    thr, _pol, rec, fa = realeval.choose_budget_point(tb, rows, s, budget=1.0)
    assert thr > 0.8 and rec == 0.0 and fa == 0.0  # the stray alarm costs more than the budget: too slow
    s[5] = 1.0
    thr, _pol, rec, fa = realeval.choose_budget_point(tb, rows, s, budget=1.0)
    assert thr > 0.8 and rec == 1.0 and fa == 0.0  # 15 s: within 2 ticks and no false alarm


def test_leave_one_kind_out_reports_each_kind_held_out_and_seen():
    tb, _ = _table()
    tb.x[:] = NEUTRAL_RAW
    tb.x[4:7, FEATURES.index("fwd_ratio")] = 0.0  # the hang's rows look like a black hole to the rules
    got = realeval.leave_one_kind_out(tb, "rules")
    assert set(got) == {"hang"} and got["hang"]["events"] == 1
    assert got["hang"]["recall_seen"] == 1.0 and got["hang"]["recall_held_out"] == 1.0  # rules learn nothing


def test_held_loss_recipe_scores_neighbours_down_through_the_device_chain():
    pair = realtrain.held_loss_links_only()
    chain = realtrain.chain_of(pair)
    count = np.array([0, 1, 2, 3, 5, 8, 50, float("nan")])
    down = links_down_input(count)
    n = len(count)
    xs = np.random.default_rng(0).random((n, N_FEATURES)).astype(np.float32)  # the 8 features play no part
    m = np.zeros((n, K_NEIGHBOURS), np.float32)
    m[::2, :3] = 1.0  # half the rows with neighbour data (the nbr model), half without (the self model)
    ev = chain.evaluate(xs, np.ones((n, K_NEIGHBOURS, N_FEATURES), np.float32), m, down)
    assert np.allclose(ev.scores, [-0.5, 0.5, 1.5, 2.5, 2.5, 2.5, 2.5, -0.5])
    assert ev.row_layers[0] == GBT and ev.row_layers[1] == GBT_SELF
    assert ev.anomalous.tolist() == [False, True, True, True, True, True, True, False]  # thresholds 0: >= 1 down
    assert TreeModel.from_dict(pair["nbr"]).uses_links_down and TreeModel.from_dict(pair["self"]).width == N_FEATURES + 1


def test_held_loss_mesh_discount_needs_one_more_neighbour_down_when_every_neighbour_is_slow():
    from x0node.anomaly.features import normalise

    pair = realtrain.held_loss_pair(mesh_rtt_ms=100.0)
    chain = realtrain.chain_of(pair)
    rtt = FEATURES.index("rtt_ms")
    nbr = np.tile(NEUTRAL_RAW, (4, K_NEIGHBOURS, 1))
    nbr[0, :, rtt] = 300.0  # every neighbour slow: a host stall
    nbr[1, :, rtt] = 300.0
    nbr[1, 1, rtt] = 5.0  # one neighbour quick: the delay is not everywhere
    nbr[2, :, rtt] = 300.0  # every neighbour slow, two down
    nbr[3, :, rtt] = 100.0  # at the level, not above it
    m = np.zeros((4, K_NEIGHBOURS), np.float32)
    m[:, :2] = 1.0
    down = links_down_input(np.array([1, 1, 2, 1]))
    ev = chain.evaluate(normalise(np.tile(NEUTRAL_RAW, (4, 1))), normalise(nbr), m, down)
    assert np.allclose(ev.scores, [-0.5, 0.5, 0.5, 0.5])
    assert ev.anomalous.tolist() == [False, True, True, True]
    # the self model (no neighbour data) has no discount; the plain recipe has none at all
    assert len(TreeModel.from_dict(pair["self"]).trees) == 3  # links down, loss, forwarding: no discount
    assert len(TreeModel.from_dict(realtrain.held_loss_plain()["nbr"]).trees) == 3


def test_held_loss_recipe_adds_the_ticks_control_loss_and_forwarding_ratio():
    from x0node.anomaly.features import normalise

    chain = realtrain.chain_of(realtrain.held_loss_plain())
    raw = np.tile(NEUTRAL_RAW, (5, 1))
    raw[1, FEATURES.index("loss_max")] = realtrain.LOSS_LEVEL  # at the level: counts
    raw[2, FEATURES.index("loss_max")] = realtrain.LOSS_LEVEL - 0.01
    raw[3, FEATURES.index("fwd_ratio")] = realtrain.FWD_LEVEL  # at the level: counts
    raw[4, FEATURES.index("fwd_ratio")] = realtrain.FWD_LEVEL + 0.01
    m = np.zeros((5, K_NEIGHBOURS), np.float32)
    ev = chain.evaluate(normalise(raw), np.zeros((5, K_NEIGHBOURS, N_FEATURES), np.float32), m,
                        links_down_input(np.array([0, 0, 0, 0, 1])))
    assert np.allclose(ev.scores, [-0.5, 0.5, -0.5, 0.5, 0.5])
    assert ev.anomalous.tolist() == [False, True, False, True, True]


def test_held_loss_mesh_keeps_no_discount_that_loses_a_timely_hard_fault():
    tb, _ = _table()
    tb.x[:] = NEUTRAL_RAW
    rows = np.arange(len(tb))
    tb.links_down = np.zeros(len(tb))
    tb.links_down[4] = 1.0  # a neighbour of the hung node held down at its first tick
    slow = NEUTRAL_RAW.copy()
    slow[FEATURES.index("rtt_ms")] = 30.0  # the neighbours' hellos 30 ms late
    tb.deployed = [{"n1": slow.copy()} for _ in rows]
    inp = realeval.inputs(tb, "deployed")
    # the discount at 25 ms would hide the hang; 50 ms and above keep it
    assert realtrain.choose_mesh_rtt(tb, rows, inp) == 50.0


def test_operating_point_counts_a_hard_fault_only_when_caught_within_two_ticks():
    # the hang starts at 11 s; its ticks are at 12, 15, 18 s; node b strays for two ticks (12, 15 s)
    tb, _ = _table()
    s = np.zeros(len(tb))
    s[[6]] = 1.0  # 18 s: 3 ticks in, too late for a hard fault
    s[[4, 5, 6]] += 0.5
    s[[14, 15]] = 0.5
    thr, pol, f = realeval.choose_operating_point(tb, np.arange(len(tb)), s)
    # 1.0 alone catches the hang only 3 ticks in: no timely detection; 0.5 catches it at 12 s with one stray alarm
    assert thr == pytest.approx(0.5) and pol.raise_ticks == 1 and 0.0 < f < 1.0


def test_device_tick_judges_every_tenth_tick_as_a_ten_times_longer_one():
    tb, _ = _table()
    q = _with_fault_free(tb, n_quiet=400)
    s = np.zeros(len(q))
    s[len(tb) + 150] = 1.0  # kept (every 10th tick of the series from its first)
    s[len(tb) + 155] = 1.0  # not kept
    pred = realeval.Predictions(s, np.zeros(len(q), bool), np.zeros(len(q), bool), None,
                                [{"threshold": 0.5, "policy": {"raise_ticks": 1, "clear_ticks": 1}}] * len(realeval.folds(q)))
    r = realeval.at_device_tick(q, pred)
    assert r["interval_s"] == 30.0 and r["fault_free_node_hours"] == pytest.approx(40 * 30.0 / 3600, rel=1e-3)
    assert r["false_alarms_fault_free"] == 1


def test_false_alarm_sources_tell_mesh_wide_stalls_from_one_node():
    tb, _ = _table()
    q = _with_fault_free(tb, n_quiet=400)
    a = np.zeros(len(q), dtype=bool)
    a[len(tb) + 150] = True
    got = realeval.false_alarm_sources(q, a, realeval.inputs(q, "deployed"))
    assert got["false_alarms"] == 1 and got["with_another_node"] == 0.0 and got["single_tick"] == 1.0
    assert got["first_300_s"] == 0.0


def _rtt_table(n_nodes: int = 6, ticks: int = 80) -> Table:
    """One run; every node slow (rtt 600 ms) under a fault for a stretch the held-loss detector cannot see."""
    rtt = FEATURES.index("rtt_ms")
    node = np.repeat([f"n{i}" for i in range(n_nodes)], ticks)
    tick = np.tile(np.arange(ticks), n_nodes)
    n = len(node)
    x = np.tile(NEUTRAL_RAW, (n, 1))
    x[:, rtt] = 8.0
    label = np.zeros(n, dtype=np.int64)
    fault = (tick % 20) < 6
    label[fault], x[fault, rtt] = 1, 600.0
    return Table(np.array(["r"] * n), np.array(["ring:6"] * n), node, tick * 3.0, tick, x, label,
                 np.where(fault, 0, -1), [{}] * n, [{}] * n, np.array(["gbt"] * n), np.zeros(n, dtype=bool),
                 np.zeros(n, dtype=bool), [], links_down=np.zeros(n))


def test_federated_rounds_learn_what_the_shipped_detector_misses_and_pass_the_gate():
    tb = _rtt_table()
    inp = realeval.inputs(tb, "deployed")
    rows = np.arange(len(tb))
    realeval.FED_ROUNDS.clear()
    score = realeval.fit_federated(rows, rows, inp, tb)
    info = realeval.FED_ROUNDS[-1]
    assert info["clients"] == 6 and info["in_use"] and info["passed_gate"]
    s = score(rows, inp)
    assert s[tb.label == 1].min() > 0 > s[tb.label == 0].max()  # the head alarms on the slow stretches only
    again = realeval.fit_federated(rows, rows, inp, tb)(rows, inp)
    assert np.array_equal(s, again)  # deterministic


def test_federated_keeps_the_shipped_detector_when_no_round_passes_the_gate():
    tb = _rtt_table()
    tb.label[:] = 0  # nothing to judge by: the gate never passes
    inp = realeval.inputs(tb, "deployed")
    rows = np.arange(len(tb))
    realeval.FED_ROUNDS.clear()
    s = realeval.fit_federated(rows, rows, inp, tb)(rows, inp)
    assert not realeval.FED_ROUNDS[-1]["in_use"]
    assert np.allclose(s, realeval.chain_scores(realtrain.chain_of(realtrain.held_loss_plain()), rows, inp))


def test_federated_improves_only_when_no_worse_anywhere_and_better_somewhere_at_both_points():
    def row(f1, fa):
        r = dict.fromkeys(realeval.KEYS, 0.5)
        r.update(f1=f1, false_alarms_per_node_hour=fa, ci95={})
        return r

    fed, ship, g = realeval.FEDERATED, realeval.SHIPPED, realeval.GATE_POINT_SUFFIX
    rows = {ship: row(0.7, 5.0), fed: row(0.7, 4.0), ship + g: row(0.7, 5.0), fed + g: row(0.7, 4.5)}
    v = realeval.federated_verdict(rows)
    assert v["improves"] and v["delta_vs_shipped"]["false_alarms_per_node_hour"] == -1.0
    rows[fed + g] = row(0.69, 3.0)  # fewer false alarms at the gate's point, but a lower F1 there
    v = realeval.federated_verdict(rows)
    assert not v["improves"] and not v["at_gate_point"]["improves"]
    assert realeval.federated_verdict({ship: row(0.7, 5.0)}) is None
