"""Feature drift: population stability index (PSI) per feature against this node's own history.

Rules and invariants:
- The reference is a histogram of each normalised feature over `bins` equal-width bins of [0, 1].
  By default it is the node's own: the first `reference_rows` rows it scored (its own normal, not a
  histogram pooled over other meshes); until it is complete nothing is checked. A fixed reference
  (e.g. the training histogram) may be given instead. `to_dict`/`from_dict` carry the reference (and
  the part still being built) across restarts; a malformed saved state starts a new reference.
  The live window keeps the bin of each of the last `window_rows` rows (bounded), counted
  incrementally.
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
DRIFT_WINDOW_ROWS = 500
"""About 4 h of ticks at the default 30 s interval."""
DRIFT_MIN_ROWS = 300
DRIFT_BINS = 10
REFERENCE_ROWS = 2000
"""About 17 h at 30 s: the node's own reference spans more than a day-night half-cycle."""
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
        train_hist: np.ndarray | None = None,
        threshold: float = PSI_THRESHOLD,
        window_rows: int = DRIFT_WINDOW_ROWS,
        min_rows: int = DRIFT_MIN_ROWS,
        cooldown_s: float = DRIFT_COOLDOWN_S,
        reference_rows: int = REFERENCE_ROWS,
        bins: int = DRIFT_BINS,
    ) -> None:
        self.names = tuple(feature_names)
        self.reference_rows = reference_rows
        self._ref_counts = np.zeros((len(self.names), bins))
        self._ref_n = 0
        if train_hist is None:
            self.expected: np.ndarray | None = None
            self.own_reference = True
        else:
            self.expected = np.asarray(train_hist, dtype=np.float64)
            if self.expected.ndim != 2 or self.expected.shape[0] != len(self.names):
                raise ValueError("train_hist must be [features, bins]")
            self.own_reference = False
            bins = self.expected.shape[1]
        self.bins = bins
        self.threshold = threshold
        self.min_rows = min_rows
        self.cooldown_s = cooldown_s
        self._rows: collections.deque[np.ndarray] = collections.deque(maxlen=window_rows)
        self._counts = np.zeros((len(self.names), bins))
        self._last_event_s: float | None = None
        self.drifting = False
        self.last_psi = np.zeros(len(self.names))

    def _bin(self, x: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(x, dtype=np.float64) * self.bins).astype(np.int64), 0, self.bins - 1)

    def add(self, x_norm: np.ndarray) -> None:
        """Add normalised rows [n, f] to the window."""
        cols = np.arange(len(self.names))
        for b in self._bin(np.asarray(x_norm).reshape(-1, len(self.names))):
            if self.expected is None:  # still learning this node's own reference
                self._ref_counts[cols, b] += 1
                self._ref_n += 1
                if self._ref_n >= self.reference_rows:
                    self.expected = self._ref_counts / self._ref_n
                continue
            if len(self._rows) == self._rows.maxlen:
                self._counts[cols, self._rows[0]] -= 1
            self._rows.append(b)
            self._counts[cols, b] += 1

    def check(self, now: float) -> DriftDetected | DriftCleared | None:
        n = len(self._rows)
        if n < self.min_rows or self.expected is None:
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

    def to_dict(self) -> dict[str, object]:
        """The own reference (finished, or the part built so far) for persistence."""
        return {"bins": self.bins, "features": list(self.names), "reference_rows": self._ref_n,
                "reference": None if self.expected is None or not self.own_reference
                else [[round(float(v), 6) for v in r] for r in self.expected],
                "building": [[int(v) for v in r] for r in self._ref_counts] if self.expected is None else None}

    def restore(self, d: object) -> bool:
        """Take a saved own reference back (False, nothing changed, when it does not fit this monitor)."""
        if not self.own_reference or not isinstance(d, dict) or d.get("features") != list(self.names) \
                or d.get("bins") != self.bins:
            return False
        try:
            ref = d.get("reference")
            if ref is not None:
                arr = np.asarray(ref, dtype=np.float64)
                if arr.shape != (len(self.names), self.bins) or not np.isfinite(arr).all() or (arr < 0).any():
                    return False
                self.expected, self._ref_n = arr, int(d.get("reference_rows", self.reference_rows))
                return True
            counts = np.asarray(d.get("building"), dtype=np.float64)
            n = int(d.get("reference_rows", 0))
            if counts.shape != (len(self.names), self.bins) or not np.isfinite(counts).all() or (counts < 0).any() \
                    or not 0 <= n < self.reference_rows:
                return False
        except (TypeError, ValueError):
            return False
        self._ref_counts, self._ref_n = counts, n
        return True

    def status(self) -> dict[str, object]:
        return {
            "reference": "own" if self.own_reference else "fixed",
            "reference_rows": self._ref_n if self.own_reference else None,
            "reference_ready": self.expected is not None,
            "rows": len(self._rows),
            "drifting": self.drifting,
            "psi": {name: round(float(v), 4) for name, v in zip(self.names, self.last_psi, strict=True)},
        }
