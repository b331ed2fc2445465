"""The telemetry snapshot: what the node exports and what anomaly features read (pure).

Rules:
- a snapshot is built from decoded counters, `now` (monotonic seconds), the previous snapshot (for
  rates) and an injected rng; it never reads the kernel or the clock itself;
- only aggregates: per-interface totals, per-source totals keyed by the keyed MAC hash, TCP counters;
- per-peer counts are the only per-remote figures, so they are the ones released with Laplace noise
  when `epsilon` is set; a noisy count never goes below the previous released value of the same
  peer (post-processing keeps the DP guarantee and keeps Prometheus counters monotonic);
- bounded: at most `peers_max` peers (largest by packets), at most INTERFACES_MAX interfaces.
The shape of `Snapshot.as_dict()` is documented in docs/telemetry.md (anomaly features depend on it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from x0node.telemetry import privacy
from x0node.telemetry.counters import EMPTY_TCP, IfCounters, SourceCounters, TcpCounters

SNAPSHOT_VERSION = 1
INTERFACES_MAX = 64
PEERS_MAX_DEFAULT = 32
BYTES_SENSITIVITY = 1514  # one frame at the standard MTU moves a byte count by at most this much


@dataclass(frozen=True)
class InterfaceState:
    mode: str  # "native" | "generic" | "unattached"
    counters: IfCounters
    error: str = ""


@dataclass(frozen=True)
class Snapshot:
    time: float
    bpf: bool
    reason: str
    interfaces: Mapping[str, InterfaceState]
    peers: tuple[SourceCounters, ...]
    tcp: TcpCounters
    epsilon: float | None
    rates: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "time": self.time,
            "bpf": self.bpf,
            "reason": self.reason,
            "interfaces": {
                name: {"mode": st.mode, **st.counters.to_dict(), **({"error": st.error} if st.error else {})}
                for name, st in self.interfaces.items()
            },
            "peers": [{"source": p.source, "packets": p.packets, "bytes": p.bytes} for p in self.peers],
            "tcp": self.tcp.to_dict(),
            "rates": dict(self.rates),
            "privacy": {"epsilon": self.epsilon, "noised": ["peers"] if self.epsilon else []},
        }


def empty(now: float, reason: str) -> Snapshot:
    return Snapshot(now, False, reason, {}, (), EMPTY_TCP, None, {})


def _rate(cur: int, prev: int, dt: float) -> float:
    return max(0, cur - prev) / dt if dt > 0 else 0.0


def rates(cur_ifs: Mapping[str, InterfaceState], tcp: TcpCounters, now: float, prev: Snapshot | None) -> dict[str, Any]:
    """Per-second rates since `prev` (empty without a previous snapshot)."""
    if prev is None or now <= prev.time:
        return {}
    dt = now - prev.time
    out_ifs: dict[str, dict[str, float]] = {}
    for name, st in cur_ifs.items():
        p = prev.interfaces.get(name)
        if p is None:
            continue
        pkts = max(0, st.counters.rx_packets - p.counters.rx_packets)
        drops = max(0, st.counters.dropped - p.counters.dropped)
        out_ifs[name] = {
            "rx_pps": pkts / dt,
            "rx_bps": _rate(st.counters.rx_bytes, p.counters.rx_bytes, dt) * 8,
            "drop_ratio": drops / pkts if pkts else 0.0,
        }
    ptcp = prev.tcp
    d_samples = tcp.rtt_samples - ptcp.rtt_samples
    return {
        "interval_s": dt,
        "interfaces": out_ifs,
        "tcp": {
            "retransmits_per_s": _rate(tcp.retransmits, ptcp.retransmits, dt),
            "opened_per_s": _rate(tcp.opened(), ptcp.opened(), dt),
            "closed_per_s": _rate(tcp.closed(), ptcp.closed(), dt),
            "rtt_mean_us": (tcp.rtt_sum_us - ptcp.rtt_sum_us) / d_samples if d_samples > 0 else None,
        },
    }


def release_peers(
    sources: list[SourceCounters],
    prev: Snapshot | None,
    epsilon: float | None,
    rng: random.Random,
    peers_max: int = PEERS_MAX_DEFAULT,
) -> tuple[SourceCounters, ...]:
    """The top `peers_max` sources, each count noised under `epsilon` and kept monotonic."""
    top = sorted(sources, key=lambda s: (-s.packets, s.source))[: max(0, peers_max)]
    before = {p.source: p for p in prev.peers} if prev is not None else {}
    out = []
    for s in sorted(top, key=lambda s: s.source):  # fixed order: a seeded rng gives fixed output
        last = before.get(s.source)
        pk = privacy.noisy_count(s.packets, epsilon, rng)
        by = privacy.noisy_count(s.bytes, epsilon, rng, sensitivity=BYTES_SENSITIVITY)
        if last is not None:
            pk, by = max(pk, last.packets), max(by, last.bytes)
        out.append(SourceCounters(s.source, pk, by))
    return tuple(sorted(out, key=lambda s: (-s.packets, s.source)))


def build(
    now: float,
    interfaces: Mapping[str, InterfaceState],
    sources: list[SourceCounters],
    tcp: TcpCounters,
    prev: Snapshot | None,
    epsilon: float | None,
    rng: random.Random,
    peers_max: int = PEERS_MAX_DEFAULT,
    reason: str = "ok",
) -> Snapshot:
    ifs = dict(sorted(interfaces.items())[:INTERFACES_MAX])
    return Snapshot(
        time=now,
        bpf=True,
        reason=reason,
        interfaces=ifs,
        peers=release_peers(sources, prev, epsilon, rng, peers_max),
        tcp=tcp,
        epsilon=epsilon,
        rates=rates(ifs, tcp, now, prev),
    )
