"""Link quality classes (the seed's thresholds) and the link cost derived from measurements.

Rules:
- Classes, best first: EXCELLENT (loss < 0.1 %, RTT < 10 ms, throughput > 100 Mbit/s), GOOD (< 1 %,
  < 50 ms, > 50 Mbit/s), FAIR (< 3 %, < 100 ms, > 10 Mbit/s), POOR (< 5 %, < 200 ms, > 1 Mbit/s),
  BAD otherwise. A link gets the best class whose every threshold it meets; throughput is ignored
  while unknown. Latency here is the measured round-trip time.
- Cost = COST_SCALE * ETX + RTT / COST_RTT_MS_PER_UNIT + throughput penalty, clamped to [1, COST_MAX];
  ETX = 1 / (1 - loss)^2 (loss seen in one direction, assumed symmetric).
- Pure functions only.
"""

from __future__ import annotations

import enum

from x0node.proto.protocol import COST_MAX, COST_RTT_MS_PER_UNIT, COST_SCALE


class Quality(enum.IntEnum):
    EXCELLENT = 0
    GOOD = 1
    FAIR = 2
    POOR = 3
    BAD = 4


# (class, max loss fraction (exclusive), max rtt ms (exclusive), min throughput bps (exclusive))
QUALITY_THRESHOLDS: tuple[tuple[Quality, float, float, float], ...] = (
    (Quality.EXCELLENT, 0.001, 10.0, 100e6),
    (Quality.GOOD, 0.01, 50.0, 50e6),
    (Quality.FAIR, 0.03, 100.0, 10e6),
    (Quality.POOR, 0.05, 200.0, 1e6),
)
THROUGHPUT_REFERENCE_BPS = 100e6
"""A link this fast or faster pays no throughput penalty; slower links pay COST_SCALE * (ref/bps - 1),
capped at 10 * COST_SCALE."""


def classify(loss: float, rtt_ms: float, throughput_bps: float | None = None) -> Quality:
    for q, max_loss, max_rtt, min_bps in QUALITY_THRESHOLDS:
        if loss < max_loss and rtt_ms < max_rtt and (throughput_bps is None or throughput_bps > min_bps):
            return q
    return Quality.BAD


def link_cost(loss: float, rtt_ms: float, throughput_bps: float | None = None) -> int:
    loss = min(max(loss, 0.0), 0.99)
    etx = 1.0 / ((1.0 - loss) ** 2)
    cost = COST_SCALE * etx + max(rtt_ms, 0.0) / COST_RTT_MS_PER_UNIT
    if throughput_bps is not None and throughput_bps > 0:
        cost += min(10 * COST_SCALE, COST_SCALE * max(0.0, THROUGHPUT_REFERENCE_BPS / throughput_bps - 1.0))
    return int(min(COST_MAX, max(1, round(cost))))
