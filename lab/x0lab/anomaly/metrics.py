"""Detection metrics: precision, recall, F1, false-positive rate, ROC AUC, threshold choice.

Rules: labels are 0/1 arrays; scores are any real numbers where larger means more anomalous; a
prediction is positive when score >= threshold. Undefined ratios (0/0) are reported as 0.0. AUC is the
Mann-Whitney statistic with ties counted as one half. Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    fpr: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "fpr": round(self.fpr, 4),
            "auc": round(self.auc, 4),
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def confusion(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    tn = int((~y & ~pred).sum())
    fn = int((y & ~pred).sum())
    return tp, fp, tn, fn


def auc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.0
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(y: np.ndarray, score: np.ndarray, threshold: float) -> Scores:
    tp, fp, tn, fn = confusion(y, np.asarray(score) >= threshold)
    p = _ratio(tp, tp + fp)
    r = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return Scores(p, r, f1, _ratio(fp, fp + tn), auc(y, score), tp, fp, tn, fn)


def _cuts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every threshold at once: scores sorted high to low, with the true and false positives of the
    cut `score >= s_sorted[i]` at i, and a mask of the positions where a cut is real (the last of a
    run of equal scores; cutting inside a tie is not possible)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    tp = np.cumsum(y[order])
    fp = np.cumsum(~y[order])
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    return s_sorted, tp, fp, last


def best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The threshold that maximises F1 on (y, score) (ties -> the higher threshold)."""
    s_sorted, tp, fp, last = _cuts(y, score)
    n_pos = int(np.asarray(y).astype(bool).sum())
    f1 = np.where(last, 2 * tp / (tp + fp + n_pos), -1.0)
    i = int(np.argmax(f1))
    return float(s_sorted[i])


def threshold_for_precision(y: np.ndarray, score: np.ndarray, min_precision: float) -> float:
    """The lowest threshold whose precision on (y, score) is >= min_precision (most recall at that
    precision); the max-F1 threshold when no threshold reaches it."""
    s_sorted, tp, fp, last = _cuts(y, score)
    ok = np.nonzero(last & (tp / np.maximum(tp + fp, 1) >= min_precision) & (tp > 0))[0]
    if len(ok) == 0:
        return best_f1_threshold(y, score)
    return float(s_sorted[ok.max()])
