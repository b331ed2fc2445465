"""Sequence-number arithmetic with wraparound (RFC 1982 serial numbers) and sliding replay windows.

Rules:
- `seq_newer(a, b, bits)` is true when `a` is after `b` in serial order: 0 < (a - b) mod 2^bits < 2^(bits-1).
  Exactly half-way is "not newer" in both directions (RFC 1982 leaves it undefined; we refuse it).
- `ReplayWindow` accepts each sequence number at most once; numbers older than the window width behind
  the highest accepted are refused; the window never holds more than `width` bits of state.
"""

from __future__ import annotations

from dataclasses import dataclass


def seq_diff(a: int, b: int, bits: int = 32) -> int:
    """Signed distance a - b in serial arithmetic; in [-2^(bits-1), 2^(bits-1))."""
    mod = 1 << bits
    d = (a - b) % mod
    if d >= mod >> 1:
        d -= mod
    return d


def seq_newer(a: int, b: int, bits: int = 32) -> bool:
    mod = 1 << bits
    d = (a - b) % mod
    return 0 < d < (mod >> 1)


def seq_next(a: int, bits: int = 32) -> int:
    """Successor of a, skipping 0 (0 means "none yet" on the wire)."""
    n = (a + 1) % (1 << bits)
    return n if n != 0 else 1


@dataclass
class ReplayWindow:
    """Anti-replay bitmap in the style of RFC 4303 section 3.4.3, over `bits`-bit serial numbers."""

    width: int = 64
    bits: int = 32
    highest: int | None = None
    mask: int = 0  # bit i set = (highest - i) seen

    def check(self, seq: int) -> bool:
        """Would `seq` be accepted? Does not change state."""
        if not 0 <= seq < (1 << self.bits):
            return False
        if self.highest is None:
            return True
        d = seq_diff(seq, self.highest, self.bits)
        if d > 0:
            return True
        back = -d
        if back >= self.width:
            return False
        return not (self.mask >> back) & 1

    def accept(self, seq: int) -> bool:
        """Record `seq` if acceptable; return whether it was."""
        if not self.check(seq):
            return False
        if self.highest is None:
            self.highest, self.mask = seq, 1
            return True
        d = seq_diff(seq, self.highest, self.bits)
        if d > 0:
            self.mask = ((self.mask << d) | 1) & ((1 << self.width) - 1) if d < self.width else 1
            self.highest = seq
        else:
            self.mask |= 1 << (-d)
        return True

    def seen_in_last(self, n: int) -> int:
        """How many of the last `n` numbers up to `highest` were accepted (for loss estimates)."""
        n = min(n, self.width)
        return bin(self.mask & ((1 << n) - 1)).count("1")
