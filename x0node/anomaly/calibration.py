"""On-device threshold recalibration of a detector's decision threshold.

Rules and invariants:
- Input: scores of rows believed normal on this node (validated false alarms and rows no layer
  flagged) and a target false-positive rate. New threshold = the (1 - target_fpr) quantile of those
  scores, but never below the shipped threshold (recalibration only makes a detector stricter on
  this node, so it can never start flagging what the shipped model considered normal) and never
  above shipped + max_raise.
- Needs at least MIN_CALIBRATION_ROWS scores; otherwise the current threshold is kept.
- Pure function; no I/O.
"""

from __future__ import annotations

import numpy as np

MIN_CALIBRATION_ROWS = 200
DEFAULT_MAX_RAISE = 4.0  # logits


def recalibrate_threshold(
    normal_scores: np.ndarray,
    shipped: float,
    current: float,
    target_fpr: float = 0.01,
    max_raise: float = DEFAULT_MAX_RAISE,
) -> float:
    s = np.asarray(normal_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < MIN_CALIBRATION_ROWS or not 0.0 < target_fpr < 1.0:
        return current
    q = float(np.quantile(s, 1.0 - target_fpr))
    return float(min(max(q, shipped), shipped + max_raise))
