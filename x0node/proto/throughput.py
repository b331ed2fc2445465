"""Throughput of each neighbour link: from the kernel when the adapter knows it, else measured with
probe trains; smoothed, budgeted, and handed to the neighbour's class and cost (neighbour.py).

Sources (a neighbour's `throughput_source`):
- "kernel": the adapter read the link's rate (an Ethernet NIC's link speed, a Wi-Fi station's expected
  throughput or transmit bitrate) and gave it to `Router.set_throughput`. It stands for
  KERNEL_THROUGHPUT_HOLD_S and no probe goes to that neighbour meanwhile; when it is not renewed,
  probing takes over.
- "probe": measured here.

Measurement (packet dispersion: Keshav's packet pair, 1991; trains as in Dovrolis, Ramanathan and
Moore, "Packet-dispersion techniques and a capacity-estimation methodology", IEEE/ACM ToN 2004):
- The sender sends a train of PROBE_TRAIN_PACKETS unicast PROBE datagrams back to back in the
  wake-up of a keepalive on that interface: a head of MAX_DATAGRAM_BYTES, then tail datagrams of equal
  size S. The link's bottleneck serialises them, so the last two leave it S / C apart (C its rate).
  The head first empties whatever would let the start of a train through at once: an idle transmit
  queue, or a token bucket up to one frame deep. A shaper whose bucket holds more than the train lets
  the whole train through at the rate of the link before it; such a link reads as fast as that
  (documented limit: its rate is seen only by traffic that outlasts the bucket).
- The receiver stamps each datagram with the kernel's receive time when the adapter passes it (else
  `now`) and, once the whole train arrived in order, answers with a PROBE_REPORT of
  8 x S / (gap between the last two), where S counts the IPv6 and UDP headers and the interface's
  link-layer header (`Interface.link_header_bytes`). Rates are the link's, as a shaper or a NIC counts.
- The tail is sized so that the expected gap at the current estimate is PROBE_TARGET_GAP_S, within
  [PROBE_MIN_PAYLOAD_BYTES, MAX_DATAGRAM_BYTES] (full size while nothing is known).

Smoothing and hysteresis:
- The estimate is the median of the last PROBE_SAMPLES samples. It is first used once
  PROBE_LEARN_SAMPLES samples exist; after a neighbour comes up trains go PROBE_FAST_INTERVAL_S apart
  until then.
- A sample outside [estimate / PROBE_CHANGE_RATIO, estimate x PROBE_CHANGE_RATIO] opens a change and
  asks for two more trains PROBE_FAST_INTERVAL_S apart. A rise is confirmed with full-size tails (a
  tail sized for a low estimate cannot show a much higher rate: its gap would be the sender's own
  spacing); a drop with tails sized for the highest sample of the change (cheaper, still accurate). When
  PROBE_LEARN_SAMPLES samples in a row leave the band on the same side, the link changed: the
  older samples are dropped and the estimate is the median of those. A sample outside the band
  enters the median only so; one inside the band, or on the other side, closes the change. One
  outlier (or two, or any number on alternate sides) never moves the estimate; a real change moves it
  after three trains, all of it at once.
- The throughput used for class and cost follows the estimate only when they differ by more than
  PROBE_PUBLISH_FRACTION; the class band and the cost hysteresis of neighbour.py apply on top.

Budget, per neighbour, counting trains and their reports with their headers:
- A token bucket of PROBE_BURST_BYTES refilled at the budget: PROBE_IDLE_BUDGET_BPS on an idle link,
  PROBE_TRAFFIC_FRACTION of the bytes we send on the interface when it carries traffic (the adapter
  reports the interface's transmit counter, `note_tx_bytes`; our own routing datagrams are not
  counted as traffic), never more than PROBE_MAX_BUDGET_BPS. A train goes out only when the bucket
  holds its bytes, so the long-run probe rate never exceeds the budget.
- Steady trains are (train bytes / (PROBE_STEADY_SHARE x budget)) apart, so that the rest of the
  budget refills the bucket for learning and confirming; on a link carrying traffic, while the bucket
  is at least half full (a full bucket cannot keep what they leave unused), (train bytes / budget)
  apart. +-25 %, within [PROBE_MIN_INTERVAL_S, PROBE_MAX_INTERVAL_S]. An idle link is thus
  re-measured every one to a few minutes (its probes stay a small part of the idle control traffic);
  a link carrying traffic every few seconds.

Rules:
- Both messages carry a MAC under the pairwise session key (messages.py) and are checked before
  anything else. Train ids increase and never fall below `now` in TRAIN_TICKS_PER_S ticks, so they
  keep increasing under one key even when one side forgot the neighbour and heard it again. A probe
  is taken only from an UP neighbour, for a train newer than any seen in the session or the next
  index of the current one: a (train, index) is never accepted twice. A report is
  taken only for the train we wait for, which it clears: never twice. Refusals are counted by reason.
- A receiver measures at most one train per neighbour per PROBE_RX_MIN_INTERVAL_S (`limit_probe_rate`).
- Sans-I/O: `now` and receive stamps come in as data; sizes and counts are bounded by the constants.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from x0node.proto import messages as m
from x0node.proto.basis import Basis, Part
from x0node.proto.protocol import (
    IPV6_UDP_HEADER_BYTES,
    KERNEL_THROUGHPUT_HOLD_S,
    MAX_DATAGRAM_BYTES,
    MAX_LINK_THROUGHPUT_KBPS,
    PROBE_BURST_BYTES,
    PROBE_CHANGE_RATIO,
    PROBE_FAST_INTERVAL_S,
    PROBE_IDLE_BUDGET_BPS,
    PROBE_LEARN_SAMPLES,
    PROBE_MAX_BUDGET_BPS,
    PROBE_MAX_INTERVAL_S,
    PROBE_MIN_INTERVAL_S,
    PROBE_MIN_PAYLOAD_BYTES,
    PROBE_PUBLISH_FRACTION,
    PROBE_REPORT_TIMEOUT_S,
    PROBE_RX_MIN_INTERVAL_S,
    PROBE_SAMPLES,
    PROBE_STEADY_SHARE,
    PROBE_TARGET_GAP_S,
    PROBE_TRAFFIC_FRACTION,
    PROBE_TRAIN_PACKETS,
)
from x0node.proto.timers import jittered

if TYPE_CHECKING:
    from x0node.proto.interfaces import Interface, Interfaces
    from x0node.proto.neighbour import Neighbour

REPORT_BYTES = m.PROBE_HEADER_BYTES + m.MAC_BYTES  # version, type, train, rate, MAC
MIN_GAP_S = 1e-6
"""Gaps shorter than this (stamps of one receive batch) are taken as this: the rate is then a bound."""
TRAIN_TICKS_PER_S = 10
"""Train ids never fall below `now` in these ticks: a neighbour forgotten and heard again under the same
pairwise key (its state starts afresh on one side only) sends ids above any it sent before, which the
receiver takes, instead of ids it already saw, which it refuses as replays. Trains to one neighbour are
at least PROBE_FAST_INTERVAL_S apart, so ids never run ahead of the ticks; u32 ticks last 13 years."""
TRAFFIC_STALE_S = 5.0
"""An interface's traffic figure older than this (the adapter stopped reporting) counts as idle."""


@dataclass
class ProbeState:
    """One neighbour's probing: what we send it and estimate from its reports, and what we measure of
    the trains it sends us."""

    # sender side (our link towards it)
    train: int = 0  # last train id sent in this session
    pending: int | None = None  # train whose report we wait for
    pending_since_s: float = 0.0
    last_s: float | None = None  # when the last train went (None: not started, or to start again)
    jitter: float = 1.0  # this interval's jitter factor (+-25 %), drawn when the last train went
    fast: int = 0  # trains still to go PROBE_FAST_INTERVAL_S apart (learning, confirming)
    tokens: float = float(PROBE_BURST_BYTES)
    tokens_s: float | None = None
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=PROBE_SAMPLES))
    estimate: float | None = None
    published: float | None = None
    change: list[float] = field(default_factory=list)  # samples in a row outside the band, one side
    # receiver side (its link towards us)
    rx_train: int = 0  # newest train id seen in this session
    rx_next: int = 0  # next index accepted of that train
    rx_stamps: list[float] = field(default_factory=list)
    rx_broken: bool = True
    rx_started_s: float = -1e9

    def new_session(self) -> None:
        """A new pairwise key: train numbers start again on both sides; the measurements stay."""
        self.train = 0
        self.pending = None
        self.rx_train = 0
        self.rx_next = 0
        self.rx_stamps = []
        self.rx_broken = True


def wire_bytes(payload: int, link_header_bytes: int) -> int:
    """A datagram's size on the link: payload, IPv6 and UDP headers, link-layer header."""
    return payload + IPV6_UDP_HEADER_BYTES + link_header_bytes


def tail_payload(estimate_bps: float | None, link_header_bytes: int) -> int:
    """Payload of the tail datagrams: PROBE_TARGET_GAP_S at `estimate_bps`, within the bounds."""
    if estimate_bps is None:
        return MAX_DATAGRAM_BYTES
    want = estimate_bps / 8.0 * PROBE_TARGET_GAP_S - IPV6_UDP_HEADER_BYTES - link_header_bytes
    return int(min(MAX_DATAGRAM_BYTES, max(PROBE_MIN_PAYLOAD_BYTES, want)))


def train_cost(tail: int, link_header_bytes: int) -> int:
    """Bytes one train and its report put on the link (both directions)."""
    sizes = [MAX_DATAGRAM_BYTES] + [tail] * (PROBE_TRAIN_PACKETS - 1) + [REPORT_BYTES]
    return sum(wire_bytes(s, link_header_bytes) for s in sizes)


def measured_rate_kbps(tail_size: int, link_header_bytes: int, gap_s: float) -> int:
    """The rate (kbit/s) a gap of `gap_s` between two tail datagrams shows, within the wire bounds."""
    bits = 8.0 * wire_bytes(tail_size, link_header_bytes)
    kbps = bits / max(gap_s, MIN_GAP_S) / 1000.0
    return int(min(MAX_LINK_THROUGHPUT_KBPS, max(1, round(kbps))))


@dataclass
class Traffic:
    """What the interface sent besides our routing datagrams, from the adapter's counter readings."""

    total: int = 0
    own: int = 0
    at_s: float | None = None
    bytes_per_s: float = 0.0


class Probing(Part):
    def __init__(
        self,
        basis: Basis,
        neighbours: dict[tuple[str, bytes], Neighbour],
        by_addr: dict[tuple[str, str], bytes],
        interfaces: Interfaces,
        apply: Callable[[Neighbour, float, str, float], None],
    ) -> None:
        super().__init__(basis)
        self._nbrs = neighbours
        self._by_addr = by_addr
        self._interfaces = interfaces
        self._apply = apply  # (neighbour, bps, source, now): class and cost follow
        self.traffic: dict[str, Traffic] = {}

    # ------------------------------------------------------------------------------ adapter facts
    def note_tx_bytes(self, ifname: str, total_bytes: int, now: float) -> None:
        """The interface's transmit byte counter (link-layer bytes, from the kernel) at `now`."""
        iface = self._interfaces.get(ifname)
        if iface is None or total_bytes < 0:
            return
        own = self.out.wire_bytes_sent(ifname, IPV6_UDP_HEADER_BYTES + iface.link_header_bytes)
        t = self.traffic.setdefault(ifname, Traffic())
        if t.at_s is not None and now > t.at_s:
            other = (total_bytes - t.total) - (own - t.own)  # < 0 after a counter reset: idle until the next
            t.bytes_per_s = max(0.0, other) / (now - t.at_s)
        t.total, t.own, t.at_s = total_bytes, own, now

    def budget_bps(self, ifname: str, now: float) -> float:
        """Probe bytes per second one neighbour on `ifname` may use now."""
        t = self.traffic.get(ifname)
        busy = 0.0 if t is None or t.at_s is None or now - t.at_s > TRAFFIC_STALE_S else t.bytes_per_s
        return min(PROBE_MAX_BUDGET_BPS, max(PROBE_IDLE_BUDGET_BPS, PROBE_TRAFFIC_FRACTION * busy))

    def kernel_throughput(self, n: Neighbour, bps: float, now: float) -> None:
        """The adapter read the link's rate from the kernel: it stands, and probing pauses."""
        n.kernel_throughput_until_s = now + KERNEL_THROUGHPUT_HOLD_S
        self._apply(n, bps, "kernel", now)

    # ------------------------------------------------------------------------------ sending
    def send_due(self, now: float) -> None:
        """Trains due on the interfaces that sent a keepalive at `now` (one train per interface)."""
        for iface in self._interfaces.table.values():
            if not iface.up or iface.last_keepalive_s != now:
                continue
            due = [n for (ifn, _), n in self._nbrs.items() if ifn == iface.name and self._ready(n, now)]
            if due:
                n = min(due, key=lambda x: (x.probe.last_s or 0.0, x.node_id))
                self._send_train(iface, n, now)

    def _ready(self, n: Neighbour, now: float) -> bool:
        ps = n.probe
        if not n.up:
            return False
        if n.throughput_source == "kernel":
            if now < n.kernel_throughput_until_s:
                return False
            n.throughput_source = None  # the kernel stopped telling: measure it ourselves
            ps.last_s = None
        if ps.pending is not None:
            if now - ps.pending_since_s < PROBE_REPORT_TIMEOUT_S:
                return False
            ps.pending = None
            self.out.counters["probe_trains_lost"] += 1
        if ps.last_s is None:  # just up (or back from the kernel's figure): learn what is missing
            ps.fast = max(1, PROBE_LEARN_SAMPLES - len(ps.samples))
            return True
        if ps.fast > 0 or ps.estimate is None:  # confirming, or still learning (lost trains): soon again
            return now >= ps.last_s + PROBE_FAST_INTERVAL_S
        return now >= ps.last_s + ps.jitter * self.steady_interval_s(n, now)

    def steady_interval_s(self, n: Neighbour, now: float) -> float:
        """Spacing of steady trains to n: its next train's bytes at the budget while the link carries
        traffic and the bucket is at least half full, else at PROBE_STEADY_SHARE of it (recomputed as
        the link's traffic changes), within the bounds, before jitter."""
        cost = train_cost(self._tail(n), self._header_bytes(n))
        budget = self.budget_bps(n.ifname, now)
        full = budget > PROBE_IDLE_BUDGET_BPS and 2 * self._refill(n.probe, budget, now) >= PROBE_BURST_BYTES
        share = 1.0 if full else PROBE_STEADY_SHARE
        steady = cost / (share * budget)
        return min(PROBE_MAX_INTERVAL_S, max(PROBE_MIN_INTERVAL_S, steady))

    def _header_bytes(self, n: Neighbour) -> int:
        iface = self._interfaces.get(n.ifname)
        return 0 if iface is None else iface.link_header_bytes

    def _tail(self, n: Neighbour) -> int:
        ps = n.probe
        if ps.change:  # confirming: a rise with full-size tails, a drop with tails sized for what it showed
            guess = None if ps.estimate is None or ps.change[0] > ps.estimate else max(ps.change)
        else:
            guess = ps.estimate if ps.estimate is not None else (ps.samples[-1] if ps.samples else None)
        return tail_payload(guess, self._header_bytes(n))

    @staticmethod
    def _refill(ps: ProbeState, budget: float, now: float) -> float:
        """The bucket's bytes at `now`, refilled at `budget` since it was last looked at."""
        if ps.tokens_s is None:
            return ps.tokens
        return min(float(PROBE_BURST_BYTES), ps.tokens + (now - ps.tokens_s) * budget)

    def _send_train(self, iface: Interface, n: Neighbour, now: float) -> None:
        ps = n.probe
        tail = self._tail(n)
        cost = train_cost(tail, iface.link_header_bytes)
        ps.tokens, ps.tokens_s = self._refill(ps, self.budget_bps(iface.name, now), now), now
        if ps.tokens < cost:
            return  # wait for the bucket; looked at again at the next keepalive
        ps.tokens -= cost
        ps.train = max(ps.train + 1, int(now * TRAIN_TICKS_PER_S) & 0xFFFFFFFF)
        sizes = [MAX_DATAGRAM_BYTES] + [tail] * (PROBE_TRAIN_PACKETS - 1)
        for i, size in enumerate(sizes):
            probe = m.Probe(ps.train, i, len(sizes), size)
            self.out.send(iface.name, n.address, m.seal_probe(probe, n.key, self.me, n.node_id))
        self.out.counters["probe_trains_sent"] += 1
        self.out.counters["probe_bytes_sent"] += sum(sizes)
        ps.pending, ps.pending_since_s = ps.train, now
        ps.fast = max(0, ps.fast - 1)
        ps.last_s, ps.jitter = now, jittered(1.0, self.rng)

    # ------------------------------------------------------------------------------ receiving
    def _sender(self, iface: Interface, src: str, now: float) -> Neighbour | None:
        nid = self._by_addr.get((iface.name, src))
        n = None if nid is None else self._nbrs.get((iface.name, nid))
        if n is None or not n.up:
            self.out.drop("unknown_sender", iface.name, src, now)
            return None
        return n

    def on_probe(self, iface: Interface, src: str, msg: m.Probe, data: bytes, now: float,
                 stamp_s: float | None = None) -> None:
        n = self._sender(iface, src, now)
        if n is None:
            return
        if not m.probe_mac_ok(n.key, n.node_id, self.me, data):
            self.out.drop("bad_mac", iface.name, src, now)
            return
        ps = n.probe
        if msg.train < ps.rx_train or (msg.train == ps.rx_train and msg.index < ps.rx_next):
            self.out.drop("replay", iface.name, src, now)
            return
        t = now if stamp_s is None else stamp_s
        if msg.train > ps.rx_train:
            ps.rx_train, ps.rx_stamps = msg.train, []
            ps.rx_broken = msg.index != 0
            if not ps.rx_broken and now - ps.rx_started_s < PROBE_RX_MIN_INTERVAL_S:
                ps.rx_broken = True
                ps.rx_next = msg.index + 1
                self.out.drop("limit_probe_rate", iface.name, src, now)
                return
            if not ps.rx_broken:
                ps.rx_started_s = now
        elif msg.index != ps.rx_next:
            ps.rx_broken = True  # one went missing
        ps.rx_next = msg.index + 1
        if ps.rx_broken:
            if msg.index == msg.count - 1:
                self.out.counters["probe_trains_incomplete"] += 1
            return
        ps.rx_stamps.append(t)
        if msg.index < msg.count - 1:
            return
        ps.rx_broken = True  # measured: the train is done
        kbps = measured_rate_kbps(msg.size, iface.link_header_bytes, ps.rx_stamps[-1] - ps.rx_stamps[-2])
        report = m.seal_report(m.ProbeReport(msg.train, kbps), n.key, self.me, n.node_id)
        self.out.send(iface.name, n.address, report)
        self.out.counters["probe_reports_sent"] += 1

    def on_report(self, iface: Interface, src: str, msg: m.ProbeReport, data: bytes, now: float) -> None:
        n = self._sender(iface, src, now)
        if n is None:
            return
        if not m.report_mac_ok(n.key, n.node_id, self.me, msg):
            self.out.drop("bad_mac", iface.name, src, now)
            return
        ps = n.probe
        if ps.pending is None or msg.train != ps.pending:
            self.out.drop("stale", iface.name, src, now)
            return
        ps.pending = None
        self.out.counters["probe_reports_received"] += 1
        self.sample(n, msg.rate_kbps * 1000.0, now)

    # ------------------------------------------------------------------------------ estimate
    def sample(self, n: Neighbour, bps: float, now: float) -> None:
        """One measured rate of our link to n: smooth, and publish when it moved enough."""
        ps = n.probe
        est = ps.estimate
        side = 0 if est is None else (-1 if bps < est / PROBE_CHANGE_RATIO else int(bps > est * PROBE_CHANGE_RATIO))
        if side == 0 or (ps.change and (ps.change[0] > est) != (side > 0)):  # type: ignore[operator]
            ps.change = []  # back in the band, or the other way: what was open is dismissed
        if side == 0:
            ps.samples.append(bps)
        else:  # held apart from the estimate until confirmed
            if not ps.change:
                ps.fast = max(ps.fast, PROBE_LEARN_SAMPLES - 1)  # two more trains soon confirm or dismiss it
            ps.change.append(bps)
            if len(ps.change) >= PROBE_LEARN_SAMPLES:  # confirmed: the link changed
                ps.samples = deque(ps.change, maxlen=PROBE_SAMPLES)
                ps.change = []
        if len(ps.samples) >= PROBE_LEARN_SAMPLES:
            ps.estimate = statistics.median(ps.samples)
        if ps.estimate is None or n.throughput_source == "kernel":
            return
        pub = ps.published
        if pub is None or abs(ps.estimate - pub) > PROBE_PUBLISH_FRACTION * pub or n.throughput_source is None:
            ps.published = ps.estimate
            self._apply(n, ps.estimate, "probe", now)
