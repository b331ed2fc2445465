import random

import numpy as np
import pytest

from x0node.anomaly.chain import GNN, DetectorChain, load_chain
from x0node.anomaly.drift import DriftMonitor
from x0node.anomaly.engine import (
    MAX_PEERS,
    AnomalyDetected,
    AnomalyEngine,
    LayerChanged,
    ThresholdRecalibrated,
)
from x0node.anomaly.features import FEATURES, NEUTRAL_RAW
from x0node.anomaly.observe import ObserveConfig, ObserveMode, PhaseChanged

FAST = ObserveConfig(min_observe_s=0.0, min_predictions=1, min_outcomes=5, window=50, min_positive_outcomes=1)


def _raw(**kw):
    r = NEUTRAL_RAW.copy()
    r[FEATURES.index("rtt_ms")] = 8.0
    for k, v in kw.items():
        r[FEATURES.index(k)] = v
    return r


def gnn_chain():
    """The shipped chain with its tree layers off: these tests exercise the engine on the GNN."""
    chain, _ = load_chain()
    for layer in ("gbt", "gbt_self"):
        chain.layers[layer].live = False
    return chain


@pytest.fixture(scope="module")
def shipped():
    chain, bundle = load_chain()
    assert chain.layers[GNN].live
    return bundle


def _engine(bundle=None, observe_cfg=FAST, chain=None):
    if chain is None:
        chain = gnn_chain()
    drift = DriftMonitor(FEATURES, bundle.train_hist) if bundle else None
    return AnomalyEngine("me", chain, drift, ObserveMode(observe_cfg, 0.0))


def _events(e):
    return list(iter(e.next_event, None))


def test_scores_self_and_peers_and_flags_a_blackhole_peer(shipped):
    e = _engine(shipped)
    for p in ("a", "b", "c"):
        assert e.update_peer(p, _raw(), 0.0)
    assert e.update_peer("bh", _raw(fwd_ratio=0.02), 0.0)
    adj = {"me": ["a", "b", "bh"], "a": ["me", "c"], "bh": ["me", "c"], "c": ["a", "bh"]}
    res = e.step(_raw(), adj, 1.0, 1000.0, random.Random(1))
    assert res["layer"] == GNN and res["nodes"] == 5
    flagged = {ev.node_id for ev in _events(e) if isinstance(ev, AnomalyDetected)}
    assert flagged == {"bh"}
    assert e.last_scores["bh"]["probability"] > 0.5 > e.last_scores["me"]["probability"]


def test_bad_and_excess_peers_are_refused_or_bounded(shipped):
    e = _engine(shipped)
    assert not e.update_peer("x", [1.0, 2.0], 0.0)
    assert not e.update_peer("me", _raw(), 0.0)
    assert not e.update_peer("", _raw(), 0.0)
    for i in range(MAX_PEERS + 10):
        e.update_peer(f"p{i}", _raw(), float(i))
    assert e.status()["peers"] == MAX_PEERS


def test_stale_peers_expire(shipped):
    e = _engine(shipped)
    e.update_peer("old", _raw(), 0.0)
    res = e.step(_raw(), {}, e.peer_ttl_s + 1.0, 0.0, random.Random(0))
    assert res["nodes"] == 1


def test_alarms_only_act_after_verdicts_from_outside_the_detector(shipped):
    e = _engine(shipped)
    t = 0.0
    # alarms come and go; the rules fire on every one of them, but only verdicts count
    detected = []
    for i in range(60):
        bad = i % 6 in (3, 4)
        e.step(_raw(cpu_util=0.99, fwd_ratio=0.01) if bad else _raw(), {}, t, t, random.Random(0))
        detected += [ev for ev in _events(e) if isinstance(ev, AnomalyDetected)]
        t += 60.0
    assert len(detected) == 10 and all(not d.actionable for d in detected)
    assert e.observe.phase.value == "validate" and e.observe.estimate() == (None, None)  # the rules judged nothing
    evs = []
    for d in detected[:5]:  # an operator confirms five of them
        assert e.judge(d.alarm_id, True, "operator", t)
        evs += _events(e)
    assert any(isinstance(ev, PhaseChanged) and ev.new == "active" for ev in evs)
    e.step(_raw(cpu_util=0.99, fwd_ratio=0.01), {}, t, t, random.Random(0))
    assert [ev for ev in _events(e) if isinstance(ev, AnomalyDetected)][-1].actionable is True


def test_an_operators_false_alarm_counts_against_precision(shipped):
    e = _engine(shipped)
    e.step(_raw(cpu_util=0.99, fwd_ratio=0.01), {}, 0.0, 0.0, random.Random(0))
    aid = next(ev for ev in _events(e) if isinstance(ev, AnomalyDetected)).alarm_id
    assert e.judge(aid, False, "operator", 1.0) and not e.judge(aid + 99, True, "operator", 1.0)
    e.step(_raw(), {}, 1.0, 1.0, random.Random(0))
    assert e.observe.estimate() == (0.0, None)  # one judged false alarm, no fault known
    assert e.fault(-5.0, 0.5, "schedule", 2.0) is True  # the schedule says it was a fault; the operator's word stays
    assert e.observe.estimate() == (0.0, 1.0)


def test_layer_change_is_reported_when_the_gnn_fails(shipped):
    class Broken:
        def logits(self, *a):
            raise RuntimeError("boom")

    e = _engine(shipped, chain=DetectorChain(Broken(), 0.0))
    assert e.update_peer("p1", _raw(), 0.0)  # a neighbour's vector: the GNN is asked (and fails)
    e.step(_raw(), {"me": ["p1"]}, 0.0, 0.0, random.Random(0))
    ch = [ev for ev in _events(e) if isinstance(ev, LayerChanged)]
    assert ch and ch[0].old == "gnn" and ch[0].new == "rules" and "boom" in ch[0].reason


def test_a_node_without_neighbour_data_is_scored_by_the_self_only_model(shipped):
    e = _engine(shipped)
    e.step(_raw(), {"me": ["p1"]}, 0.0, 0.0, random.Random(0))  # p1 adjacent, but its vector never came
    assert e.last_scores["me"]["layer"] in ("self", "gbt_self")
    assert e.update_peer("p1", _raw(), 1.0)
    e.step(_raw(), {"me": ["p1"]}, 2.0, 2.0, random.Random(0))
    assert e.last_scores["me"]["layer"] in ("gnn", "gbt") and e.last_scores["p1"]["layer"] in ("gnn", "gbt")


def test_iforest_gets_fitted_from_rows_seen_as_normal():
    chain = DetectorChain(None, 0.0, "no model")
    e = _engine(chain=chain)
    rng = np.random.default_rng(0)
    for i in range(40):
        for p in range(20):
            e.update_peer(f"p{p}", _raw(cpu_util=0.2 + rng.normal(0, 0.02)), float(i))
        e.step(_raw(), {}, float(i), float(i), random.Random(i))
    assert chain.live_layer == "iforest"
    assert any(isinstance(ev, LayerChanged) and ev.new == "iforest" for ev in _events(e))


def test_false_alarms_raise_the_threshold_on_recalibration(shipped):
    chain, _ = load_chain()
    e = _engine(shipped, chain=chain)
    shipped_thr = chain.gnn_threshold
    # validated normal rows whose GNN scores sit above the shipped threshold (simulated false alarms)
    e._normal_scores.extend(np.linspace(shipped_thr - 5, shipped_thr + 1, 1000).tolist())  # noqa: SLF001
    e._recalibrate(0.0)  # noqa: SLF001
    ev = [x for x in _events(e) if isinstance(x, ThresholdRecalibrated)]
    assert ev and ev[0].new > shipped_thr and chain.gnn_threshold == ev[0].new


def test_events_are_transitions_not_one_per_evaluation(shipped):
    from x0node.anomaly.engine import AnomalyCleared

    e = _engine(shipped)
    for t in range(3):
        e.step(_raw(fwd_ratio=0.01), {}, float(t), float(t), random.Random(0))
    e.step(_raw(), {}, 3.0, 3.0, random.Random(0))
    evs = _events(e)
    assert sum(isinstance(x, AnomalyDetected) for x in evs) == 1
    assert [type(x).__name__ for x in evs if isinstance(x, AnomalyDetected | AnomalyCleared)] == [
        "AnomalyDetected", "AnomalyCleared"]


def test_alarm_policy_turns_ticks_into_one_alarm(shipped):
    from x0node.anomaly.alarm import AlarmPolicy
    from x0node.anomaly.engine import AnomalyCleared

    e = AnomalyEngine("me", gnn_chain(), None, ObserveMode(FAST, 0.0), alarm_policy=AlarmPolicy(2, 2))
    rng = random.Random(1)
    bad, good = _raw(fwd_ratio=0.02), _raw()
    seq = [bad, good, bad, bad, good, bad, good, good, good]
    got = []
    for i, raw in enumerate(seq):
        e.step(raw, {"me": []}, float(i * 3), 1000.0 + i * 3, rng)
        got.append([type(ev).__name__ for ev in _events(e) if isinstance(ev, AnomalyDetected | AnomalyCleared)])
        assert e.last_scores["me"]["anomalous"] == (raw is bad)  # the per-tick verdict is still reported
    # a single anomalous tick raises nothing; two in a row raise one alarm; a one-tick gap is merged
    assert got == [[], [], [], ["AnomalyDetected"], [], [], [], ["AnomalyCleared"], []]


def test_federated_rounds_label_by_known_faults_and_the_head_decides_only_after_the_gate():
    from x0node.anomaly import federated as fed
    from x0node.anomaly.engine import FederatedRound

    chain, _ = load_chain()  # the shipped tree layer (held-loss)
    e = AnomalyEngine("me", chain, None, ObserveMode(FAST, 0.0), federation=fed.Federation(), federated_round_s=60.0)
    rng = random.Random(3)
    assert e.federated_step(0.0, 990.0, rng) is None  # round 16: nothing labelled yet, nothing to contribute
    for k in range(400):  # 20 min at 3 s; a soft fault (slow links) the shipped layer does not see
        wall = 1000.0 + 3 * k
        bad = k % 100 < 30
        e.update_peer("a", _raw(), wall)
        e.step(_raw(rtt_ms=400.0 if bad else 8.0), {"me": ["a"], "a": ["me"]}, wall, wall, rng, links_down=0)
        assert not e.last_scores["me"]["anomalous"] and "federated" not in e.last_scores["me"]
    for k0 in range(0, 400, 100):
        e.fault(1000.0 + 3 * k0, 1000.0 + 3 * (k0 + 29), "schedule", 3000.0)
    x, y, m = e._fed_labelled()
    assert len(y) == 260 and y.sum() == 120  # 20 rows either side of each fault left unlabelled
    own = e.federated_step(2200.0, 2200.0, rng)  # round 36 = [2160, 2220): this node's update for it
    assert own is not None and own.round == 36 and own.rows > 0
    assert [ev for ev in _events(e) if isinstance(ev, FederatedRound)] == []  # round 16 had no update
    assert e.federated_step(2210.0, 2210.0, rng) is None  # once per round
    peer = fed.Update(36, own.params, 50)
    assert e.offer_update("peer", peer, 10, 2200.0) is None
    assert e.offer_update("peer", peer, 10, 2201.0) == "replay"  # the same signed record again
    assert e.offer_update("peer", fed.Update(36, own.params, 60), 11, 2202.0) is None  # newer: replaces it
    assert e.offer_update("late", fed.Update(35, own.params, 50), 3, 2200.0) == "stale"  # a past round
    assert e.offer_update("me", peer, 12, 2200.0) == "bad_params"  # never its own
    assert e.federated_step(2150.0, 2150.0, rng) is None  # the clock went back: wait
    nxt = e.federated_step(2221.0, 2221.0, rng)  # round 36 ended: closed; round 37 entered
    assert nxt is not None and nxt.round == 37
    for r in range(38, 38 + fed.MAX_ROUNDS):
        e.federated_step(60.0 * r + 1, 60.0 * r + 1, rng)
    rounds = [ev for ev in _events(e) if isinstance(ev, FederatedRound)]
    assert [ev.round for ev in rounds] == list(range(36, 36 + fed.MAX_ROUNDS))
    assert rounds[0].updates == 2 and rounds[0].peers == ("peer",)  # its own and the peer's newest
    assert rounds[1].updates == 1 and rounds[1].peers == ()
    assert e.offer_update("peer", fed.Update(60, own.params, 50), 13, 3600.0) == "rounds_done"
    st = e.status()["federated"]
    assert st["rounds_closed"] == fed.MAX_ROUNDS and st["closed_round"] == 36 + fed.MAX_ROUNDS - 1
    assert st["replaced"] == 1 and st["refused"]["replay"] == 1 and st["refused"]["stale"] == 1
    assert st["in_use"] == (e.federation.in_use is not None)
    # a head in use decides this node's own verdict (and only its own)
    e.federation.in_use = np.r_[np.zeros(fed.WIDTH), 10.0]
    e.update_peer("a", _raw(), 4000.0)
    e.step(_raw(), {"me": ["a"], "a": ["me"]}, 4000.0, 4000.0, rng, links_down=0)
    assert e.last_scores["me"]["anomalous"] and e.last_scores["me"]["federated"]
    assert not e.last_scores["a"]["anomalous"]


def test_without_a_federation_nothing_is_kept_or_taken():
    chain, _ = load_chain()
    e = AnomalyEngine("me", chain, None, ObserveMode(FAST, 0.0))
    e.step(_raw(), {}, 0.0, 0.0, random.Random(1), links_down=0)
    assert e.federated_step(1.0, 1e9, random.Random(1)) is None
    assert e.offer_update("peer", None, 1, 1e9) == "disabled" and e.status()["federated"] is None


def test_a_node_restarted_inside_a_round_publishes_a_newer_update_for_it():
    from x0node.anomaly import federated as fed

    chain, _ = load_chain()
    e = AnomalyEngine("me", chain, None, ObserveMode(FAST, 0.0), federation=fed.Federation(), federated_round_s=60.0)
    e._fed_rows.extend((1000.0 + i, np.full(fed.WIDTH, 0.1 * (i % 2)), 0.0) for i in range(200))
    e.observe.fault(1001.0, 1100.0, "schedule", 1200.0)
    first = e.federated_step(0.0, 1210.0, random.Random(1))
    assert first is not None and first.round == 20
    again = AnomalyEngine("me", chain, None, ObserveMode(FAST, 0.0),
                          federation=fed.Federation.from_dict(e.federation.to_dict()), federated_round_s=60.0)
    again._fed_rows.extend(e._fed_rows)
    again.observe.fault(1001.0, 1100.0, "schedule", 1200.0)
    second = again.federated_step(1.0, 1215.0, random.Random(2))
    assert second is not None and second.round == 20  # the same round: peers take it as a newer record
