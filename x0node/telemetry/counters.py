"""Decoding of the BPF maps' raw values into aggregates (pure: bytes in, frozen dataclasses out).

Rules:
- layouts mirror the C structs in bpf/*.bpf.c (little-endian u64 fields); a value of the wrong size is
  rejected with ValueError, never guessed at;
- per-CPU values are summed; nothing here reads the kernel, the clock or randomness.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

HIST_BUCKETS = 32
TCP_STATE_SLOTS = 16
# include/net/tcp_states.h
TCP_STATE_NAMES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}
IF_FIELDS = ("rx_packets", "rx_bytes", "passed", "dropped", "drop_runt", "drop_bad_src")
IF_VALUE_BYTES = 8 * (1 + len(IF_FIELDS))  # struct if_counters: owner ifindex, then the fields
IF_SLOTS = 64  # if_slots array size in xdp_mac_stats (power of two)
MAC_VALUE_BYTES = 16
# slot indices, mirrored from the C enums
EV_SEEN, EV_COUNTED, EV_NOT_TCP, EV_UNREADABLE, EV_OUT_OF_RANGE, EV_OTHER_NETNS = 0, 1, 2, 3, 4, 5
RTT_SAMPLES, RTT_SUM_US, RTT_UNREADABLE, RTT_ZERO, RTT_OTHER_NETNS = 0, 1, 2, 3, 4
RT_TOTAL, RT_FAILED, RT_OTHER_NETNS = 0, 1, 2


@dataclass(frozen=True)
class IfCounters:
    rx_packets: int = 0
    rx_bytes: int = 0
    passed: int = 0
    dropped: int = 0
    drop_runt: int = 0
    drop_bad_src: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SourceCounters:
    """Counts for one source MAC, identified only by its keyed hash (hex)."""

    source: str
    packets: int
    bytes: int


def u64(raw: bytes) -> int:
    if len(raw) != 8:
        raise ValueError(f"expected an 8-byte counter, got {len(raw)} bytes")
    return struct.unpack("<Q", raw)[0]


def sum_u64(values: list[bytes]) -> int:
    return sum(u64(v) for v in values)


def if_counters(values: list[bytes], ifindex: int | None = None) -> IfCounters:
    """Sum per-CPU `struct if_counters` copies; with `ifindex`, only the copies that interface owns."""
    totals = [0] * len(IF_FIELDS)
    for v in values:
        if len(v) != IF_VALUE_BYTES:
            raise ValueError(f"if_counters value must be {IF_VALUE_BYTES} bytes, got {len(v)}")
        owner, *fields = struct.unpack(f"<{1 + len(IF_FIELDS)}Q", v)
        if ifindex is not None and owner != ifindex:
            continue
        for i, x in enumerate(fields):
            totals[i] += x
    return IfCounters(*totals)


def add(a: IfCounters, b: IfCounters) -> IfCounters:
    return IfCounters(*(getattr(a, f) + getattr(b, f) for f in IF_FIELDS))


def release_slot(values: list[bytes], ifindex: int) -> list[bytes]:
    """The per-CPU copies of an if_slots entry with those owned by `ifindex` cleared (freed)."""
    return [bytes(IF_VALUE_BYTES) if struct.unpack_from("<Q", v)[0] == ifindex else v for v in values]


def source_counters(key: bytes, values: list[bytes]) -> SourceCounters:
    if len(key) != 8:
        raise ValueError("mac_stats key must be 8 bytes")
    packets = nbytes = 0
    for v in values:
        if len(v) != MAC_VALUE_BYTES:
            raise ValueError(f"mac_counters value must be {MAC_VALUE_BYTES} bytes, got {len(v)}")
        p, b = struct.unpack("<QQ", v)
        packets += p
        nbytes += b
    return SourceCounters(key[::-1].hex(), packets, nbytes)


def bucket_upper_bound(bucket: int) -> float:
    """Upper bound (exclusive) of a log2 bucket: bucket 0 holds 0, bucket i holds [2^(i-1), 2^i)."""
    if bucket >= HIST_BUCKETS - 1:
        return float("inf")
    return float(2**bucket)


def transition_name(index: int) -> str:
    old, new = divmod(index, TCP_STATE_SLOTS)
    return f"{TCP_STATE_NAMES.get(old, str(old))}->{TCP_STATE_NAMES.get(new, str(new))}"


def state_name(state: int) -> str:
    return TCP_STATE_NAMES.get(state, "UNKNOWN" if state == 0 else str(state))


@dataclass(frozen=True)
class TcpCounters:
    transitions: dict[str, int]
    retransmits: int
    retransmit_failures: int
    retransmits_by_state: dict[str, int]
    rtt_buckets: tuple[int, ...]  # HIST_BUCKETS counts, microseconds, log2
    rtt_samples: int
    rtt_sum_us: int
    unreadable: int

    @property
    def rtt_mean_us(self) -> float | None:
        return self.rtt_sum_us / self.rtt_samples if self.rtt_samples else None

    def opened(self) -> int:
        return sum(n for k, n in self.transitions.items() if k.endswith("->ESTABLISHED"))

    def closed(self) -> int:
        return sum(n for k, n in self.transitions.items() if k.endswith("->CLOSE"))

    def to_dict(self) -> dict[str, object]:
        return {
            "transitions": dict(self.transitions),
            "opened_total": self.opened(),
            "closed_total": self.closed(),
            "retransmits_total": self.retransmits,
            "retransmit_failures_total": self.retransmit_failures,
            "retransmits_by_state": dict(self.retransmits_by_state),
            "rtt_us": {
                "samples": self.rtt_samples,
                "sum": self.rtt_sum_us,
                "mean": self.rtt_mean_us,
                "buckets": {
                    ("+Inf" if bucket_upper_bound(i) == float("inf") else str(int(bucket_upper_bound(i)))): n
                    for i, n in enumerate(self.rtt_buckets)
                    if n
                },
            },
            "unreadable_sockets_total": self.unreadable,
        }


EMPTY_TCP = TcpCounters({}, 0, 0, {}, (0,) * HIST_BUCKETS, 0, 0, 0)
