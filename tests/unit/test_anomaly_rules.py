import numpy as np

from x0node.anomaly import rules
from x0node.anomaly.features import FEATURES, NEUTRAL_RAW, normalise


def _with(**kw):
    raw = NEUTRAL_RAW.copy()
    for k, v in kw.items():
        raw[FEATURES.index(k)] = v
    return normalise(raw[None])


def test_neutral_node_is_normal():
    assert rules.rule_scores(_with())[0] < 1.0 and rules.rule_reasons(_with()[0]) == []


def test_each_rule_fires():
    cases = {
        "cpu": dict(cpu_util=0.97),
        "memory": dict(mem_util=0.95),
        "rtt": dict(rtt_ms=400.0),
        "loss": dict(loss_max=0.2),
        "flapping": dict(link_changes=5),
        "interface_errors": dict(if_errors_per_s=100.0),
        "not_forwarding": dict(fwd_ratio=0.05),
    }
    for reason, kw in cases.items():
        x = _with(**kw)
        assert rules.rule_scores(x)[0] >= 1.0, reason
        assert reason in rules.rule_reasons(x[0])


def test_link_thresholds_follow_the_link_quality_classes():
    from x0node.proto.quality import Quality, classify

    assert classify(rules.LOSS_BAD, 1.0) == Quality.BAD
    assert classify(rules.LOSS_BAD * 0.99, 1.0) != Quality.BAD
    assert classify(0.0, rules.RTT_BAD_MS) == Quality.BAD


def test_scores_are_monotonic_in_loss():
    s = [rules.rule_scores(_with(loss_max=v))[0] for v in (0.0, 0.02, 0.05, 0.3)]
    assert s == sorted(s)
    assert np.isfinite(s).all()
