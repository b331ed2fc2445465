import numpy as np

from x0node.anomaly.calibration import MIN_CALIBRATION_ROWS, recalibrate_threshold


def test_raises_threshold_to_hit_target_fpr_on_local_normals():
    s = np.linspace(-10, 2, 1000)  # 1% of these normals sit above 1.88
    t = recalibrate_threshold(s, shipped=0.0, current=0.0, target_fpr=0.01)
    assert 1.8 < t <= 2.0
    assert (s >= t).mean() <= 0.011


def test_never_below_shipped_never_above_cap_and_needs_rows():
    assert recalibrate_threshold(np.full(500, -5.0), shipped=0.0, current=0.5) == 0.0
    assert recalibrate_threshold(np.full(500, 50.0), shipped=0.0, current=0.0, max_raise=4.0) == 4.0
    assert recalibrate_threshold(np.zeros(MIN_CALIBRATION_ROWS - 1), 0.0, 0.7) == 0.7
    assert recalibrate_threshold(np.array([np.nan] * 500), 0.0, 0.7) == 0.7
