from x0node.proto.protocol import COST_MAX, COST_SCALE
from x0node.proto.quality import Quality, classify, link_cost


def test_classes_follow_seed_thresholds():
    assert classify(0.0005, 5, 200e6) is Quality.EXCELLENT
    assert classify(0.005, 5, 200e6) is Quality.GOOD
    assert classify(0.0, 60, None) is Quality.FAIR
    assert classify(0.04, 10, None) is Quality.POOR
    assert classify(0.05, 10, None) is Quality.BAD
    assert classify(0.0, 250, None) is Quality.BAD
    assert classify(0.0, 1, 0.5e6) is Quality.BAD
    assert classify(0.0, 1, 20e6) is Quality.FAIR  # throughput caps the class


def test_cost_monotonic_and_bounded():
    base = link_cost(0.0, 0.0)
    assert base == COST_SCALE
    assert link_cost(0.1, 0.0) > base
    assert link_cost(0.0, 5.0) > base
    assert link_cost(0.0, 0.0, 10e6) > link_cost(0.0, 0.0, 100e6) == base
    assert 1 <= link_cost(1.0, 1e9, 1.0) <= COST_MAX
