"""Bounded, time-windowed replay filter for salts and session ids.

Invariants:
- Exact membership (two generations of plain sets): no false positives, as SIP022 section 3.1.4
  requires (no Bloom filters).
- A salt added at time t is remembered at least until t + window_s, unless more than `capacity`
  salts arrive inside one window; then the oldest generation is dropped early (memory stays
  bounded at `capacity` entries; the trade-off is documented in docs/transport.md).
- Time comes from the caller (`now`, seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

REPLAY_WINDOW_S = 60.0
REPLAY_CAPACITY = 200_000


class ReplayFilter:
    def __init__(self, window_s: float = REPLAY_WINDOW_S, capacity: int = REPLAY_CAPACITY) -> None:
        if window_s <= 0 or capacity < 2:
            raise ValueError("window_s must be > 0 and capacity >= 2")
        self.window_s = window_s
        self.capacity = capacity
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()
        self._current_started: float | None = None
        self.evicted_early = 0  # generations dropped before their window because of capacity

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def _rotate(self, now: float) -> None:
        if self._current_started is None:
            self._current_started = now
            return
        age = now - self._current_started
        if age >= 2 * self.window_s:
            self._previous = set()
            self._current = set()
            self._current_started = now
        elif age >= self.window_s:
            self._previous = self._current
            self._current = set()
            self._current_started = now
        elif len(self._current) >= self.capacity // 2:
            if self._previous:
                self.evicted_early += 1
            self._previous = self._current
            self._current = set()
            self._current_started = now

    def seen(self, key: bytes, now: float) -> bool:
        self._rotate(now)
        return key in self._current or key in self._previous

    def check_and_add(self, key: bytes, now: float) -> bool:
        """True if `key` is new (and is now remembered); False if it is a replay."""
        self._rotate(now)
        if key in self._current or key in self._previous:
            return False
        self._current.add(key)
        return True


PACKET_WINDOW = 1024


class SlidingWindow:
    """Per-session packet-id filter (SIP022 section 3.2.4): rejects duplicates and ids older
    than `size` behind the highest id seen. Constant memory (one int bitmap)."""

    __slots__ = ("size", "_top", "_bits")

    def __init__(self, size: int = PACKET_WINDOW) -> None:
        self.size = size
        self._top = -1
        self._bits = 0

    def check_and_add(self, packet_id: int) -> bool:
        top = self._top
        if packet_id > top:
            shift = packet_id - top
            self._bits = ((self._bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self._top = packet_id
            return True
        back = top - packet_id
        if back >= self.size:
            return False
        mask = 1 << back
        if self._bits & mask:
            return False
        self._bits |= mask
        return True
