"""This node's raw feature vector from kernel counters and the router's neighbour view.

Two parts:
- `read_counters(interfaces, proc, sys)`: the I/O adapter. Reads /proc/stat (CPU), /proc/meminfo,
  /proc/net/snmp and /proc/net/snmp6 (IP forwarding counters) and
  /sys/class/net/<if>/{statistics/*,speed} for the mesh interfaces. Missing or unreadable files give
  missing values (None), never an exception; numbers are bounded by parsing only the fields we need.
- `FeatureState.update(counters, neighbours, now)`: pure. Turns two successive counter snapshots into
  rates, and the router's `neighbours()` view (NeighbourView: `node_id`, `state`, `rtt_ms`, `loss`)
  into link features:
    cpu_util = busy jiffies / all jiffies; mem_util = 1 - MemAvailable / MemTotal (host-wide), or, with
      the node's own cgroup v1 groups (`node_cgroups`, `[anomaly] cgroup`), the node's processes only:
      cpu_util = cpuacct.usage growth / (elapsed x the cores it may use: the tightest CFS quota of its
      `cpu` group and their ancestors, else every online CPU); mem_util = (memory.usage_in_bytes -
      total_inactive_file) / the smaller of hierarchical_memory_limit and MemTotal;
    load = (rx+tx bytes/s * 8) / sum of interface capacities (speed, else DEFAULT_CAPACITY_BPS);
    rtt_ms = mean RTT over UP neighbours, each neighbour's RTT averaged over every `observe_links`
      sample since the previous update (the service samples the view every LINK_SAMPLE_INTERVAL_S);
    loss_max = max loss over UP neighbours (features version 3): a neighbour's loss is the share of its
      control sequence numbers missed since the previous update (growth of the view's `ctl_missed`
      over growth of `ctl_received` + `ctl_missed`), the loss of this interval alone, when at least
      MIN_CONTROL_PACKETS were expected and both counts grew (a new neighbour entry restarts them);
      else its loss EWMA averaged over the samples (version 2; that EWMA over 128 packets holds only
      0.37 of a new loss rate 6 s after it began); an update whose `stall_s` (this node's own worst
      loop lag since the previous update, the router's `loop_lag_peak`) is at least OWN_STALL_S
      measures no loss (features version 4): while the daemon was not scheduled, control packets
      queued in its sockets and the kernel dropped what overflowed them, so the gaps are its own
      stall, not the link (`stalled_ticks` counts these updates);
    link_changes = neighbour losses that held, in the last LINK_CHANGES_WINDOW_S (bounded deque): a
      neighbour UP at one link sample and not UP at a later one counts once it has stayed not UP for
      LINK_HOLD_S (a loss that comes back sooner is a bounce and never counts: on a loaded host a
      quarter-second stall of a daemon drops a 100 ms-hello adjacency for one sample), timed from when
      the router declared it gone (`lost_neighbours()`: LostNeighbourView.down_for_s, never before the
      previous link sample, which still saw it UP) or, without that, from the sample that first
      missed it; a sample that
      loses every UP neighbour at once (two or more) is this node's own stall, not a link fault, and
      counts nothing (`stalls` counts them). Link state advances on every `observe_links(view, now)`
      sample (the service samples every LINK_SAMPLE_INTERVAL_S and at each tick);
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
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from x0node.anomaly.features import FEATURES, LINK_CHANGES_WINDOW_S, NEUTRAL_RAW
from x0node.proto.views import LostNeighbourView, NeighbourView

DEFAULT_CAPACITY_BPS = 100e6
LINK_SAMPLE_INTERVAL_S = 3.0
MIN_TRANSIT_PACKETS = 20
MAX_LINK_EVENTS = 1024
MAX_NEIGHBOURS_READ = 256
MIN_CONTROL_PACKETS = 10
"""A neighbour's per-interval loss needs this many control packets expected (1 s of 100 ms hellos)."""
LINK_HOLD_S = 2.5
"""A lost neighbour counts as a link change once it has stayed not UP this long (samples' `now`)."""
OWN_STALL_S = 1.0
"""An update during which this node's own loop stalled this long or longer measures no control-packet
loss. On a fault-free 22-daemon recording with its CPU capped (a development recording, not judged),
a tick's loss reached 0.15 only in ticks with a stall of at least 1 s (17.6 % of them) and never
below (0 of 4 943 ticks)."""
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
    cg_cpu_ns: int | None = None  # the node's cgroup: cpuacct.usage (ns, cumulative)
    cg_cores: float | None = None  # ... cores it may use (tightest CFS quota, else online CPUs)
    cg_mem_used: int | None = None  # ... memory in use (bytes, without inactive file cache)
    cg_mem_limit: int | None = None  # ... its memory limit (bytes, at most the host's RAM)
    extra: dict[str, Any] = field(default_factory=dict)


CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
CGROUP_MODES = ("", "own", "parent")
"""`[anomaly] cgroup`: "" host-wide CPU/memory; "own": this process's cgroup v1 groups; "parent": the
groups one level above (a node whose daemon and other processes sit in sibling groups below one
node group, as on the namespace testbed)."""
MAX_CGROUP_DEPTH = 16


@dataclass(frozen=True)
class NodeCgroups:
    """The node's own cgroup v1 directories (None where a controller is not mounted)."""

    cpuacct: pathlib.Path | None = None
    cpu: pathlib.Path | None = None
    memory: pathlib.Path | None = None
    mounts: dict[str, pathlib.Path] = field(default_factory=dict)  # controller -> hierarchy root


def node_cgroups(mode: str, proc_cgroup: str, root: pathlib.Path = CGROUP_ROOT) -> NodeCgroups | None:
    """Resolve `[anomaly] cgroup` against /proc/self/cgroup's text (v1 lines `id:controllers:/path`).

    None for the host-wide mode or when no controller we read is mounted; paths never leave their
    hierarchy (`..` and the root's parent are refused)."""
    if mode not in CGROUP_MODES:
        raise ValueError(f"cgroup mode must be one of {CGROUP_MODES}")
    if not mode:
        return None
    found: dict[str, pathlib.Path] = {}
    mounts: dict[str, pathlib.Path] = {}
    for line in proc_cgroup.splitlines()[:64]:
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            continue
        rel = parts[2].strip().strip("/")
        segs = [x for x in rel.split("/") if x]
        if any(x in (".", "..") for x in segs) or len(segs) > MAX_CGROUP_DEPTH:
            continue
        if mode == "parent":
            if not segs:
                continue  # the root has no parent group
            segs = segs[:-1]
        for ctl in parts[1].split(","):
            if ctl in ("cpuacct", "cpu", "memory"):
                mount = root / parts[1]
                found[ctl] = mount.joinpath(*segs)
                mounts[ctl] = mount
    if not found:
        return None
    return NodeCgroups(found.get("cpuacct"), found.get("cpu"), found.get("memory"), mounts)


def _cgroup_cores(cg: NodeCgroups, online: int) -> float:
    """The cores the node's `cpu` group may use: the tightest CFS quota of it and its ancestors."""
    cores = float(max(online, 1))
    if cg.cpu is None:
        return cores
    d, top = cg.cpu, cg.mounts.get("cpu")
    for _ in range(MAX_CGROUP_DEPTH + 1):
        quota, period = _int(_read(d / "cpu.cfs_quota_us", 64)), _int(_read(d / "cpu.cfs_period_us", 64))
        if quota is not None and period and quota > 0:
            cores = min(cores, quota / period)
        if top is None or d == top or d == d.parent:
            break
        d = d.parent
    return cores


def read_cgroup(cg: NodeCgroups, mem_total_kb: int | None, online: int) -> dict[str, Any]:
    """The node's cgroup counters for `Counters` (missing files give None)."""
    out: dict[str, Any] = {}
    if cg.cpuacct is not None:
        out["cg_cpu_ns"] = _int(_read(cg.cpuacct / "cpuacct.usage", 64))
        out["cg_cores"] = _cgroup_cores(cg, online)
    if cg.memory is not None:
        used = _int(_read(cg.memory / "memory.usage_in_bytes", 64))
        stat: dict[str, int] = {}
        for line in (_read(cg.memory / "memory.stat", 16384) or "").splitlines():
            k, _, v = line.partition(" ")
            if k in ("total_inactive_file", "hierarchical_memory_limit") and v.strip().isdigit():
                stat[k] = int(v)
        limit = stat.get("hierarchical_memory_limit") or _int(_read(cg.memory / "memory.limit_in_bytes", 64))
        if mem_total_kb:
            limit = min(limit, mem_total_kb * 1024) if limit else mem_total_kb * 1024
        if used is not None:
            out["cg_mem_used"] = max(0, used - stat.get("total_inactive_file", 0))
        out["cg_mem_limit"] = limit
    return out


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
    interfaces: Iterable[str], proc: pathlib.Path = pathlib.Path("/proc"), sys: pathlib.Path = pathlib.Path("/sys"),
    cgroup: NodeCgroups | None = None, online_cpus: int | None = None,
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
        **(read_cgroup(cgroup, mem_total, online_cpus or os.cpu_count() or 1) if cgroup is not None else {}),
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
        self._up: set[str] = set()  # UP at the last link sample
        self._lost: dict[str, float] = {}  # neighbour -> when it was first seen lost (not counted yet)
        self.stalls = 0  # samples that lost every UP neighbour at once (this node's own stall)
        self.stalled_ticks = 0  # updates that measured no loss: this node's loop stalled >= OWN_STALL_S
        self._events: collections.deque[float] = collections.deque(maxlen=MAX_LINK_EVENTS)
        self._down: dict[str, float] = {}  # neighbour -> when its held loss was counted (still not UP)
        self.last: dict[str, float] = {}
        self.deltas: dict[str, int | None] = {}  # raw counter deltas of the last window (diagnostics)
        # neighbour id -> [rtt sum, rtt samples, loss sum, loss samples, up in the latest sample]
        self._links: dict[str, list[Any]] = {}
        self._ctl: dict[str, tuple[int, int]] = {}  # neighbour -> (ctl_received, ctl_missed) at the last update
        self._sample_s: float | None = None  # the last link sample's `now`

    def observe_links(self, neighbours: Sequence[NeighbourView], now: float | None = None,
                      lost: Sequence[LostNeighbourView] = ()) -> None:
        """One sample of the router's neighbour view; `update` averages all samples since the last one.
        With `now` the sample also advances link state (losses, bounces, stalls: see the module);
        `lost` (the router's `lost_neighbours()`) times each loss from when the router declared it."""
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
        if now is not None:
            gone = {}
            for lv in list(lost)[:MAX_NEIGHBOURS_READ]:
                d = getattr(lv, "down_for_s", None)
                if isinstance(d, int | float) and np.isfinite(d) and d >= 0:
                    gone[lv.node_id] = now - float(d)
            self._link_sample({nid for nid, st in self._links.items() if st[4]}, now, gone)

    def link_changes(self, now: float) -> int:
        """Held neighbour losses in the last LINK_CHANGES_WINDOW_S before `now`."""
        while self._events and now - self._events[0] > LINK_CHANGES_WINDOW_S:
            self._events.popleft()
        return len(self._events)

    def links_down(self, now: float) -> int:
        """Neighbours whose held loss counted in the last LINK_CHANGES_WINDOW_S and that are still not UP:
        a link or neighbour that is down *now*, where `link_changes` also remembers losses that came back."""
        for nid in [n for n, t in self._down.items() if now - t > LINK_CHANGES_WINDOW_S]:
            del self._down[nid]
        return len(self._down)

    def observe_up(self, up: Iterable[str], now: float) -> None:
        """A link sample given as the set of UP neighbour ids (what a tick's recording keeps): the
        same link state machine as `observe_links`, for replaying recordings."""
        self._link_sample(set(list(up)[:MAX_NEIGHBOURS_READ]), now)

    def _link_sample(self, up: set[str], now: float, gone: Mapping[str, float] | None = None) -> None:
        lost = self._up - up
        if len(lost) >= 2 and not (self._up & up):
            self.stalls += 1  # every UP neighbour lost at once: this node stalled, no link failed
        else:
            since = self._sample_s if self._sample_s is not None else now
            for nid in lost:
                if len(self._lost) < MAX_NEIGHBOURS_READ:
                    at = (gone or {}).get(nid, now)  # the router's down time, within (previous sample, now]
                    self._lost.setdefault(nid, min(now, max(since, at)))
        for nid in list(self._lost):
            if nid in up:
                del self._lost[nid]  # back before LINK_HOLD_S: a bounce, never counted
            elif now - self._lost[nid] >= LINK_HOLD_S:
                del self._lost[nid]
                self._events.append(now)
                if len(self._down) < MAX_NEIGHBOURS_READ:
                    self._down[nid] = now
        for nid in [n for n in self._down if n in up]:
            del self._down[nid]  # back: no longer down (its loss stays in link_changes)
        self._up = up
        self._sample_s = now

    def _interval_losses(self, neighbours: Sequence[NeighbourView]) -> dict[str, float]:
        """Each UP neighbour's share of control sequence numbers missed since the previous update
        (only where at least MIN_CONTROL_PACKETS were expected and neither count went back)."""
        out: dict[str, float] = {}
        ctl: dict[str, tuple[int, int]] = {}
        for nb in list(neighbours)[:MAX_NEIGHBOURS_READ]:
            rx, miss = getattr(nb, "ctl_received", None), getattr(nb, "ctl_missed", None)
            if not isinstance(rx, int) or not isinstance(miss, int) or rx < 0 or miss < 0:
                continue
            ctl[nb.node_id] = (rx, miss)
            prev = self._ctl.get(nb.node_id)
            if nb.state != "up" or prev is None or rx < prev[0] or miss < prev[1]:
                continue
            d_rx, d_miss = rx - prev[0], miss - prev[1]
            if d_rx + d_miss >= MIN_CONTROL_PACKETS:
                out[nb.node_id] = d_miss / (d_rx + d_miss)
        self._ctl = ctl
        return out

    def update(self, counters: Counters, neighbours: Sequence[NeighbourView], now: float,
               lost: Sequence[LostNeighbourView] = (), stall_s: float = 0.0) -> np.ndarray:
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
            cg = _delta(counters.cg_cpu_ns, prev.cg_cpu_ns)
            if cg is not None and counters.cg_cores:
                raw[idx["cpu_util"]] = cg / 1e9 / dt / counters.cg_cores
        if counters.cg_mem_used is not None and counters.cg_mem_limit:
            raw[idx["mem_util"]] = counters.cg_mem_used / counters.cg_mem_limit
        elif counters.mem_total_kb and counters.mem_avail_kb is not None:
            raw[idx["mem_util"]] = 1.0 - counters.mem_avail_kb / counters.mem_total_kb
        self.observe_links(neighbours, now, lost)
        interval = self._interval_losses(neighbours)
        rtts = [sr / nr for sr, nr, _, _, st in self._links.values() if st and nr]
        losses = [interval[nid] if nid in interval else sl / nl
                  for nid, (_, _, sl, nl, st) in self._links.items() if st and (nl or nid in interval)]
        self._links.clear()
        if rtts:
            raw[idx["rtt_ms"]] = float(np.mean(rtts))
        stalled = own_stall(stall_s)
        self.stalled_ticks += stalled
        if losses and not stalled:
            raw[idx["loss_max"]] = max(losses)
        raw[idx["link_changes"]] = self.link_changes(now)
        self._prev, self._prev_s = counters, now
        self.last = {n: float(raw[i]) for n, i in idx.items()}
        return raw


def own_stall(stall_s: object) -> bool:
    """Did this node's own loop stall long enough (OWN_STALL_S) for a tick to measure no loss? Only a
    real number counts (NaN compares False): anything else is no evidence of a stall."""
    return isinstance(stall_s, int | float) and not isinstance(stall_s, bool) and stall_s >= OWN_STALL_S


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
