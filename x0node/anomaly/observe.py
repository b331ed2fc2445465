"""Observe mode: a new detector only records its predictions until it has earned trust on this node.

Phases (seed 6.2): OBSERVE -> VALIDATE -> CONFIDENCE -> ACTIVE.
- OBSERVE: predictions are recorded, never acted on; lasts at least `min_observe_s` and
  `min_predictions` predictions.
- VALIDATE: recorded predictions get ground truth (`record_outcome`: an operator's verdict or later
  evidence such as a confirming rule or a neighbour going down); until `min_outcomes` are known.
- CONFIDENCE: precision and false-positive rate are estimated over the last `window` outcomes;
  ACTIVE is entered when precision >= `min_precision` (0.95) and FPR <= `max_fpr` (0.05) and the window
  holds at least `min_positive_outcomes` flagged predictions.
- ACTIVE: predictions are acted on (`acting` is true). If the window estimate falls below
  `demote_precision` or above `demote_fpr` the mode goes back to CONFIDENCE (hysteresis).
- A manual override ("active" or "observe") pins `acting` regardless of phase until cleared; the phase
  machine keeps running underneath.
Invariants: the outcome window is bounded; unknown prediction ids are ignored (counted); the whole
state round-trips through `to_dict`/`from_dict` (persisted by the service). Sans-I/O: `now` is passed.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass
from typing import Any

MAX_PENDING = 4096


class Phase(enum.Enum):
    OBSERVE = "observe"
    VALIDATE = "validate"
    CONFIDENCE = "confidence"
    ACTIVE = "active"


@dataclass(frozen=True)
class ObserveConfig:
    min_observe_s: float = 14 * 24 * 3600.0  # two weeks (seed: 2-4 weeks)
    min_predictions: int = 1000
    min_outcomes: int = 200
    window: int = 500
    min_positive_outcomes: int = 20
    min_precision: float = 0.95
    max_fpr: float = 0.05
    demote_precision: float = 0.90
    demote_fpr: float = 0.10


@dataclass(frozen=True)
class PhaseChanged:
    old: str
    new: str
    precision: float | None
    fpr: float | None
    at_s: float
    reason: str


class ObserveMode:
    def __init__(self, config: ObserveConfig, now: float) -> None:
        self.config = config
        self.phase = Phase.OBSERVE
        self.started_s = now
        self.predictions = 0
        self.outcomes_total = 0
        self.unknown_outcomes = 0
        self.override: str | None = None
        # prediction id -> predicted anomalous (awaiting an outcome), insertion-ordered and bounded
        self._pending: collections.OrderedDict[int, bool] = collections.OrderedDict()
        self._window: collections.deque[tuple[bool, bool]] = collections.deque(maxlen=config.window)
        self._next_id = 1
        self._events: collections.deque[PhaseChanged] = collections.deque(maxlen=64)

    # ---- inputs
    def record_prediction(self, anomalous: bool, now: float) -> int:
        """Record one prediction; returns its id for a later `record_outcome`."""
        pid = self._next_id
        self._next_id += 1
        self.predictions += 1
        self._pending[pid] = bool(anomalous)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        self._advance(now)
        return pid

    def record_outcome(self, prediction_id: int, was_anomaly: bool, now: float) -> bool:
        """Ground truth for a recorded prediction. Returns False for an unknown/expired id."""
        predicted = self._pending.pop(prediction_id, None)
        if predicted is None:
            self.unknown_outcomes += 1
            return False
        self._window.append((predicted, bool(was_anomaly)))
        self.outcomes_total += 1
        self._advance(now)
        return True

    def set_override(self, mode: str | None, now: float) -> None:
        if mode not in (None, "active", "observe"):
            raise ValueError("override must be 'active', 'observe' or None")
        old = self.override
        self.override = mode
        if old != mode:
            self._events.append(PhaseChanged(self.phase.value, self.phase.value, *self.estimate(), now,
                                             f"override {old} -> {mode}"))

    def tick(self, now: float) -> None:
        self._advance(now)

    # ---- outputs
    @property
    def acting(self) -> bool:
        if self.override is not None:
            return self.override == "active"
        return self.phase is Phase.ACTIVE

    def estimate(self) -> tuple[float | None, float | None]:
        """(precision, fpr) over the outcome window; None when undefined."""
        tp = sum(1 for p, a in self._window if p and a)
        fp = sum(1 for p, a in self._window if p and not a)
        tn = sum(1 for p, a in self._window if not p and not a)
        precision = tp / (tp + fp) if tp + fp else None
        fpr = fp / (fp + tn) if fp + tn else None
        return precision, fpr

    def next_event(self) -> PhaseChanged | None:
        return self._events.popleft() if self._events else None

    def _flagged_in_window(self) -> int:
        return sum(1 for p, _ in self._window if p)

    def _advance(self, now: float) -> None:
        c = self.config
        for _ in range(4):  # at most one step per phase per call
            old = self.phase
            precision, fpr = self.estimate()
            reason = ""
            if self.phase is Phase.OBSERVE:
                if now - self.started_s >= c.min_observe_s and self.predictions >= c.min_predictions:
                    self.phase, reason = Phase.VALIDATE, "observation period complete"
            elif self.phase is Phase.VALIDATE:
                if len(self._window) >= c.min_outcomes:
                    self.phase, reason = Phase.CONFIDENCE, "enough validated predictions"
            elif self.phase is Phase.CONFIDENCE:
                if (
                    precision is not None
                    and fpr is not None
                    and self._flagged_in_window() >= c.min_positive_outcomes
                    and precision >= c.min_precision
                    and fpr <= c.max_fpr
                ):
                    self.phase, reason = Phase.ACTIVE, "precision and FPR within bounds"
            elif self.phase is Phase.ACTIVE:
                if (precision is not None and precision < c.demote_precision) or (
                    fpr is not None and fpr > c.demote_fpr
                ):
                    self.phase, reason = Phase.CONFIDENCE, "precision or FPR degraded"
            if self.phase is old:
                return
            self._events.append(PhaseChanged(old.value, self.phase.value, precision, fpr, now, reason))

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "started_s": self.started_s,
            "predictions": self.predictions,
            "outcomes_total": self.outcomes_total,
            "override": self.override,
            "window": [[p, a] for p, a in self._window],
            "pending": [[k, v] for k, v in self._pending.items()],
            "next_id": self._next_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: ObserveConfig, now: float) -> ObserveMode:
        """Restore a persisted state; anything malformed gives a fresh OBSERVE state."""
        m = cls(config, now)
        try:
            phase = Phase(d["phase"])
            override = d.get("override")
            if override not in (None, "active", "observe"):
                raise ValueError("bad override")
            window = [(bool(p), bool(a)) for p, a in d.get("window", [])][-config.window :]
            pending = [(int(k), bool(v)) for k, v in d.get("pending", [])][-MAX_PENDING:]
            m.phase = phase
            m.started_s = float(d["started_s"])
            m.predictions = int(d["predictions"])
            m.outcomes_total = int(d.get("outcomes_total", 0))
            m.override = override
            m._window.extend(window)
            m._pending.update(pending)
            m._next_id = max(int(d.get("next_id", 1)), max((k for k, _ in pending), default=0) + 1)
        except (KeyError, TypeError, ValueError):
            return cls(config, now)
        return m

    def status(self) -> dict[str, Any]:
        precision, fpr = self.estimate()
        return {
            "phase": self.phase.value,
            "acting": self.acting,
            "override": self.override,
            "predictions": self.predictions,
            "outcomes": len(self._window),
            "precision": None if precision is None else round(precision, 4),
            "fpr": None if fpr is None else round(fpr, 4),
        }
