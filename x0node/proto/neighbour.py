"""One neighbour on one interface: session, liveness, RTT, loss, throughput, quality class and cost.

Rules:
- A neighbour exists only after a verified signed HELLO from it (state INIT). It becomes UP (two-way)
  when it shows it hears us: it lists us in a signed HELLO, or sends a keepalive entry whose MAC under
  our pairwise key verifies (which it can only compute after verifying our HELLO).
- The pairwise key binds both session epochs; a HELLO with a new epoch resets the session (keepalive
  replay window, key, RTT) but keeps the measurements of the link.
- Control sequence numbers (one 32-bit counter per sender interface, shared by its HELLOs and
  keepalives) are never accepted twice under one key: a keepalive carries only the low 16 bits, and
  `full_seq` extends them to the 32-bit number nearest to the highest one seen (`ka_ref`, seeded by the
  signed HELLO); the keepalive MAC covers the full number, so a keepalive captured 2^15 or more
  keepalives ago no longer verifies. The sender rekeys (new epoch) before its counter reaches half the
  32-bit space, so the window's serial comparison never wraps under one key.
- A keepalive's timestamp must advance like our own clock since the last one accepted, within
  KEEPALIVE_CLOCK_TOLERANCE_S (`clock_ok`): a datagram held back and let go later is refused.
- Dead when nothing authenticated arrived for (HELLO_MISSED_DEAD + 0.5) x the neighbour's announced
  keepalive interval (UP) or for NEIGHBOUR_HOLD_FULL_HELLOS x the full-hello interval (INIT).
- RTT is an EWMA of echo samples: now - echoed timestamp - the peer's holding delay (ms, mod 2^32);
  samples above RTT_SAMPLE_MAX_MS are discarded. Class and cost use the base RTT instead: the smallest
  of the last RTT_BASE_WINDOW samples. A sample also carries the time the datagram waited for either
  daemon to be scheduled; on a busy host that wait swings by tens of ms from one sample to the next
  while the link itself has not changed, and costs following it would re-flood the mesh and move
  routes back and forth. Delay that every sample in the window shows (a slow or queued link) raises
  the base RTT as it should, one window later.
- Throughput comes from the adapter (the kernel's link speed, `throughput_source` "kernel") or from
  probe trains (throughput.py, "probe"); `probe` holds that measurement's state, which survives a new
  session (the link is the same) while its train counters restart with the session key.
- Every accepted RTT sample is also counted in a fixed-bucket histogram (`rtt_hist`, upper bounds
  RTT_HISTOGRAM_BOUNDS_MS, last slot above them) with its sum, exported as `mesh_latency_seconds`;
  the counts only grow while the neighbour exists.
- Loss is an EWMA over the control sequence numbers (weight 1/LOSS_EWMA_PACKETS per expected packet,
  HELLOs and keepalives alike): every gap in the sequence counts its missing numbers as lost;
  reordered packets do not count.
  The same accounting also keeps plain counts that only grow while the neighbour exists:
  `ctl_received` (control packets accepted) and `ctl_missed` (sequence numbers skipped by the gaps,
  at most MAX_COUNTED_GAP per gap); their growth between two readings is the loss of that interval
  itself, with none of the EWMA's memory (the anomaly collector reads it once per tick).
- The advertised (class, cost) changes at most once per MIN_COST_CHANGE_INTERVAL_S. The cost changes
  only when the measured one moved by more than COST_HYSTERESIS_FRACTION (urgent: re-advertised at
  once). The class has a band of CLASS_UPGRADE_MARGIN (0.8): a better class is taken only if loss
  and RTT / 0.8 (throughput x 0.8) still qualify for it; a worse one only if loss and RTT x 0.8
  (throughput / 0.8) still fail the current one. A class-only change is advertised lazily (the
  router batches it, CLASS_ADVERTISE_DELAY_S). When the throughput first becomes known the class and
  cost are taken as measured (`refresh_advertised(force=True)`): the band keeps a class, it does not
  carry one over from a link whose throughput nobody knew.
"""

from __future__ import annotations

import bisect
import collections
import enum
from dataclasses import dataclass, field

from x0node.proto.protocol import (
    COST_HYSTERESIS_FRACTION,
    KEEPALIVE_CLOCK_TOLERANCE_S,
    LOSS_EWMA_PACKETS,
    MIN_COST_CHANGE_INTERVAL_S,
    REPLAY_WINDOW,
    RTT_BASE_WINDOW,
    RTT_EWMA_ALPHA,
)
from x0node.proto.quality import Quality, classify, link_cost
from x0node.proto.seqno import ReplayWindow, seq_diff
from x0node.proto.throughput import ProbeState

RTT_SAMPLE_MAX_MS = 10_000.0
# Histogram upper bounds (ms) of RTT samples: one wired hop is under 1 ms, a congested radio hop
# reaches seconds; samples are whole milliseconds, so the first bound counts sub-millisecond hops.
RTT_HISTOGRAM_BOUNDS_MS = (0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
CLASS_UPGRADE_MARGIN = 0.8
CHANGE_NONE = 0
CHANGE_CLASS = 1
CHANGE_COST = 2
MAX_COUNTED_GAP = 1000
TS_MOD = 1 << 32
SEQ_MOD = 1 << 32


class NeighbourState(enum.Enum):
    INIT = "init"
    UP = "up"


def ms(now: float) -> int:
    """Our clock as a u32 millisecond timestamp (0 is reserved for "none")."""
    v = int(now * 1000.0) % TS_MOD
    return v or 1


@dataclass
class Neighbour:
    ifname: str
    node_id: bytes
    public_key: bytes
    address: str
    epoch: int
    key: bytes
    interval_s: float
    created_s: float
    state: NeighbourState = NeighbourState.INIT
    last_rx_s: float = 0.0
    last_hello_s: float = 0.0
    peer_ts_ms: int = 0
    peer_ts_rx_s: float = 0.0
    rtt_ms: float | None = None
    rtt_samples: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=RTT_BASE_WINDOW))
    throughput_bps: float | None = None
    throughput_source: str | None = None  # "kernel" (the adapter read it) | "probe" (we measured it)
    kernel_throughput_until_s: float = 0.0
    probe: ProbeState = field(default_factory=ProbeState)
    rtt_hist: list[int] = field(default_factory=lambda: [0] * (len(RTT_HISTOGRAM_BOUNDS_MS) + 1))
    rtt_hist_sum_ms: float = 0.0
    ka_window: ReplayWindow = field(default_factory=lambda: ReplayWindow(REPLAY_WINDOW, 32))
    ka_ref: int | None = None  # highest control sequence number seen from it (32 bits)
    ack_window: ReplayWindow = field(default_factory=lambda: ReplayWindow(REPLAY_WINDOW, 32))
    ka_first_seq: int | None = None
    ka_last_seq: int | None = None
    ka_received: int = 0
    loss_ewma: float = 0.0
    ctl_received: int = 0  # control packets accepted (grows while the neighbour exists)
    ctl_missed: int = 0  # control sequence numbers the gaps skipped (grows while the neighbour exists)
    adv_cost: int = 0
    adv_quality: Quality = Quality.EXCELLENT
    adv_changed_s: float = -1e9
    up_since_s: float | None = None

    @property
    def up(self) -> bool:
        return self.state is NeighbourState.UP

    # ---- session -----------------------------------------------------------------------------------
    def reset_session(self, epoch: int, key: bytes) -> None:
        self.epoch = epoch
        self.key = key
        self.ka_window = ReplayWindow(REPLAY_WINDOW, 32)
        self.ka_ref = None
        self.ack_window = ReplayWindow(REPLAY_WINDOW, 32)
        self.ka_first_seq = None
        self.ka_last_seq = None
        self.ka_received = 0
        self.peer_ts_ms = 0
        self.probe.new_session()

    def rekeyed(self, key: bytes) -> None:
        """We changed our epoch: a new key, so a new keepalive window (the peer's counter goes on)."""
        self.key = key
        self.ka_window = ReplayWindow(REPLAY_WINDOW, 32)
        self.ack_window = ReplayWindow(REPLAY_WINDOW, 32)
        self.probe.new_session()

    def full_seq(self, low16: int) -> int:
        """The 32-bit control sequence number whose low 16 bits are `low16`, nearest the highest seen."""
        if self.ka_ref is None:
            return low16
        return (self.ka_ref + seq_diff(low16, self.ka_ref & 0xFFFF, 16)) % SEQ_MOD

    def control_seen(self, seq: int) -> None:
        """An authenticated HELLO or keepalive carried control sequence number `seq` (32 bits)."""
        if self.ka_ref is None or seq_diff(seq, self.ka_ref, 32) > 0:
            self.ka_ref = seq
        self.keepalive_seen(seq)

    def clock_ok(self, ts_ms: int, now: float) -> bool:
        """Does the peer's timestamp advance like our clock since the last one we accepted?"""
        if not self.peer_ts_ms:
            return True
        advance_ms = seq_diff(ts_ms, self.peer_ts_ms, 32)
        return abs(advance_ms - (now - self.peer_ts_rx_s) * 1000.0) <= KEEPALIVE_CLOCK_TOLERANCE_S * 1000.0

    def heard(self, now: float, peer_ts_ms: int) -> None:
        self.last_rx_s = now
        self.peer_ts_ms = peer_ts_ms
        self.peer_ts_rx_s = now

    def rtt_sample(self, now: float, echo_ts_ms: int, echo_delay_ms: int) -> None:
        if echo_ts_ms == 0:
            return
        sample = (ms(now) - echo_ts_ms - echo_delay_ms) % TS_MOD
        if sample > RTT_SAMPLE_MAX_MS:
            return
        self.rtt_samples.append(float(sample))
        self.rtt_hist[bisect.bisect_left(RTT_HISTOGRAM_BOUNDS_MS, sample)] += 1
        self.rtt_hist_sum_ms += sample
        self.rtt_ms = (
            float(sample)
            if self.rtt_ms is None
            else (1 - RTT_EWMA_ALPHA) * self.rtt_ms + RTT_EWMA_ALPHA * sample
        )

    def base_rtt_ms(self) -> float | None:
        """The smallest recent RTT sample (the EWMA when no sample is held)."""
        return min(self.rtt_samples) if self.rtt_samples else self.rtt_ms

    def keepalive_seen(self, seq: int) -> None:
        """Account a control packet (already accepted) in the loss estimate."""
        if self.ka_first_seq is None:
            self.ka_first_seq = seq
        self.ka_received += 1
        self.ctl_received += 1
        keep = 1.0 - 1.0 / LOSS_EWMA_PACKETS
        if self.ka_last_seq is not None:
            gap = seq_diff(seq, self.ka_last_seq, 32)
            if gap <= 0:
                return  # reordered: already counted as lost, leave it
            lost = min(gap - 1, MAX_COUNTED_GAP)
            if lost:
                self.ctl_missed += lost
                self.loss_ewma = 1.0 - (1.0 - self.loss_ewma) * keep**lost
        self.loss_ewma *= keep
        self.ka_last_seq = seq

    def echo(self, now: float) -> tuple[int, int]:
        """(echo timestamp, holding delay ms) to put in our next hello for this neighbour."""
        if not self.peer_ts_ms:
            return 0, 0
        delay = round((now - self.peer_ts_rx_s) * 1000.0)
        return self.peer_ts_ms, max(0, min(delay, 65535))

    # ---- liveness -----------------------------------------------------------------------------------
    def dead_at(self, missed: int, init_hold_s: float) -> float:
        if self.state is NeighbourState.UP:
            return self.last_rx_s + (missed + 0.5) * self.interval_s
        return self.last_hello_s + init_hold_s

    # ---- quality -------------------------------------------------------------------------------------
    def loss(self) -> float:
        return self.loss_ewma

    def measured(self, band: bool = True) -> tuple[Quality, int]:
        """(class, with hysteresis unless `band` is False, and cost) from the current measurements."""
        loss, rtt, bps = self.loss(), self.base_rtt_ms() or 0.0, self.throughput_bps
        q = classify(loss, rtt, bps)
        if band and self.adv_cost and q != self.adv_quality:
            m = CLASS_UPGRADE_MARGIN
            if q < self.adv_quality:  # better: only with the metrics shrunk by the margin
                q = max(
                    q, min(self.adv_quality, classify(loss / m, rtt / m, None if bps is None else bps * m))
                )
            else:  # worse: only if still worse with the metrics relaxed by the margin
                q = min(
                    q, max(self.adv_quality, classify(loss * m, rtt * m, None if bps is None else bps / m))
                )
        return q, link_cost(loss, rtt, bps)

    def refresh_advertised(self, now: float, force: bool = False) -> int:
        """Update the advertised (class, cost). Returns CHANGE_NONE, CHANGE_CLASS (class only: worth
        telling the mesh, not urgently) or CHANGE_COST (cost moved beyond the hysteresis: re-advertise).
        `force`: take the measured class and cost as they are (no band, no rate limit)."""
        q, cost = self.measured(band=not force)
        if force or self.adv_cost == 0:
            changed = (q, cost) != (self.adv_quality, self.adv_cost)
            self.adv_quality, self.adv_cost, self.adv_changed_s = q, cost, now
            return CHANGE_COST if changed else CHANGE_NONE
        if now - self.adv_changed_s < MIN_COST_CHANGE_INTERVAL_S:
            return CHANGE_NONE
        if abs(cost - self.adv_cost) > COST_HYSTERESIS_FRACTION * self.adv_cost:
            self.adv_quality, self.adv_cost, self.adv_changed_s = q, cost, now
            return CHANGE_COST
        if q != self.adv_quality:
            self.adv_quality, self.adv_changed_s = q, now
            return CHANGE_CLASS
        return CHANGE_NONE
