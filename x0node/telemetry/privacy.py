"""Differential-privacy noise for counts that leave the node (pure; the rng is injected).

Rules:
- the Laplace mechanism: a count c with sensitivity s released under epsilon is c + Laplace(s/epsilon);
  one packet (or one TCP event) changes one count by 1, so s = 1 for every counter we publish;
- epsilon <= 0 or None means "no noise" (the operator's explicit choice, shown in status);
- released values are rounded and clamped at 0 (post-processing, which keeps the guarantee);
- each release spends epsilon again: a series of releases of the same counter composes, which the
  docs state plainly; the caller decides how often to release.
"""

from __future__ import annotations

import math
import random

EPSILON_MIN = 1e-3
EPSILON_MAX = 100.0


def validate_epsilon(epsilon: float | None) -> float | None:
    if epsilon is None or epsilon == 0:
        return None
    if not (EPSILON_MIN <= epsilon <= EPSILON_MAX) or math.isnan(epsilon):
        raise ValueError(f"epsilon must be 0 (off) or between {EPSILON_MIN} and {EPSILON_MAX}")
    return float(epsilon)


def laplace(rng: random.Random, scale: float) -> float:
    """One sample of Laplace(0, scale) by inverse transform of a uniform draw from `rng`."""
    if scale <= 0:
        return 0.0
    u = rng.random() - 0.5  # in [-0.5, 0.5)
    if u == -0.5:
        u = -0.5 + 1e-12
    return -scale * math.copysign(1.0, u) * math.log(1.0 - 2.0 * abs(u))


def noisy_count(value: int, epsilon: float | None, rng: random.Random, sensitivity: float = 1.0) -> int:
    """`value` released under epsilon-DP (rounded, never negative); exact when epsilon is None."""
    if epsilon is None:
        return value
    return max(0, round(value + laplace(rng, sensitivity / epsilon)))


def noisy_counts(values: dict[str, int], epsilon: float | None, rng: random.Random) -> dict[str, int]:
    """Noise each count independently, in sorted key order so a seeded rng gives a fixed result."""
    return {k: noisy_count(values[k], epsilon, rng) for k in sorted(values)}
