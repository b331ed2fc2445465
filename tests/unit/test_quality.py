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


def test_cost_is_the_expected_transmission_time_below_the_reference_rate():
    # a link ten times slower costs ten times more, at every rate below the reference (until COST_MAX)
    for fast in (100e6, 10e6, 2e6):
        assert link_cost(0.0, 0.0, fast / 10) == 10 * link_cost(0.0, 0.0, fast)
    # loss multiplies the transmission time (ETX x size / bandwidth), RTT still adds
    assert link_cost(0.1, 0.0, 10e6) == round(COST_SCALE / 0.81 * 10)
    assert link_cost(0.0, 5.0, 10e6) == link_cost(0.0, 0.0, 10e6) + 50
    # at or above the reference, or unknown: what a link cost before throughput was measured
    assert link_cost(0.02, 3.0, 1e9) == link_cost(0.02, 3.0, 100e6) == link_cost(0.02, 3.0, None)
    assert link_cost(0.0, 0.0, 1.0) == COST_MAX
