"""Loop lag as data: how late the daemon ran our timer, and the dead-time grace it earns.

A keepalive the kernel delivered while the daemon was not scheduled is not evidence against the
neighbour. The daemon measures how late its one timer fires and reports it (`note`); the core never
reads a clock.

Rules:
- The moving average L of the reported lags has weight LOOP_LAG_EWMA_WEIGHT per sample and is
  forgotten after LOOP_LAG_MEMORY_S without samples. Samples are clamped to [0, LOOP_LAG_GRACE_MAX_S].
- While L >= LOOP_LAG_MIN_S, an UP neighbour is declared dead LOOP_LAG_GRACE_FACTOR x L later (at most
  LOOP_LAG_GRACE_MAX_S): a host too busy to run us on time delays the peer's keepalives too. A single
  stall moves the average by a twentieth of itself; on a quiet host the grace is 0.
- The last LOOP_LAG_PEAKS lags of at least LOOP_LAG_MIN_S are kept with the time they were reported,
  so a caller can ask for the worst lag since an instant (`peak_since`: the anomaly service's
  record of this node's own stalls per tick). Bounded: older peaks fall out.
"""

from __future__ import annotations

from collections import deque

LOOP_LAG_MIN_S = 0.01
"""Timer lateness below this is normal scheduling noise and changes nothing."""
LOOP_LAG_GRACE_FACTOR = 2.0
"""Dead-time grace per second of recent loop lag (the peer, on the same loaded host, lags too)."""
LOOP_LAG_GRACE_MAX_S = 2.0
LOOP_LAG_MEMORY_S = 10.0
"""Without a lag sample for this long, the average is forgotten."""
LOOP_LAG_EWMA_WEIGHT = 0.05
"""Weight of one timer's lag in the moving average (the daemon reports ~10-50 per second)."""
LOOP_LAG_PEAKS = 64
"""Lags of at least LOOP_LAG_MIN_S kept with their time, for `peak_since`."""


class LoopLag:
    def __init__(self) -> None:
        self._avg_s = 0.0
        self._at_s = -1e9
        self.max_s = 0.0
        self._peaks: deque[tuple[float, float]] = deque(maxlen=LOOP_LAG_PEAKS)

    def note(self, lag_s: float, now: float) -> None:
        lag_s = min(max(0.0, lag_s), LOOP_LAG_GRACE_MAX_S)
        self.max_s = max(self.max_s, lag_s)
        if lag_s >= LOOP_LAG_MIN_S:
            self._peaks.append((now, lag_s))
        if now - self._at_s > LOOP_LAG_MEMORY_S:
            self._avg_s = 0.0
        self._avg_s += LOOP_LAG_EWMA_WEIGHT * (lag_s - self._avg_s)
        self._at_s = now

    def grace(self, now: float) -> float:
        """Extra dead time for UP neighbours at `now`."""
        if now - self._at_s > LOOP_LAG_MEMORY_S or self._avg_s < LOOP_LAG_MIN_S:
            return 0.0
        return min(LOOP_LAG_GRACE_MAX_S, LOOP_LAG_GRACE_FACTOR * self._avg_s)

    def peak_since(self, since: float) -> float:
        """The worst lag reported at or after `since` (0 when none reached LOOP_LAG_MIN_S)."""
        return max((lag for at, lag in self._peaks if at >= since), default=0.0)
