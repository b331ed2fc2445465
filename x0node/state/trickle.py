"""The Trickle algorithm (RFC 6206): how often a node announces its state digest on one link.

Rules (RFC 6206 section 4.2, with the names used there):
- The interval I lies in [Imin, Imax]. Each interval starts with counter c = 0 and a transmission time t
  drawn uniformly from [I/2, I).
- At t the node transmits if c < k (`fire` returns True); hearing a consistent transmission increments c
  (`heard_consistent`), so on a quiet, consistent link about k transmissions happen per interval.
- When I expires, I doubles (at most Imax) and a new interval starts.
- An inconsistency (`reset`: a differing digest heard, new data, a new neighbour) sets I = Imin and
  starts a new interval, unless I already equals Imin (section 4.2 step 6).
Sans-I/O: times are the caller's monotonic seconds and randomness comes from the given rng.
"""

from __future__ import annotations

import random


class Trickle:
    def __init__(self, imin_s: float, imax_s: float, k: int, rng: random.Random, now: float) -> None:
        if not 0 < imin_s <= imax_s or k < 1:
            raise ValueError("need 0 < Imin <= Imax and k >= 1")
        self.imin_s = imin_s
        self.imax_s = imax_s
        self.k = k
        self.rng = rng
        self.interval_s = imin_s
        self.c = 0
        self.resets = 0
        self._start(now)

    def _start(self, now: float) -> None:
        self.c = 0
        self.begin_s = now
        self.end_s = now + self.interval_s
        self.t_s: float | None = now + self.rng.uniform(self.interval_s / 2, self.interval_s)

    def reset(self, now: float) -> None:
        if self.interval_s > self.imin_s or self.t_s is None:
            self.interval_s = self.imin_s
            self.resets += 1
            self._start(now)

    def heard_consistent(self) -> None:
        self.c += 1

    def next_time(self) -> float:
        return self.end_s if self.t_s is None else min(self.t_s, self.end_s)

    def fire(self, now: float) -> bool:
        """Advance to `now`; True if a transmission is due now."""
        send = False
        if self.t_s is not None and now >= self.t_s:
            send = self.c < self.k
            self.t_s = None
        if now >= self.end_s:
            self.interval_s = min(self.interval_s * 2, self.imax_s)
            self._start(self.end_s if now - self.end_s < self.interval_s else now)
            if self.t_s is not None and now >= self.t_s:  # a long stall: do not skip the announcement
                send = send or self.c < self.k
                self.t_s = None
        return send
