"""Alarms from verdicts: when a node's per-evaluation verdicts become an alarm a router acts on (sans-I/O).

A detector's verdict is per evaluation (tick); what an operator or the healing loop sees is an
alarm: raised once, held while the fault lasts, cleared once. Acting on every anomalous tick turns
one noisy stretch into many alarms and a single stray tick into an alarm of its own.

Rules and invariants:
- `AlarmPolicy(raise_ticks, clear_ticks, guard_s)`: an alarm is raised after `raise_ticks`
  consecutive anomalous verdicts and cleared after `clear_ticks` consecutive normal ones
  (hysteresis: anomalous ticks while raised, and normal stretches shorter than `clear_ticks`, merge
  into the alarm already raised). No alarm is raised within `guard_s` of the first evaluation (a
  node starting up sees its adjacencies form, which its link-change window counts); a verdict run
  that reaches `raise_ticks` inside the guard raises when the guard ends if it still holds.
- `AlarmPolicy()` (1, 1, 0) is "every anomalous tick is the alarm", the behaviour without a policy.
- `AlarmState.update(anomalous, now)` steps one node's state and returns "raise", "clear" or None;
  `raised` is the state after the step. Pure: the caller passes `now` (monotonic seconds).
- `alarm_series(policy, t, anomalous, starts)` applies the same machine to time-ordered verdict
  series at once (vectorised, for evaluating many operating points; `starts` marks where each
  node's series begins, default: one series); a unit test holds it equal to stepping `AlarmState`
  tick by tick.
- Bounds: 1 <= raise_ticks, clear_ticks <= MAX_TICKS; 0 <= guard_s <= MAX_GUARD_S; anything else is
  a ValueError at construction (policies come from the verified bundle or the validated config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TICKS = 32
MAX_GUARD_S = 3600.0


@dataclass(frozen=True)
class AlarmPolicy:
    raise_ticks: int = 1
    clear_ticks: int = 1
    guard_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("raise_ticks", "clear_ticks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_TICKS:
                raise ValueError(f"{name} must be an integer in 1..{MAX_TICKS}")
        g = self.guard_s
        if isinstance(g, bool) or not isinstance(g, int | float) or not 0.0 <= float(g) <= MAX_GUARD_S:
            raise ValueError(f"guard_s must be in 0..{MAX_GUARD_S:g}")

    @classmethod
    def from_dict(cls, d: Any) -> AlarmPolicy:
        if not isinstance(d, dict):
            raise ValueError("an alarm policy must be an object")
        return cls(d.get("raise_ticks", 1), d.get("clear_ticks", 1), float(d.get("guard_s", 0.0)))

    def as_dict(self) -> dict[str, Any]:
        return {"raise_ticks": self.raise_ticks, "clear_ticks": self.clear_ticks, "guard_s": self.guard_s}


class AlarmState:
    """One node's alarm under a policy."""

    def __init__(self, policy: AlarmPolicy) -> None:
        self.policy = policy
        self.raised = False
        self._run = 0  # consecutive verdicts equal to the last one
        self._last: bool | None = None
        self._start: float | None = None

    def update(self, anomalous: bool, now: float) -> str | None:
        if self._start is None:
            self._start = now
        anomalous = bool(anomalous)
        self._run = self._run + 1 if anomalous == self._last else 1
        self._last = anomalous
        p = self.policy
        if not self.raised and anomalous and self._run >= p.raise_ticks and now - self._start >= p.guard_s:
            self.raised = True
            return "raise"
        if self.raised and not anomalous and self._run >= p.clear_ticks:
            self.raised = False
            return "clear"
        return None


def alarm_series(policy: AlarmPolicy, t: np.ndarray, anomalous: np.ndarray,
                 starts: np.ndarray | None = None) -> np.ndarray:
    """The raised state after each verdict of time-ordered series (AlarmState's machine, restarted
    wherever `starts` is true; position 0 always starts one)."""
    a = np.asarray(anomalous, dtype=bool)
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=bool)
    idx = np.arange(n)
    first = np.zeros(n, dtype=bool) if starts is None else np.asarray(starts, dtype=bool).copy()
    first[0] = True
    change = first | np.r_[True, a[1:] != a[:-1]]
    run = idx - np.maximum.accumulate(np.where(change, idx, 0)) + 1  # length of the equal run ending here
    tt = np.asarray(t, dtype=np.float64)
    t_start = tt[np.maximum.accumulate(np.where(first, idx, 0))]
    set_ = a & (run >= policy.raise_ticks) & (tt - t_start >= policy.guard_s)
    reset = (~a & (run >= policy.clear_ticks)) | (first & ~set_)  # a new series starts cleared
    last_set = np.maximum.accumulate(np.where(set_, idx, -1))
    last_reset = np.maximum.accumulate(np.where(reset, idx, -1))
    return last_set > last_reset
