"""Feature drift: population stability index (PSI) per feature against the training distribution.

Rules and invariants:
- The reference is the training histogram of each normalised feature over `bins` equal-width bins
  of [0, 1], shipped in anomaly_model.json. The live window keeps the bin of each of the last
  `window_rows` rows (bounded), counted incrementally.
- PSI_f = sum_b (a_b - e_b) * ln(a_b / e_b) with both proportions floored at PSI_EPS.
- Checked only with at least `min_rows` rows in the window. A `DriftDetected` event is returned when
  some feature's PSI >= `threshold` (default 0.25, the usual "significant shift" level) and no drift
  event was raised in the last `cooldown_s`; `DriftCleared` when every feature is back below
  threshold / 2 after a drift. Sans-I/O: the caller passes `now`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

PSI_EPS = 1e-4
PSI_THRESHOLD = 0.25
DRIFT_WINDOW_ROWS = 2000
DRIFT_MIN_ROWS = 300
DRIFT_COOLDOWN_S = 3600.0


@dataclass(frozen=True)
class DriftDetected:
    features: tuple[str, ...]  # features whose PSI >= threshold, worst first
    psi: tuple[float, ...]  # their PSI values
    rows: int
    at_s: float


@dataclass(frozen=True)
class DriftCleared:
    at_s: float


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI per row of [f, bins] proportion tables."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_EPS)
    return ((a - e) * np.log(a / e)).sum(axis=-1)


class DriftMonitor:
    def __init__(
        self,
        feature_names: tuple[str, ...],
        train_hist: np.ndarray,
        threshold: float = PSI_THRESHOLD,
        window_rows: int = DRIFT_WINDOW_ROWS,
        min_rows: int = DRIFT_MIN_ROWS,
        cooldown_s: float = DRIFT_COOLDOWN_S,
    ) -> None:
        self.names = tuple(feature_names)
        self.expected = np.asarray(train_hist, dtype=np.float64)
        if self.expected.shape[0] != len(self.names) or self.expected.ndim != 2:
            raise ValueError("train_hist must be [features, bins]")
        self.bins = self.expected.shape[1]
        self.threshold = threshold
        self.min_rows = min_rows
        self.cooldown_s = cooldown_s
        self._rows: collections.deque[np.ndarray] = collections.deque(maxlen=window_rows)
        self._counts = np.zeros_like(self.expected)
        self._last_event_s: float | None = None
        self.drifting = False
        self.last_psi = np.zeros(len(self.names))

    def _bin(self, x: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(x, dtype=np.float64) * self.bins).astype(np.int64), 0, self.bins - 1)

    def add(self, x_norm: np.ndarray) -> None:
        """Add normalised rows [n, f] to the window."""
        cols = np.arange(len(self.names))
        for b in self._bin(np.asarray(x_norm).reshape(-1, len(self.names))):
            if len(self._rows) == self._rows.maxlen:
                self._counts[cols, self._rows[0]] -= 1
            self._rows.append(b)
            self._counts[cols, b] += 1

    def check(self, now: float) -> DriftDetected | DriftCleared | None:
        n = len(self._rows)
        if n < self.min_rows:
            return None
        self.last_psi = psi(self.expected, self._counts / n)
        worst = np.argsort(-self.last_psi)
        over = [int(i) for i in worst if self.last_psi[i] >= self.threshold]
        if over:
            if self._last_event_s is not None and now - self._last_event_s < self.cooldown_s:
                return None
            self._last_event_s = now
            self.drifting = True
            return DriftDetected(
                tuple(self.names[i] for i in over), tuple(round(float(self.last_psi[i]), 4) for i in over), n, now
            )
        if self.drifting and (self.last_psi < self.threshold / 2).all():
            self.drifting = False
            return DriftCleared(now)
        return None

    def status(self) -> dict[str, object]:
        return {
            "rows": len(self._rows),
            "drifting": self.drifting,
            "psi": {name: round(float(v), 4) for name, v in zip(self.names, self.last_psi, strict=True)},
        }
