import json

import pytest

from x0node.anomaly.observe import ObserveConfig, ObserveMode, Phase

CFG = ObserveConfig(min_observe_s=100.0, min_predictions=10, min_outcomes=20, window=50,
                    min_positive_outcomes=5, min_precision=0.95, max_fpr=0.05)


def _feed(m, n, predicted, truth, t):
    for _ in range(n):
        pid = m.record_prediction(predicted, t)
        m.record_outcome(pid, truth, t)


def _validating() -> ObserveMode:
    """A mode whose observation time is up and whose prediction count just reached the minimum, so
    it has moved on to VALIDATE (the full path test walks the same steps with assertions)."""
    m = ObserveMode(CFG, now=0.0)
    m.tick(100.0)
    m.predictions = 10
    m.tick(100.0)
    return m


def test_full_path_observe_validate_confidence_active():
    m = ObserveMode(CFG, now=0.0)
    for _ in range(10):
        m.record_prediction(False, 10.0)
    assert m.phase is Phase.OBSERVE and not m.acting  # predictions recorded, time not up
    m.tick(100.0)
    assert m.phase is Phase.VALIDATE and not m.acting
    _feed(m, 15, False, False, 101.0)
    assert m.phase is Phase.VALIDATE
    _feed(m, 5, True, True, 102.0)
    assert m.phase is Phase.ACTIVE and m.acting  # 20 outcomes, precision 1, FPR 0 -> straight through
    events = list(iter(m.next_event, None))
    assert [(e.old, e.new) for e in events] == [("observe", "validate"), ("validate", "confidence"),
                                                 ("confidence", "active")]


def test_stays_in_confidence_while_precision_too_low_and_demotes_when_active():
    m = _validating()
    _feed(m, 10, False, False, 101.0)
    _feed(m, 5, True, True, 101.0)
    _feed(m, 5, True, False, 101.0)  # 50% precision
    assert m.phase is Phase.CONFIDENCE and not m.acting
    _feed(m, 50, False, False, 102.0)  # window 50: all the flagged ones rolled out -> still too few positives
    assert m.phase is Phase.CONFIDENCE
    _feed(m, 10, True, True, 103.0)
    assert m.phase is Phase.ACTIVE
    _feed(m, 5, True, False, 104.0)  # precision 10/15 < 0.90 -> demoted
    assert m.phase is Phase.CONFIDENCE and not m.acting


def test_fpr_bound_blocks_activation():
    m = _validating()
    _feed(m, 40, True, True, 101.0)
    _feed(m, 1, True, False, 101.0)
    _feed(m, 9, False, False, 101.0)  # precision 40/41 > .95 but FPR 1/10 > .05
    assert m.phase is Phase.CONFIDENCE


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


def test_unknown_outcome_ids_are_ignored_and_pending_is_bounded():
    m = ObserveMode(CFG, now=0.0)
    assert m.record_outcome(12345, True, 1.0) is False and m.unknown_outcomes == 1
    for _ in range(5000):
        m.record_prediction(False, 1.0)
    assert len(m._pending) <= 4096  # noqa: SLF001


def test_state_round_trips_through_json_and_bad_state_starts_fresh():
    m = _validating()
    _feed(m, 20, True, True, 101.0)
    m.set_override("observe", 102.0)
    pid = m.record_prediction(True, 103.0)
    r = ObserveMode.from_dict(json.loads(json.dumps(m.to_dict())), CFG, now=500.0)
    assert r.phase is m.phase and r.override == "observe" and r.estimate() == m.estimate()
    assert r.record_outcome(pid, True, 104.0)
    assert r.record_prediction(False, 105.0) > pid
    for bad in ({}, {"phase": "bogus"}, {"phase": "active", "started_s": "x", "predictions": 1},
                {"phase": "active", "started_s": 0, "predictions": 1, "override": "evil"}):
        assert ObserveMode.from_dict(bad, CFG, now=1.0).phase is Phase.OBSERVE
