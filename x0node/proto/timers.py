"""Timer bookkeeping of the sans-I/O core: deadlines, the cached next wake-up, and jitter.

The daemon runs one loop timer per core, armed at `next_timer()`. Computing that minimum means
visiting every deadline (per interface, per neighbour), so the core caches it.

Rules:
- `Wakeup.at` is a lower bound of every deadline in the core, or None when it must be recomputed.
  Moving a deadline earlier must lower it (`Deadline.set` / `Deadline.arm` do so); moving one later or
  clearing it may leave it too low, which costs one tick that finds nothing due, never a missed timer.
  A change that can move a derived deadline (one computed, not stored: a neighbour's dead time) earlier
  calls `Wakeup.recompute()`.
- A `Deadline` is one optional timer: `arm(t)` keeps the earlier of the current and `t`, `set(t)`
  replaces it, `take(now)` clears and reports it when it is due.
- Every periodic timer is jittered by `jittered()` (uniform +-JITTER_FRACTION of its period) so nodes
  never run in lock step; the randomness is the caller's seeded `random.Random`, never a global one.
"""

from __future__ import annotations

import random

JITTER_FRACTION = 0.25
"""Periodic timers vary uniformly by this fraction of their period."""


def jittered(base_s: float, rng: random.Random, fraction: float = JITTER_FRACTION) -> float:
    """`base_s` varied uniformly within +-`fraction` of itself."""
    return base_s * (1.0 + rng.uniform(-fraction, fraction))


class Wakeup:
    """The core's next wake-up time, cached: a lower bound of every deadline, or None (recompute)."""

    __slots__ = ("at",)

    def __init__(self, at: float | None = None) -> None:
        self.at = at

    def arm(self, t: float) -> None:
        """A deadline was set to `t`: keep the cache a lower bound."""
        if self.at is not None and t < self.at:
            self.at = t

    def recompute(self) -> None:
        self.at = None


class Deadline:
    """One optional timer of the core, keeping the shared `Wakeup` a lower bound."""

    __slots__ = ("at", "_wake")

    def __init__(self, wake: Wakeup, at: float | None = None) -> None:
        self._wake = wake
        self.at = at
        if at is not None:
            wake.arm(at)

    def set(self, t: float) -> None:
        self.at = t
        self._wake.arm(t)

    def arm(self, t: float) -> None:
        """Due at `t` unless already due earlier."""
        if self.at is None or t < self.at:
            self.set(t)

    def clear(self) -> None:
        self.at = None

    def due(self, now: float) -> bool:
        return self.at is not None and now >= self.at

    def take(self, now: float) -> bool:
        """True (and cleared) if due at `now`."""
        if self.at is not None and now >= self.at:
            self.at = None
            return True
        return False
