import random

import numpy as np
import pytest

from x0node.anomaly.iforest import MIN_FIT_ROWS, IsolationForest, c_factor, context_rows


def _normal(n=1000, d=4, seed=0):
    return np.random.default_rng(seed).normal(0.5, 0.05, (n, d)).astype(np.float32)


def test_outliers_score_higher_than_inliers():
    f = IsolationForest.fit(_normal(), random.Random(1))
    inl = f.score(_normal(200, seed=5))
    out = f.score(np.array([[0.95, 0.95, 0.95, 0.95], [0.0, 0.0, 1.0, 1.0]], dtype=np.float32))
    assert out.min() > np.quantile(inl, 0.99)
    assert 0.0 < inl.min() and out.max() <= 1.0


def test_decision_threshold_gives_about_the_target_fpr_on_fitted_rows():
    x = _normal()
    f = IsolationForest.fit(x, random.Random(2), target_fpr=0.05)
    assert 0.02 <= (f.score(x) >= f.decision).mean() <= 0.08


def test_seeded_fit_is_reproducible_and_round_trips():
    x = _normal()
    a = IsolationForest.fit(x, random.Random(3))
    b = IsolationForest.fit(x, random.Random(3))
    assert np.array_equal(a.score(x[:50]), b.score(x[:50]))
    c = IsolationForest.from_dict(a.to_dict())
    assert np.allclose(a.score(x[:50]), c.score(x[:50])) and c.decision == a.decision


def test_refuses_too_few_or_non_finite_rows():
    with pytest.raises(ValueError):
        IsolationForest.fit(_normal(MIN_FIT_ROWS - 1), random.Random(0))
    bad = _normal()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError):
        IsolationForest.fit(bad, random.Random(0))


def test_constant_rows_still_fit():
    f = IsolationForest.fit(np.full((100, 3), 0.2, np.float32), random.Random(0))
    assert np.isfinite(f.score(np.array([[0.2, 0.2, 0.2], [0.9, 0.9, 0.9]], np.float32))).all()


def test_c_factor_small_values():
    assert c_factor(1) == 0.0 and c_factor(2) == 1.0 and c_factor(256) > 9


def test_context_rows_zero_difference_without_neighbours():
    xs = np.ones((2, 8), np.float32)
    xn = np.zeros((2, 8, 8), np.float32)
    m = np.zeros((2, 8), np.float32)
    m[0, 0] = 1
    r = context_rows(xs, xn, m)
    assert r.shape == (2, 16) and (r[0, 8:] == 1).all() and (r[1, 8:] == 0).all()
