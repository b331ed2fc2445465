"""This node's raw feature vector from kernel counters and the router's neighbour view.

Two parts:
- `read_counters(interfaces, proc, sys)`: the I/O adapter. Reads /proc/stat (CPU), /proc/meminfo,
  /proc/net/snmp and /proc/net/snmp6 (IP forwarding counters) and
  /sys/class/net/<if>/{statistics/*,speed} for the mesh interfaces. Missing or unreadable files give
  missing values (None), never an exception; numbers are bounded by parsing only the fields we need.
- `FeatureState.update(counters, neighbours, now)`: pure. Turns two successive counter snapshots into
  rates, and the router's `neighbours()` view (NeighbourView: `node_id`, `state`, `rtt_ms`, `loss`)
  into link features:
    cpu_util = busy jiffies / all jiffies; mem_util = 1 - MemAvailable / MemTotal;
    load = (rx+tx bytes/s * 8) / sum of interface capacities (speed, else DEFAULT_CAPACITY_BPS);
    rtt_ms = mean RTT over UP neighbours; loss_max = max loss over UP neighbours, each neighbour's
      RTT and loss averaged over every `observe_links` sample since the previous update (the service
      samples the view every LINK_SAMPLE_INTERVAL_S, so a 32-hello loss window is not read only once);
    link_changes = UP-set transitions in the last LINK_CHANGES_WINDOW_S (bounded deque);
    if_errors_per_s = rx/tx errors + drops per second (+ frames the XDP program dropped, when the
      telemetry service's snapshot is there: `xdp_dropped_total`);
    fwd_ratio = sent / transit, transit = IP packets received - delivered locally (IPv4+IPv6), sent =
      the smaller of the kernel's forwarded counter and (mesh tx packets - locally originated packets);
      1.0 while transit traffic is below MIN_TRANSIT_PACKETS (no evidence of a black hole). The kernel's
      forwarded counter is taken before the netfilter FORWARD hook (seen on the namespace testbed), so
      it alone does not see a node that drops in netfilter.
  A counter that went backwards (reset) gives no rate for that window (neutral value).
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from x0node.anomaly.features import FEATURES, LINK_CHANGES_WINDOW_S, NEUTRAL_RAW
from x0node.proto.views import NeighbourView

DEFAULT_CAPACITY_BPS = 100e6
LINK_SAMPLE_INTERVAL_S = 3.0
MIN_TRANSIT_PACKETS = 20
MAX_LINK_EVENTS = 1024
MAX_NEIGHBOURS_READ = 256
_IF_STATS = ("rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped", "tx_packets")


@dataclass(frozen=True)
class Counters:
    cpu_busy: int | None = None
    cpu_total: int | None = None
    mem_total_kb: int | None = None
    mem_avail_kb: int | None = None
    ip_in: int | None = None  # IPv4 + IPv6 packets received
    ip_delivered: int | None = None  # ... delivered to this host
    ip_forwarded: int | None = None  # ... forwarded (kernel counter; counts before netfilter FORWARD)
    ip_out_local: int | None = None  # locally originated packets sent (IpOutRequests + Ip6OutRequests)
    if_tx_packets: int | None = None  # tx packets over the mesh interfaces
    if_bytes: int | None = None  # rx + tx bytes over the mesh interfaces
    if_errors: int | None = None  # rx/tx errors + drops over the mesh interfaces
    capacity_bps: float = DEFAULT_CAPACITY_BPS
    xdp_dropped: int | None = None  # frames our XDP program dropped (telemetry snapshot), cumulative
    extra: dict[str, Any] = field(default_factory=dict)


def _read(path: pathlib.Path, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _snmp_pairs(text: str | None) -> dict[str, int]:
    """/proc/net/snmp: header line + value line per protocol; /proc/net/snmp6: `name value` lines."""
    out: dict[str, int] = {}
    if not text:
        return out
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        a, b = lines[i].split(), lines[i + 1].split()
        if a and b and a[0] == b[0] == "Ip:" and len(a) == len(b):
            for k, v in zip(a[1:], b[1:], strict=True):
                if v.lstrip("-").isdigit():
                    out["Ip" + k] = int(v)
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("Ip6") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_counters(
    interfaces: Iterable[str], proc: pathlib.Path = pathlib.Path("/proc"), sys: pathlib.Path = pathlib.Path("/sys")
) -> Counters:
    cpu_busy = cpu_total = None
    stat = _read(proc / "stat", 4096)
    if stat:
        first = stat.splitlines()[0].split()
        if first and first[0] == "cpu":
            vals = [int(v) for v in first[1:9] if v.isdigit()]
            if len(vals) >= 4:
                cpu_total = sum(vals)
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                cpu_busy = cpu_total - idle
    mem_total = mem_avail = None
    for line in (_read(proc / "meminfo", 8192) or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "MemTotal:":
            mem_total = _int(parts[1])
        elif len(parts) >= 2 and parts[0] == "MemAvailable:":
            mem_avail = _int(parts[1])
    snmp = {**_snmp_pairs(_read(proc / "net" / "snmp")), **_snmp_pairs(_read(proc / "net" / "snmp6"))}

    def both(v4: str, v6: str) -> int | None:
        if v4 not in snmp and v6 not in snmp:
            return None
        return snmp.get(v4, 0) + snmp.get(v6, 0)

    if_bytes = if_errors = tx_packets = 0
    capacity = 0.0
    seen = False
    for ifname in list(interfaces)[:64]:
        if "/" in ifname or ifname in (".", ".."):
            continue
        base = sys / "class" / "net" / ifname
        vals = {k: _int(_read(base / "statistics" / k, 64)) for k in _IF_STATS}
        if any(v is None for v in vals.values()):
            continue
        seen = True
        if_bytes += int(vals["rx_bytes"] or 0) + int(vals["tx_bytes"] or 0)
        if_errors += sum(int(vals[k] or 0) for k in _IF_STATS[2:6])
        tx_packets += int(vals["tx_packets"] or 0)
        speed = _int(_read(base / "speed", 64))
        capacity += speed * 1e6 if speed and speed > 0 else DEFAULT_CAPACITY_BPS
    return Counters(
        cpu_busy=cpu_busy,
        cpu_total=cpu_total,
        mem_total_kb=mem_total,
        mem_avail_kb=mem_avail,
        ip_in=both("IpInReceives", "Ip6InReceives"),
        ip_delivered=both("IpInDelivers", "Ip6InDelivers"),
        ip_forwarded=both("IpForwDatagrams", "Ip6OutForwDatagrams"),
        ip_out_local=both("IpOutRequests", "Ip6OutRequests"),
        if_tx_packets=tx_packets if seen else None,
        if_bytes=if_bytes if seen else None,
        if_errors=if_errors if seen else None,
        capacity_bps=capacity if seen else DEFAULT_CAPACITY_BPS,
    )


def _delta(new: int | None, old: int | None) -> int | None:
    if new is None or old is None or new < old:
        return None
    return new - old


class FeatureState:
    """Successive counter snapshots and neighbour views -> raw feature vectors (pure)."""

    def __init__(self) -> None:
        self._prev: Counters | None = None
        self._prev_s: float | None = None
        self._up: set[str] = set()
        self._events: collections.deque[float] = collections.deque(maxlen=MAX_LINK_EVENTS)
        self.last: dict[str, float] = {}
        self.deltas: dict[str, int | None] = {}  # raw counter deltas of the last window (diagnostics)
        # neighbour id -> [rtt sum, rtt samples, loss sum, loss samples, up in the latest sample]
        self._links: dict[str, list[Any]] = {}

    def observe_links(self, neighbours: Sequence[NeighbourView]) -> None:
        """One sample of the router's neighbour view; `update` averages all samples since the last one."""
        seen: set[str] = set()
        for nb in list(neighbours)[:MAX_NEIGHBOURS_READ]:
            nid = nb.node_id
            if nid not in self._links and len(self._links) >= MAX_NEIGHBOURS_READ:
                continue
            st = self._links.setdefault(nid, [0.0, 0, 0.0, 0, False])
            st[4] = nb.state == "up"
            seen.add(nid)
            if not st[4]:
                continue
            rtt, loss = nb.rtt_ms, nb.loss
            if rtt is not None and np.isfinite(rtt):
                st[0] += float(rtt)
                st[1] += 1
            if np.isfinite(loss):
                st[2] += min(max(float(loss), 0.0), 1.0)
                st[3] += 1
        for nid, st in self._links.items():
            if nid not in seen:
                st[4] = False  # gone from the view

    def update(self, counters: Counters, neighbours: Sequence[NeighbourView], now: float) -> np.ndarray:
        raw = NEUTRAL_RAW.copy()
        idx = {n: i for i, n in enumerate(FEATURES)}
        prev, dt = self._prev, (now - self._prev_s) if self._prev_s is not None else 0.0
        if prev is not None and dt > 0:
            busy = _delta(counters.cpu_busy, prev.cpu_busy)
            total = _delta(counters.cpu_total, prev.cpu_total)
            if busy is not None and total:
                raw[idx["cpu_util"]] = busy / total
            b = _delta(counters.if_bytes, prev.if_bytes)
            if b is not None:
                raw[idx["load"]] = b * 8.0 / dt / max(counters.capacity_bps, 1.0)
            e = _delta(counters.if_errors, prev.if_errors)
            x = _delta(counters.xdp_dropped, prev.xdp_dropped)
            if e is not None or x is not None:
                raw[idx["if_errors_per_s"]] = ((e or 0) + (x or 0)) / dt
            rin = _delta(counters.ip_in, prev.ip_in)
            dl = _delta(counters.ip_delivered, prev.ip_delivered)
            fw = _delta(counters.ip_forwarded, prev.ip_forwarded)
            tx = _delta(counters.if_tx_packets, prev.if_tx_packets)
            local = _delta(counters.ip_out_local, prev.ip_out_local)
            self.deltas = {"ip_in": rin, "ip_delivered": dl, "ip_forwarded": fw, "if_tx_packets": tx,
                           "ip_out_local": local, "if_bytes": b, "if_errors": e}
            if rin is not None and dl is not None:
                transit = rin - dl
                # packets that really left: mesh tx minus what we originated (the kernel's forward
                # counter also counts packets netfilter drops later, so it alone misses a black hole)
                sent = max(0, tx - local) if tx is not None and local is not None else fw
                if transit >= MIN_TRANSIT_PACKETS and sent is not None:
                    raw[idx["fwd_ratio"]] = min(1.0, sent / transit, (fw / transit) if fw is not None else 1.0)
        if counters.mem_total_kb and counters.mem_avail_kb is not None:
            raw[idx["mem_util"]] = 1.0 - counters.mem_avail_kb / counters.mem_total_kb
        self.observe_links(neighbours)
        up = {nid for nid, (_, _, _, _, st) in self._links.items() if st}
        rtts = [sr / nr for sr, nr, _, _, st in self._links.values() if st and nr]
        losses = [sl / nl for _, _, sl, nl, st in self._links.values() if st and nl]
        self._links.clear()
        if rtts:
            raw[idx["rtt_ms"]] = float(np.mean(rtts))
        if losses:
            raw[idx["loss_max"]] = max(losses)
        if self._prev_s is not None:
            for _ in range(min(len(up ^ self._up), MAX_LINK_EVENTS)):
                self._events.append(now)
        while self._events and now - self._events[0] > LINK_CHANGES_WINDOW_S:
            self._events.popleft()
        raw[idx["link_changes"]] = len(self._events)
        self._up = up
        self._prev, self._prev_s = counters, now
        self.last = {n: float(raw[i]) for n, i in idx.items()}
        return raw


def xdp_dropped_total(snapshot: Any, interfaces: Iterable[str]) -> int | None:
    """Cumulative XDP drops over the mesh interfaces from the telemetry snapshot (docs/telemetry.md);
    None without a snapshot or without BPF."""
    if not isinstance(snapshot, Mapping) or snapshot.get("bpf") is not True:
        return None
    ifs = snapshot.get("interfaces")
    if not isinstance(ifs, Mapping):
        return None
    total = 0
    for name in interfaces:
        v = ifs.get(name, {}).get("dropped") if isinstance(ifs.get(name), Mapping) else None
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            total += v
    return total
