import numpy as np

from x0node.anomaly.drift import DriftCleared, DriftDetected, DriftMonitor, psi

NAMES = ("a", "b")


def _hist(rows):
    return np.stack([np.histogram(rows[:, j], bins=10, range=(0, 1))[0] / len(rows) for j in range(rows.shape[1])])


def test_psi_zero_for_identical_and_large_for_shifted():
    e = np.full((1, 10), 0.1)
    assert psi(e, e)[0] == 0.0
    a = np.zeros((1, 10))
    a[0, 9] = 1.0
    assert psi(e, a)[0] > 1.0


def test_no_event_on_training_like_data_then_drift_then_cooldown_then_cleared():
    rng = np.random.default_rng(0)
    train = rng.uniform(0.0, 0.5, (5000, 2))
    mon = DriftMonitor(NAMES, _hist(train), window_rows=500, min_rows=200, cooldown_s=100.0)
    mon.add(rng.uniform(0.0, 0.5, (150, 2)))
    assert mon.check(0.0) is None  # not enough rows yet
    mon.add(rng.uniform(0.0, 0.5, (350, 2)))
    assert mon.check(1.0) is None
    shifted = np.c_[rng.uniform(0.6, 1.0, 500), rng.uniform(0.0, 0.5, 500)]
    mon.add(shifted)
    ev = mon.check(2.0)
    assert isinstance(ev, DriftDetected) and ev.features == ("a",) and ev.psi[0] >= 0.25
    assert mon.check(50.0) is None  # cooldown
    assert isinstance(mon.check(200.0), DriftDetected)
    mon.add(rng.uniform(0.0, 0.5, (500, 2)))
    assert isinstance(mon.check(300.0), DriftCleared)
    assert mon.status()["drifting"] is False


def test_window_is_bounded():
    mon = DriftMonitor(NAMES, np.full((2, 10), 0.1), window_rows=50, min_rows=10)
    mon.add(np.random.default_rng(1).random((500, 2)))
    assert mon.status()["rows"] == 50
    assert mon._counts.sum() == 100  # noqa: SLF001 - 50 rows x 2 features


def test_own_reference_is_learnt_first_then_persisted_and_restored():
    rng = np.random.default_rng(3)
    mon = DriftMonitor(NAMES, None, window_rows=100, min_rows=50, reference_rows=200, cooldown_s=10.0)
    normal = lambda n: np.clip(rng.normal(0.3, 0.05, (n, 2)), 0, 1)  # noqa: E731
    mon.add(normal(150))
    assert mon.check(0.0) is None and not mon.status()["reference_ready"]
    saved = mon.to_dict()
    again = DriftMonitor(NAMES, None, window_rows=100, min_rows=50, reference_rows=200, cooldown_s=10.0)
    assert again.restore(saved) and again.status()["reference_rows"] == 150
    again.add(normal(50))  # reference complete (its own 200 rows)
    again.add(normal(100))
    assert again.check(1.0) is None and again.status()["reference_ready"]
    again.add(np.clip(normal(100) + 0.4, 0, 1))  # this node shifted against its own history
    assert isinstance(again.check(2.0), DriftDetected)
    third = DriftMonitor(NAMES, None, reference_rows=200)
    assert third.restore(again.to_dict()) and third.status()["reference_ready"]
    assert not third.restore({"features": ["x"], "bins": 10}) and not third.restore("junk")
    assert not DriftMonitor(NAMES, None).restore({**saved, "building": [[-1] * 10] * 2})
