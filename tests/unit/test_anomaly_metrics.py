import numpy as np

from x0lab.anomaly.metrics import auc, best_f1_threshold, evaluate


def test_confusion_derived_metrics():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.1, 0.0, 0.3])
    r = evaluate(y, s, 0.5)
    assert (r.tp, r.fp, r.tn, r.fn) == (2, 1, 4, 1)
    assert r.precision == 2 / 3 and r.recall == 2 / 3 and r.fpr == 1 / 5


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert abs(auc(y, s) - brute) < 1e-12


def test_degenerate_cases_do_not_divide_by_zero():
    assert auc(np.zeros(5), np.arange(5)) == 0.0
    assert evaluate(np.zeros(3), np.zeros(3), 1.0).precision == 0.0


def test_best_f1_threshold_separates_separable_data():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    t = best_f1_threshold(y, s)
    assert evaluate(y, s, t).f1 == 1.0


def test_threshold_for_precision_takes_the_most_recall_at_that_precision():
    from x0lab.anomaly.metrics import threshold_for_precision

    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert threshold_for_precision(y, s, 1.0) == 0.8
    assert threshold_for_precision(y, s, 0.75) == 0.6
    assert threshold_for_precision(np.zeros(3), np.arange(3.0), 0.9) == best_f1_threshold(np.zeros(3), np.arange(3.0))
