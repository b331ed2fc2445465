"""Link quality classes (the seed's thresholds) and the link cost derived from measurements.

Rules:
- Classes, best first: EXCELLENT (loss < 0.1 %, RTT < 10 ms, throughput > 100 Mbit/s), GOOD (< 1 %,
  < 50 ms, > 50 Mbit/s), FAIR (< 3 %, < 100 ms, > 10 Mbit/s), POOR (< 5 %, < 200 ms, > 1 Mbit/s),
  BAD otherwise. A link gets the best class whose every threshold it meets; throughput is ignored
  while unknown. Latency here is the measured round-trip time.
- Cost = COST_SCALE * ETX * max(1, THROUGHPUT_REFERENCE_BPS / throughput) + RTT / COST_RTT_MS_PER_UNIT,
  clamped to [1, COST_MAX]; ETX = 1 / (1 - loss)^2 (loss seen in one direction, assumed symmetric).
  The first term is the expected transmission time (ETT = ETX x size / bandwidth, Draves, Padhye and
  Zill, MobiCom 2004) of a packet in units of its time on a loss-free reference link: a link ten times
  slower costs ten times more, at every rate below the reference, so of two paths of equal hop count and
  delay the faster one is cheaper. A link at or above the reference, or of unknown throughput, costs
  what it did before throughput was measured (100 x ETX).
- Pure functions only.
"""

from __future__ import annotations

import enum

from x0node.proto.protocol import COST_MAX, COST_RTT_MS_PER_UNIT, COST_SCALE, THROUGHPUT_REFERENCE_BPS


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


def classify(loss: float, rtt_ms: float, throughput_bps: float | None = None) -> Quality:
    for q, max_loss, max_rtt, min_bps in QUALITY_THRESHOLDS:
        if loss < max_loss and rtt_ms < max_rtt and (throughput_bps is None or throughput_bps > min_bps):
            return q
    return Quality.BAD


def link_cost(loss: float, rtt_ms: float, throughput_bps: float | None = None) -> int:
    loss = min(max(loss, 0.0), 0.99)
    etx = 1.0 / ((1.0 - loss) ** 2)
    slower = 1.0
    if throughput_bps is not None and throughput_bps > 0:
        slower = max(1.0, THROUGHPUT_REFERENCE_BPS / throughput_bps)
    cost = COST_SCALE * etx * slower + max(rtt_ms, 0.0) / COST_RTT_MS_PER_UNIT
    return int(min(COST_MAX, max(1, round(cost))))
