import json

import pytest

from x0node.anomaly.observe import MAX_ALARMS, ObserveConfig, ObserveMode, Phase

CFG = ObserveConfig(min_observe_s=100.0, min_predictions=10, min_outcomes=20, window=50,
                    min_positive_outcomes=5, min_precision=0.95, min_faults=4, min_recall=0.5, demote_recall=0.4)


def _alarm(m: ObserveMode, t: float) -> int:
    """One alarm raised at t and cleared at t + 1; returns its id."""
    aid = m.record_evaluation(True, t)
    m.record_evaluation(False, t + 1.0)
    return aid


def _judge(m: ObserveMode, n: int, fault: bool, t: float, source: str = "operator") -> list[int]:
    ids = []
    for i in range(n):
        aid = _alarm(m, t + 2.0 * i)
        assert m.judge(aid, fault, source, t + 2.0 * i + 1.5)
        ids.append(aid)
    return ids


def _validating() -> ObserveMode:
    m = ObserveMode(CFG, now=0.0)
    for _ in range(10):
        m.record_evaluation(False, 100.0)
    assert m.phase is Phase.VALIDATE
    return m


def test_an_alarm_is_one_id_from_raise_to_clear():
    m = ObserveMode(CFG, now=0.0)
    assert m.record_evaluation(False, 1.0) is None
    a = m.record_evaluation(True, 2.0)
    assert m.record_evaluation(True, 3.0) == a and m.record_evaluation(False, 4.0) is None
    b = m.record_evaluation(True, 5.0)
    assert b == a + 1 and m.predictions == 5
    assert m.alarms() == [{"id": b, "raised": 5.0, "cleared": None, "fault": None, "source": None},
                          {"id": a, "raised": 2.0, "cleared": 4.0, "fault": None, "source": None}]


def test_full_path_observe_validate_confidence_active_from_operator_verdicts():
    m = ObserveMode(CFG, now=0.0)
    for _ in range(10):
        m.record_evaluation(False, 10.0)
    assert m.phase is Phase.OBSERVE and not m.acting  # evaluations recorded, time not up
    m.tick(100.0)
    assert m.phase is Phase.VALIDATE and not m.acting
    _judge(m, 19, True, 101.0)
    assert m.phase is Phase.VALIDATE  # 19 judged
    _judge(m, 1, True, 200.0)
    assert m.phase is Phase.ACTIVE and m.acting  # 20 judged, precision 1, recall unknown (no fault yet)
    events = list(iter(m.next_event, None))
    assert [(e.old, e.new) for e in events] == [("observe", "validate"), ("validate", "confidence"),
                                                 ("confidence", "active")]


def test_unjudged_alarms_count_for_nothing():
    # the rules are no longer asked: alarms nobody judged neither confirm nor refute the detector
    m = _validating()
    for i in range(100):
        _alarm(m, 200.0 + 2 * i)
    assert m.phase is Phase.VALIDATE and m.estimate() == (None, None)
    assert m.status()["alarms"] == 100 and m.status()["outcomes"] == 0


def test_precision_gates_activation_and_demotes():
    m = _validating()
    _judge(m, 10, True, 200.0)
    _judge(m, 10, False, 300.0)  # precision 0.5
    assert m.phase is Phase.CONFIDENCE and not m.acting
    ids = _judge(m, 60, True, 400.0)  # window 50: now all confirmed
    assert m.phase is Phase.ACTIVE
    for aid in ids[-5:]:  # the operator changes their mind: precision 45/50 = 0.90 -> still active
        m.judge(aid, False, "operator", 600.0)
    assert m.phase is Phase.ACTIVE
    m.judge(ids[-6], False, "operator", 601.0)  # 44/50 < 0.90 -> demoted
    assert m.phase is Phase.CONFIDENCE and not m.acting


def test_faults_judge_the_alarms_raised_in_them_and_count_misses():
    m = _validating()
    a = _alarm(m, 200.0)  # raised during the fault [199, 230]
    up_before = m.record_evaluation(True, 240.0)  # raised before the next fault [245, 260], still up
    assert m.fault(199.0, 230.0, "schedule", 231.0) is True
    assert m.alarm(a).fault is True and m.alarm(a).source == "schedule"
    assert m.fault(245.0, 260.0, "schedule", 261.0) is False  # an alarm already up did not detect it
    assert m.alarm(up_before).fault is None
    assert m.estimate() == (1.0, 0.5) and m.status()["missed"] == 1
    assert m.fault(float("nan"), 1.0, "schedule", 262.0) is None and m.fault(5.0, 4.0, "incident", 262.0) is None
    assert m.bad_faults == 2
    with pytest.raises(ValueError):
        m.fault(1.0, 2.0, "operator", 3.0)  # an operator's word is on an alarm or an incident


def test_recall_gates_activation_once_enough_faults_are_known():
    m = _validating()
    _judge(m, 20, True, 200.0)
    assert m.phase is Phase.ACTIVE  # no fault known: recall not yet a gate
    for k in range(4):  # four known faults, none detected
        m.fault(1000.0 + 10 * k, 1005.0 + 10 * k, "incident", 1100.0)
    assert m.estimate()[1] == 0.0 and m.phase is Phase.CONFIDENCE  # recall 0 < 0.4: demoted
    for k in range(4):  # four caught
        _alarm(m, 2000.0 + 10 * k)
        assert m.fault(1999.0 + 10 * k, 2005.0 + 10 * k, "incident", 2100.0)
    assert m.estimate()[1] == 0.5 and m.phase is Phase.ACTIVE


def test_the_operator_has_the_last_word_on_an_alarm():
    m = _validating()
    a = _alarm(m, 200.0)
    assert m.judge(a, False, "operator", 202.0)
    assert m.fault(199.0, 210.0, "schedule", 211.0) is True  # detected, but the verdict stays the operator's
    assert m.alarm(a).fault is False and not m.judge(a, True, "incident", 212.0)
    assert m.judge(a, True, "operator", 213.0) and m.alarm(a).fault is True


def test_unknown_alarm_ids_are_refused_and_alarms_are_bounded():
    m = ObserveMode(CFG, now=0.0)
    assert m.judge(12345, True, "operator", 1.0) is False and m.unknown_outcomes == 1
    assert m.judge(True, True, "operator", 1.0) is False  # a bool is not an id
    with pytest.raises(ValueError):
        m.judge(1, True, "rules", 1.0)
    first = _alarm(m, 1.0)
    for i in range(MAX_ALARMS + 10):
        _alarm(m, 10.0 + 2 * i)
    assert len(m.alarms(10_000)) == MAX_ALARMS and m.alarm(first) is None
    assert m.judge(first, True, "operator", 1e6) is False


def test_manual_override_pins_acting():
    m = ObserveMode(CFG, now=0.0)
    m.set_override("active", 1.0)
    assert m.acting and m.phase is Phase.OBSERVE
    m.set_override("observe", 2.0)
    assert not m.acting
    m.set_override(None, 3.0)
    assert not m.acting
    with pytest.raises(ValueError):
        m.set_override("block", 4.0)


def test_state_round_trips_through_json_and_bad_state_starts_fresh():
    m = _validating()
    _judge(m, 20, True, 200.0)
    m.fault(5000.0, 5010.0, "schedule", 5011.0)
    m.set_override("observe", 102.0)
    up = m.record_evaluation(True, 6000.0)
    r = ObserveMode.from_dict(json.loads(json.dumps(m.to_dict())), CFG, now=7000.0)
    assert r.phase is m.phase and r.override == "observe" and r.estimate() == m.estimate()
    assert r.alarms(5) == m.alarms(5) and r.status() == m.status()
    assert r.record_evaluation(True, 6003.0) == up  # the alarm up at the save is still the one up
    assert r.record_evaluation(False, 6006.0) is None and r.record_evaluation(True, 6009.0) > up
    for bad in ({}, {"phase": "bogus"}, {"phase": "active", "started_s": "x", "predictions": 1},
                {"phase": "active", "started_s": 0, "predictions": 1, "override": "evil"},
                {"version": 2, "phase": "active", "started_s": 0, "predictions": 1,
                 "alarms": [[1, 0.0, None, "yes", "operator"]]},
                {"version": 2, "phase": "active", "started_s": 0, "predictions": 1,
                 "alarms": [[1, 0.0, None, True, "rules"]]}):
        assert ObserveMode.from_dict(bad, CFG, now=1.0).phase is Phase.OBSERVE


def test_a_state_judged_by_the_rules_keeps_its_time_but_not_its_outcomes():
    old = {"phase": "active", "started_s": 5.0, "predictions": 4000, "outcomes_total": 900, "override": None,
           "window": [[True, True]] * 50, "pending": [[1, True]], "next_id": 4001}
    r = ObserveMode.from_dict(old, CFG, now=1e6)
    assert r.phase is Phase.VALIDATE and not r.acting and r.started_s == 5.0 and r.predictions == 4000
    assert r.estimate() == (None, None) and r.alarms() == []
