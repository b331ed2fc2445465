"""Self-healing bench: time to repair injected faults on a namespace mesh of real daemons — x0node with its
healing loop active, x0node with routing only (no `[healing]` section) and babeld — in one run.

Mesh: `grid:3x4` (12 nodes, 17 links; every link and every inner node has a way around it). Each setting
gets a fresh mesh, converges, then receives the same schedule of faults from the fault lab
(lab/x0lab/testbed/faults.py, ground truth in `faults.jsonl`):

| kind       | injection                                                                 |
|------------|---------------------------------------------------------------------------|
| silent     | `link-silent A B`: every frame dropped on the link, carrier up             |
| blackhole  | `partial-blackhole X 40`: a transit node drops 40 % of what it forwards    |
| lossy      | `loss A B 20`: 20 % random loss on the link, hellos still pass             |
| congest    | `congest A B 256kbit`: a tbf bottleneck under the ping matrix's 420 kbit/s  |
| cpu_hog    | `cpu-hog X`: the transit node's group capped at 20 % of a CPU, a busy hog   |
| hang       | `hang X`: SIGSTOP the daemon                                               |
| crash      | `kill X` and every link of X silent: the node is gone                       |
| flap       | `flap A B 4`: A's end down and up every 2 s                                |

Between injections the mesh settles (`settle`): the bench waits until no node of the healing setting
holds a mitigation (`GET /api/v1/healing`, at most SETTLE_MAX_S) and the routes have converged, so
each fault is measured on its own and not through the drains an earlier one left (`settle_p95_s` in
the JSON line; `injections_by_kind` and `recovered_per_kind` count each kind).

Transit CPU hog: each node's healing loop reads its CPU from its own cgroup (`cpu_source = "cgroup"`,
x0node/healing/cpu_io.py): the share of CFS periods in which the node group, capped by the fault, was
throttled. The host's /proc/stat, which every namespace shares, would make any busy host look like
twelve overloaded routers.

Traffic through the faulted element: before each injection the bench follows the kernel routes hop by
hop and picks up to MAX_PAIRS node pairs whose path crosses the element now (a link: its two ends and
pairs of their neighbours; a node: pairs of its neighbours it carries; a hung node: also a neighbour to
it, which only a restart brings back). Each pair runs `ping -D -O` every PING_INTERVAL_S with
PING_PAYLOAD_BYTES (the congestion fault is sized against this load), for PRE_S before the fault
(the baseline: median RTT) and until the traffic is back within its SLO for HOLD_S (or MAX_OBS_S).

MTTR (pure, `recovery_s`): a sample is one echo (send time, RTT or lost). A window of HOLD_S starting at
a sample meets the SLO when under 1 % of its echoes were lost and its 90th-percentile RTT is below
max(2 x baseline, baseline + RTT_SLACK_MS) (the slack keeps a 0.1 ms veth baseline from failing on
scheduling noise of a loaded host). A pair's recovery time is the start of the first window after the
last window that missed the SLO (0 if none missed: the fault never took the traffic out of its SLO);
None when the last fully observed window still misses it. An injection's MTTR is the largest over its
pairs (None if any pair never recovered); per kind the p95 over injections (null if any is None — a p95
over never-recovered trials is not a number).

Hung daemons: on a router systemd restarts a daemon that stops petting its watchdog
(`x0-watchdog.conf`: WatchdogSec, TimeoutAbortSec=2s, RestartSec=3). Namespaces have no systemd, so
both x0node settings run under `WatchdogStandIn`, which implements exactly that part of sd_notify(3) and
systemd.service(5): NOTIFY_SOCKET per daemon, the watchdog armed once start-up completed (READY=1),
WATCHDOG_USEC narrowed by the daemon's message, SIGABRT on a missed deadline, SIGKILL after 2 s, start again after 3 s. babeld has no watchdog.

The fault lab runs every daemon in its node's cgroup (v1) below one testbed group; on a host shared with
other work that group would compete as a single process and starve twelve routers, so the bench gives
it the weight of one ordinary process per node (CPU_SHARES_PER_NODE x nodes) — as if each daemon ran
on its own machine, no more.

Healing only (setting `healing`): mode active, everything else as deployed (the guard window after the
daemon's start, 60 s, passes before the quiet period begins).
- False disruptive actions: disruptive actions done (the knowledge store's `actions` table, not undos,
  ok) by any node during a fault-free period before the first injection (QUIET_S), per node-hour.
- RCA top-1 / top-3: the earliest incident opened after the fault began (before its heal) on a node
  next to the element (a link's two ends; a node, its neighbours and itself) is the mesh's answer; its
  last diagnosis before the heal is scored against the fault lab's record (`truth_accepts`). An
  injection with no incident is a miss (`rca_top1`, `rca_top3`); `rca_top1_opened`/`rca_top3_opened`
  score only the injections that opened one (`incident_opened` is that share) — the loop leaves a
  link or node that is simply gone to routing and opens none for it.
- Recovery success: share of injections whose traffic came back within its SLO before MAX_OBS_S.
- Cycle p95: `mape_k_cycle_duration_seconds{phase="cycle"}` from every node's /metrics (the web service
  runs on every node of both x0node settings), quantile as Prometheus' histogram_quantile.
- CPU and RSS healing adds (`cpu_pct`, `rss_mb`): per node, the mean over the nodes of its daemon's
  cgroup (`n<k>/daemon`: cpuacct.usage, memory.stat rss + mapped_file) over the quiet period, minus the
  same of the routing-only mesh (same topology, same bench, no `[healing]` section) over its steady
  period — so both settings must run in the one invocation; `daemon_cpu_pct`/`daemon_rss_mb` give the
  two, `process_cpu_pct`/`process_rss_mb` the daemon process alone (/proc), for comparison with earlier
  runs. `--injections-per-setting routing=3,babeld=3` gives the settings that only provide the baseline
  fewer injections (`injections_per_setting` in the JSON says what ran).

Needs root. Prints a table, the load average, then one JSON line. `--quick` (3 injections per kind, a 3
minute quiet period) took 30 minutes on the loaded 2-core machine; the default is the full 20 injections
per kind and 30 fault-free minutes (about 3-4 hours). `--kinds`, `--settings`, `--injections`, `--quiet`,
`--max-obs`, `--topology` narrow a run; `--keep DIR` keeps the logs, knowledge stores, the fault lab's
ground truth and each injection's ping samples (`<setting>-injections.jsonl`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lab"))

KINDS = ("silent", "blackhole", "lossy", "congest", "cpu_hog", "hang", "crash", "flap")
LINK_KINDS = frozenset({"silent", "lossy", "congest", "flap"})
SETTINGS = ("healing", "routing", "babeld")
TOPOLOGY = "grid:3x4"
PING_INTERVAL_S = 0.02
PING_PAYLOAD_BYTES = 1000  # 50/s x 1048 B = 420 kbit/s per direction and pair
SLO_LOSS = 0.01
SLO_RTT_FACTOR = 2.0
SLO_RTT_QUANTILE = 0.9  # a window's RTT is its 90th percentile
RTT_SLACK_MS = 5.0
HOLD_S = 3.0
PRE_S = 2.0
MIN_OBS_S = {"hang": 20.0, "crash": 6.0}  # a hung node's neighbours notice only after their dead interval
DEFAULT_MIN_OBS_S = 6.0
MAX_OBS_FLOOR_S = {"hang": 45.0}  # watchdog 6 s + abort 2 s + RestartSec 3 s + start and convergence
MAX_PAIRS = 3
SETTLE_MAX_S = 45.0  # wait this long at most for the last fault's mitigations to be lifted
BLACKHOLE_PCT = 40
LOSS_PCT = 20
CONGEST_RATE = "256kbit"
FLAP_PERIOD_S = 4.0
BABEL_HELLO_S = 0.2  # babeld's fastest sane hello (as bench/outage.py's babeld_fast)
# guard windows as deployed; each namespace node is a router of its own, its CPU is its cgroup's
HEALING_SECTION = {"mode": "active", "auto_activate": False, "cpu_source": "cgroup"}
GUARD_AFTER_START_S = 60.0  # the service's default; the quiet period starts once it has passed
CPU_SHARES_PER_NODE = 1024  # cgroup v1 weight of one ordinary process
WATCHDOG_START_S = 30.0  # x0-watchdog.conf WatchdogSec (start allowance)
WATCHDOG_ABORT_S = 2.0  # TimeoutAbortSec
WATCHDOG_RESTART_S = 3.0  # RestartSec of x0node.service
WEB_PORT = 8080
_PING_RE = re.compile(r"^\[(\d+\.\d+)\] (?:(\d+) bytes from .*icmp_seq=(\d+).*time=([\d.]+) ms|"
                      r"no answer yet for icmp_seq=(\d+)|From .*icmp_seq=(\d+).*)")


# ---------------------------------------------------------------------------------------------------
# pure parts (tests/unit/test_bench_healing.py)

@dataclass(frozen=True)
class Sample:
    t: float  # wall time the echo was sent
    rtt_ms: float | None  # None: lost


def parse_ping_line(line: str, interval_s: float = PING_INTERVAL_S) -> tuple[int, float, float | None] | None:
    """(seq, send time, RTT ms or None) from one line of `ping -D -O`; None for other lines. A reply's send
    time is its stamp minus its RTT; an unanswered echo is reported just before the next is sent."""
    m = _PING_RE.match(line.strip())
    if not m:
        return None
    stamp = float(m.group(1))
    if m.group(3) is not None:
        rtt = float(m.group(4))
        return int(m.group(3)), stamp - rtt / 1000.0, rtt
    seq = m.group(5) or m.group(6)
    return int(seq), stamp - interval_s, None


def samples_from_lines(lines: Iterable[str], interval_s: float = PING_INTERVAL_S) -> list[Sample]:
    """One sample per sequence number, by send time: answered if any reply came (a late reply after
    `no answer yet` counts as answered, with its long RTT)."""
    seen: dict[int, tuple[float, float | None]] = {}
    for line in lines:
        got = parse_ping_line(line, interval_s)
        if got is None:
            continue
        seq, t, rtt = got
        old = seen.get(seq)
        if old is None or (old[1] is None and rtt is not None):
            seen[seq] = (t if old is None else min(t, old[0]), rtt)
    return sorted((Sample(t, rtt) for t, rtt in seen.values()), key=lambda s: s.t)


def baseline_ms(samples: Sequence[Sample], before: float) -> float | None:
    rtts = [s.rtt_ms for s in samples if s.t < before and s.rtt_ms is not None]
    return statistics.median(rtts) if rtts else None


def rtt_limit_ms(baseline: float) -> float:
    return max(SLO_RTT_FACTOR * baseline, baseline + RTT_SLACK_MS)


def window_ok(window: Sequence[Sample], limit_ms: float, loss_max: float = SLO_LOSS) -> bool:
    if not window:
        return False
    rtts = [s.rtt_ms for s in window if s.rtt_ms is not None]
    lost = len(window) - len(rtts)
    if lost / len(window) >= loss_max:
        return False
    rtts.sort()
    return rtts[min(len(rtts) - 1, int(SLO_RTT_QUANTILE * len(rtts)))] < limit_ms


def recovery_s(samples: Sequence[Sample], t0: float, limit_ms: float, hold_s: float = HOLD_S,
               loss_max: float = SLO_LOSS) -> float | None:
    """Seconds from t0 until the traffic is back within its SLO (see the module docstring)."""
    s = [x for x in samples if x.t >= t0]
    if not s:
        return None
    end = s[-1].t
    last_fail: int | None = None
    evaluated = -1
    j = 0
    for i in range(len(s)):
        if s[i].t + hold_s > end:
            break
        j = max(j, i)
        while j < len(s) and s[j].t < s[i].t + hold_s:
            j += 1
        evaluated = i
        if not window_ok(s[i:j], limit_ms, loss_max):
            last_fail = i
    if evaluated < 0 or last_fail == evaluated:
        return None
    if last_fail is None:
        return 0.0
    return s[last_fail + 1].t - t0


def last_window_ok(samples: Sequence[Sample], t0: float, limit_ms: float, hold_s: float = HOLD_S) -> bool:
    """Does the last fully observed window after t0 meet the SLO? (`recovery_s` is None exactly when not.)"""
    s = [x for x in samples if x.t >= t0]
    if not s or s[-1].t - s[0].t < hold_s:
        return False
    end = s[-1].t
    i = max(k for k in range(len(s)) if s[k].t + hold_s <= end)
    return window_ok([x for x in s[i:] if x.t < s[i].t + hold_s], limit_ms)


def injection_mttr(per_pair: Sequence[float | None]) -> float | None:
    if not per_pair or any(v is None for v in per_pair):
        return None
    return max(v for v in per_pair if v is not None)


def p95(values: Sequence[float | None]) -> float | None:
    """Nearest-rank p95; None when empty or when any value is None (never recovered)."""
    if not values or any(v is None for v in values):
        return None
    s = sorted(v for v in values if v is not None)
    k = max(0, min(len(s) - 1, int(round(0.95 * (len(s) - 1)))))
    return s[k]


def truth_accepts(kind: str, a_id: str, b_id: str | None, observer_ifname: str | None = None) -> set[tuple[str, str]]:
    """The (element, fault kind) answers that name an injected fault correctly. Link elements are
    `link:<lower id>~<higher id>`, nodes `node:<id>`; a silent link may also be named as the observer's
    stuck interface towards the far end; a hung daemon looks, from its neighbours, like a node down."""
    link = f"link:{min(a_id, b_id or '')}~{max(a_id, b_id or '')}" if b_id is not None else ""
    node = f"node:{a_id}"
    if kind == "silent":
        out = {(link, k) for k in ("link_down", "link_lossy", "link_flapping", "link_congested")}
        if observer_ifname:
            out.add((f"interface:{observer_ifname}", "interface_stuck"))
        return out
    return {
        "lossy": {(link, "link_lossy")},
        "congest": {(link, "link_congested")},
        "flap": {(link, "link_flapping")},
        "blackhole": {(node, "node_blackhole")},
        "cpu_hog": {(node, "node_overload")},
        "hang": {(node, "node_down"), (node, "service_hung")},
        "crash": {(node, "node_down")},
    }[kind]


def rca_hits(candidates: Sequence[Sequence[Any]], accepts: set[tuple[str, str]]) -> tuple[bool, bool]:
    """(top-1 hit, top-3 hit) of a diagnosis [[element, fault, confidence], ...] (best first)."""
    names = [(str(c[0]), str(c[1])) for c in candidates]
    return bool(names[:1]) and names[0] in accepts, any(n in accepts for n in names[:3])


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus histogram_quantile over cumulative (upper bound, count) buckets, +Inf last."""
    b = sorted(buckets)
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in b:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 1.0)
        prev_le, prev_n = le, n
    return b[-2][0] if len(b) > 1 else None


def parse_cycle_buckets(text: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("mape_k_cycle_duration_seconds_bucket{") and 'phase="cycle"' in line:
            le = re.search(r'le="([^"]+)"', line)
            value = line.rsplit(None, 1)[-1]
            if le:
                out[float(le.group(1))] = float(value)
    return out


# ---------------------------------------------------------------------------------------------------
# harness

class Pinger:
    """`ping -D -O` from a namespace to an address; lines kept for `samples_from_lines`."""

    def __init__(self, ns: str, addr: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "ping", "-6", "-n", "-D", "-O", "-i", f"{PING_INTERVAL_S}", "-W", "1",
             "-s", str(PING_PAYLOAD_BYTES), addr],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def samples(self) -> list[Sample]:
        return samples_from_lines(list(self.lines))

    def stop(self) -> None:
        from x0lab.testbed.measure import stop_procs

        stop_procs([self.proc])
        self._thread.join(timeout=2)


class WatchdogStandIn:
    """systemd's watchdog for the namespace daemons (module docstring): one NOTIFY_SOCKET per node."""

    def __init__(self, bed: Any, lock: threading.RLock) -> None:
        self.bed, self.lock = bed, lock
        self.socks: dict[int, socket.socket] = {}
        self.last: dict[int, float] = {}
        self.interval: dict[int, float] = {}
        self.restarts: list[tuple[int, float]] = []  # (node, wall of the abort)
        self._stop = threading.Event()
        for k, node in bed.nodes.items():
            path = pathlib.Path(node.data_dir) / "notify.sock"
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(str(path))
            s.setblocking(False)
            self.socks[k] = s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def env(self, k: int) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.socks[k].getsockname(), "WATCHDOG_USEC": str(int(WATCHDOG_START_S * 1e6))}

    def started(self, k: int) -> None:
        """A daemon was spawned: armed at its READY=1 (systemd starts the watchdog once start-up completed)."""
        self.last.pop(k, None)
        self.interval[k] = WATCHDOG_START_S

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import select

        by_fd = {s.fileno(): k for k, s in self.socks.items()}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self.socks.values()), [], [], 0.1)
            for s in ready:
                k = by_fd[s.fileno()]
                with contextlib.suppress(BlockingIOError):
                    while True:
                        msg = s.recv(4096).decode(errors="replace")
                        for item in msg.split("\n"):
                            if item in ("WATCHDOG=1", "READY=1"):
                                self.last[k] = time.monotonic()
                            elif item.startswith("WATCHDOG_USEC="):
                                with contextlib.suppress(ValueError):
                                    self.interval[k] = int(item.split("=", 1)[1]) / 1e6
            now = time.monotonic()
            for k in list(self.last):
                if now - self.last[k] > self.interval.get(k, WATCHDOG_START_S):
                    self._restart(k)

    def _restart(self, k: int) -> None:
        self.last.pop(k, None)
        node = self.bed.nodes[k]
        pid = node.pid
        if pid is None:
            return
        self.restarts.append((k, time.time()))
        print(f"   watchdog: n{k} missed its deadline; abort, restart", file=sys.stderr, flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGABRT)
        time.sleep(WATCHDOG_ABORT_S)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(WATCHDOG_RESTART_S)
        with self.lock:
            if node.pid == pid:
                self.bed.stop(k, timeout_s=1.0)
                self.bed.start(k, wait=False)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        for s in self.socks.values():
            path = s.getsockname()
            s.close()
            with contextlib.suppress(OSError):
                os.unlink(path)


def make_bed(run_dir: pathlib.Path, setting: str, topology: str = TOPOLOGY) -> Any:
    from x0lab.testbed.bed import Testbed

    class BenchBed(Testbed):
        watchdog: WatchdogStandIn | None = None

        def start(self, name: Any, wait: bool = True) -> Any:
            node = self.node(name)
            wd = self.watchdog
            if wd is None or self.alive(node.index):
                return super().start(name, wait)
            saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
            os.environ.update(wd.env(node.index))
            try:
                wd.started(node.index)
                return super().start(name, wait)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

    daemon = "babeld" if setting == "babeld" else "x0node"
    sections = {"healing": dict(HEALING_SECTION)} if setting == "healing" else None
    bed = BenchBed.create(run_dir / setting, topology, daemon, web=daemon == "x0node", sections=sections,
                          babel_hello_s=BABEL_HELLO_S if daemon == "babeld" else None)
    from x0lab.testbed import cgroups

    if cgroups.available():  # the testbed's group competes as one process; each daemon is a router of its own
        for node in bed.nodes.values():
            groups = bed.node_cgroups(node)
        cgroups.write(groups["cpu"]["node"].parent, "cpu.shares", CPU_SHARES_PER_NODE * len(bed.nodes))
    return bed


def trace(bed: Any, src: int, dst: int, max_hops: int = 16) -> list[int] | None:
    """The path the kernel routes take from src to dst now (node indexes), None if broken."""
    from x0lab.testbed import measure

    addr = bed.nodes[dst].mesh_addr
    path, cur = [src], src
    while cur != dst and len(path) <= max_hops:
        dev = measure.route_dev(bed, cur, addr)
        nxt = next((j for j, ifname in bed.nodes[cur].ifaces.items() if ifname == dev), None)
        if nxt is None or nxt in path:
            return None
        path.append(nxt)
        cur = nxt
    return path if cur == dst else None


def crosses(path: Sequence[int], a: int, b: int | None) -> bool:
    if b is None:
        return a in path[1:-1]
    return any({x, y} == {a, b} for x, y in zip(path, path[1:], strict=False))


def pairs_through(bed: Any, kind: str, a: int, b: int | None, rng: random.Random) -> list[tuple[int, int]]:
    topo = bed.topology
    out: list[tuple[int, int]] = []
    if b is not None:
        p = trace(bed, a, b)
        if p is not None and crosses(p, a, b):
            out.append((a, b))
        cands = [(s, d) for s in topo.neighbours(a) if s != b for d in topo.neighbours(b) if d != a and d != s]
    else:
        nb = topo.neighbours(a)
        cands = [(s, d) for s in nb for d in nb if s < d]
    rng.shuffle(cands)
    for s, d in cands:
        if len(out) >= (MAX_PAIRS - (1 if kind == "hang" else 0)):
            break
        p = trace(bed, s, d)
        if p is not None and crosses(p, a, b):
            out.append((s, d))
    if kind == "hang" and out:
        s = rng.choice(topo.neighbours(a))
        if trace(bed, s, a) is not None:
            out.append((s, a))
    return out


@dataclass
class Injection:
    setting: str
    kind: str
    a: int
    b: int | None
    pairs: list[tuple[int, int]]
    t0: float = 0.0
    t_heal: float = 0.0
    per_pair: list[float | None] = field(default_factory=list)
    baselines: list[float | None] = field(default_factory=list)
    mttr_s: float | None = None
    rca: tuple[bool, bool] | None = None
    diagnosis: list[Any] | None = None
    samples: list[list[tuple[float, float | None]]] = field(default_factory=list, repr=False)
    paths_end: list[list[list[int] | None]] = field(default_factory=list)  # per pair: forward, back
    settle_s: float | None = None  # after the heal: until every mitigation was lifted and routes converged


def inject(bed: Any, kind: str, a: int, b: int | None) -> float:
    """Apply the fault; returns its ground-truth start (wall)."""
    if kind == "silent":
        rec = bed.fault("link-silent", a, b)
    elif kind == "lossy":
        rec = bed.fault("loss", a, b, percent=LOSS_PCT)
    elif kind == "congest":
        rec = bed.fault("congest", a, b, rate=CONGEST_RATE)
    elif kind == "flap":
        rec = bed.fault("flap", a, b, period_s=FLAP_PERIOD_S)
    elif kind == "blackhole":
        rec = bed.fault("partial-blackhole", a, percent=BLACKHOLE_PCT)
    elif kind == "cpu_hog":
        rec = bed.fault("cpu-hog", a)
    elif kind == "hang":
        rec = bed.fault("hang", a)
    elif kind == "crash":
        rec = bed.fault("kill", a)
        for j in bed.topology.neighbours(a):
            bed.fault("link-silent", a, j)
    else:
        raise ValueError(kind)
    return float(rec["start"]["wall"]) - float(rec["start"]["uncertainty_s"])


def heal(bed: Any, kind: str, a: int, b: int | None) -> None:
    if kind == "crash":
        for j in bed.topology.neighbours(a):
            bed.heal(a, j)
        bed.heal(a)
    elif kind in ("hang", "blackhole", "cpu_hog"):
        bed.heal(a)
        if not bed.alive(a):  # a hung daemon the watchdog was about to restart
            bed.start(a)
    else:
        bed.heal(a, b)


def read_incidents(data_dir: str, since: float, until: float) -> list[dict[str, Any]]:
    """Incidents opened in [since, until] with the diagnoses recorded up to `until` (read-only)."""
    path = pathlib.Path(data_dir) / "healing" / "knowledge.sqlite"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute("SELECT id, opened_wall FROM incidents WHERE opened_wall BETWEEN ? AND ? ORDER BY id",
                          (since, until)).fetchall()
        out = []
        for iid, opened in rows:
            diags = [json.loads(b) for (b,) in db.execute(
                "SELECT body FROM events WHERE incident_id = ? AND type = 'Diagnosed' AND wall <= ? ORDER BY seq",
                (iid, until))]
            out.append({"id": iid, "opened": opened, "diagnoses": diags})
        return out
    except sqlite3.Error:
        return []
    finally:
        db.close()


def count_actions(bed: Any, since: float, until: float) -> dict[str, int]:
    out = {"disruptive": 0, "any": 0, "refused": 0}
    for node in bed.nodes.values():
        path = pathlib.Path(node.data_dir) / "healing" / "knowledge.sqlite"
        if not path.exists():
            continue
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            for disruptive, ok in db.execute(
                    "SELECT disruptive, ok FROM actions WHERE undo = 0 AND wall BETWEEN ? AND ?", (since, until)):
                out["any"] += 1
                out["refused"] += 0 if ok else 1
                out["disruptive"] += 1 if (disruptive and ok) else 0
    return out


def score_rca(bed: Any, inj: Injection) -> None:
    topo = bed.topology
    observers = [inj.a, inj.b] if inj.b is not None else [*topo.neighbours(inj.a), inj.a]
    first: tuple[float, int, dict[str, Any]] | None = None
    for k in observers:
        for inc in read_incidents(bed.nodes[k].data_dir, inj.t0 - 0.5, inj.t_heal):
            if first is None or inc["opened"] < first[0]:
                first = (inc["opened"], k, inc)
    if first is None or not first[2]["diagnoses"]:
        inj.rca = (False, False)
        return
    _, k, inc = first
    cands = inc["diagnoses"][-1].get("candidates", [])
    a_id = bed.nodes[inj.a].node_id
    b_id = bed.nodes[inj.b].node_id if inj.b is not None else None
    if inj.b is not None:
        far = inj.b if k == inj.a else inj.a
        ifname = bed.nodes[k].ifaces.get(far)
    else:
        ifname = None
    inj.diagnosis = [f"n{k}", cands[:3]]
    inj.rca = rca_hits(cands, truth_accepts(inj.kind, a_id, b_id, ifname))


def run_injection(bed: Any, lock: threading.RLock, inj: Injection, max_obs_s: float) -> None:
    pingers = [Pinger(bed.nodes[s].ns, bed.nodes[d].mesh_addr) for s, d in inj.pairs]
    try:
        time.sleep(PRE_S)
        with lock:
            inj.t0 = inject(bed, inj.kind, inj.a, inj.b)
        min_obs = MIN_OBS_S.get(inj.kind, DEFAULT_MIN_OBS_S)
        max_obs_s = max(max_obs_s, MAX_OBS_FLOOR_S.get(inj.kind, 0.0))
        while True:
            time.sleep(0.5)
            elapsed = time.time() - inj.t0
            if elapsed >= max_obs_s:
                break
            if elapsed < min_obs:
                continue
            samples = [p.samples() for p in pingers]
            if all(last_window_ok(s, inj.t0, rtt_limit_ms(baseline_ms(s, inj.t0) or 0.1)) for s in samples):
                break
        inj.t_heal = time.time()
        with lock:  # where the traffic goes at the end: does it still cross the faulted element?
            inj.paths_end = [[trace(bed, s, d), trace(bed, d, s)] for s, d in inj.pairs]
    finally:
        for p in pingers:
            p.stop()
    samples = [p.samples() for p in pingers]
    inj.samples = [[(round(x.t, 4), x.rtt_ms) for x in ps] for ps in samples]
    inj.baselines = [baseline_ms(s, inj.t0) for s in samples]
    inj.per_pair = [recovery_s([x for x in s if x.t <= inj.t_heal], inj.t0, rtt_limit_ms(b or 0.1))
                    for s, b in zip(samples, inj.baselines, strict=True)]
    inj.mttr_s = injection_mttr(inj.per_pair)
    if inj.setting == "healing":
        score_rca(bed, inj)
    with lock:
        heal(bed, inj.kind, inj.a, inj.b)


def parse_gauge(text: str, name: str) -> float | None:
    """An unlabelled gauge's value from Prometheus text exposition (None when absent)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            with contextlib.suppress(ValueError):
                return float(parts[1])
    return None


def mitigations_in_force(bed: Any) -> dict[int, float | None]:
    """Node -> how many mitigations its healing loop holds (`x0_healing_mitigations_in_force` on its
    /metrics), nodes with none left out; None where /metrics did not answer (a daemon restarting holds
    none, but one that is busy may: it is asked again)."""
    out: dict[int, float | None] = {}
    for k, node in bed.nodes.items():
        if not bed.alive(k):
            continue
        res = subprocess.run(["ip", "netns", "exec", node.ns, "curl", "-s", "-m", "3",
                              f"http://[::1]:{WEB_PORT}/metrics"], capture_output=True, text=True, timeout=10)
        held = parse_gauge(res.stdout, "x0_healing_mitigations_in_force")
        if held is None or held > 0:
            out[k] = held
    return out


def settle(bed: Any, setting: str, timeout_s: float = SETTLE_MAX_S) -> float:
    """Let the mesh settle before the next injection: every mitigation lifted (healing), then the routes
    converged. Returns the seconds it took (a fault's mitigations held into the next fault would measure
    the two together)."""
    from x0lab.testbed import measure

    t0 = time.monotonic()
    if setting == "healing":
        held: dict[int, float | None] = {}
        while time.monotonic() - t0 < timeout_s:
            held = mitigations_in_force(bed)
            if not held:
                break
            time.sleep(1.0)
        if held:
            print(f"   mitigations still in force after {timeout_s:.0f} s: {held}", file=sys.stderr, flush=True)
    if measure.wait_converged(bed, 60.0) is None:
        print("   mesh did not converge again within the timeout", file=sys.stderr, flush=True)
    time.sleep(2.0)
    return time.monotonic() - t0


def cgroup_stats(bed: Any) -> dict[int, tuple[float, float]]:
    """Per node: (CPU seconds so far, resident MB) of its daemon's control group (`n<k>/daemon`, which holds
    the daemon and anything it starts): cpuacct.usage, and memory.stat's rss + mapped_file (anonymous and
    file-mapped pages charged to the group: what the node uses, as the kernel accounts it). Empty where
    the hierarchies are not mounted."""
    from x0lab.testbed import cgroups

    out: dict[int, tuple[float, float]] = {}
    if not cgroups.available():
        return out
    for k, node in bed.nodes.items():
        try:
            groups = bed.node_cgroups(node)
            cpu_dir = groups.get("cpuacct", groups["cpu"])["daemon"]
            cpu_s = cgroups.read_int(cpu_dir, "cpuacct.usage") / 1e9
            mem = cgroups.stat(groups["memory"]["daemon"], "memory.stat")
        except (OSError, ValueError, KeyError):
            continue
        out[k] = (cpu_s, (mem.get("rss", 0) + mem.get("mapped_file", 0)) / 2**20)
    return out


def _mean_rates(c0: dict[int, tuple[float, float]], c1: dict[int, tuple[float, float]],
                seconds: float) -> tuple[float, float] | None:
    keys = [k for k in c1 if k in c0 and c1[k][0] >= c0[k][0]]  # a restarted node's counter starts over
    if not keys or seconds <= 0:
        return None
    return (100 * statistics.mean((c1[k][0] - c0[k][0]) / seconds for k in keys),
            statistics.mean(c1[k][1] for k in keys))


def steady_stats(bed: Any, seconds: float) -> dict[str, float]:
    """Mean CPU % (of one core) and resident MB per node over `seconds`: `cpu_pct`/`rss_mb` from each
    node's daemon cgroup (`cgroup_stats`), `proc_cpu_pct`/`proc_rss_mb` from the daemon process alone
    (/proc: user + system time, VmRSS). The cgroup figures fall back to the process ones without cgroups."""
    p0, g0, w0 = bed.process_stats(), cgroup_stats(bed), time.monotonic()
    time.sleep(seconds)
    p1, g1, w1 = bed.process_stats(), cgroup_stats(bed), time.monotonic()
    proc = _mean_rates(p0, p1, w1 - w0) or (0.0, 0.0)
    group = _mean_rates(g0, g1, w1 - w0) or proc
    return {"cpu_pct": group[0], "rss_mb": group[1], "proc_cpu_pct": proc[0], "proc_rss_mb": proc[1],
            "window_s": w1 - w0, "source": "cgroup" if g1 else "process"}


def cycle_p95_ms(bed: Any) -> float | None:
    total: dict[float, float] = {}
    for node in bed.nodes.values():
        out = subprocess.run(["ip", "netns", "exec", node.ns, "curl", "-s", "-m", "5",
                              f"http://[::1]:{WEB_PORT}/metrics"], capture_output=True, text=True, timeout=15)
        for le, n in parse_cycle_buckets(out.stdout).items():
            total[le] = total.get(le, 0.0) + n
    q = histogram_quantile(0.95, list(total.items()))
    return None if q is None else q * 1000.0


def elements(bed: Any, kind: str, rng: random.Random) -> list[tuple[int, int | None]]:
    topo = bed.topology
    if kind in LINK_KINDS:
        items: list[tuple[int, int | None]] = [(a, b) for a, b in topo.links]
    else:
        items = [(k, None) for k in topo_nodes(topo) if len(topo.neighbours(k)) >= 3]
    rng.shuffle(items)
    return items


def topo_nodes(topo: Any) -> list[int]:
    return list(range(1, topo.nodes + 1))


def run_setting(setting: str, run_dir: pathlib.Path, kinds: Sequence[str], injections: int, quiet_s: float,
                steady_s: float, max_obs_s: float, seed: int, topology: str = TOPOLOGY) -> dict[str, Any]:
    from x0lab.testbed import measure

    print(f"== {setting}", file=sys.stderr, flush=True)
    rng = random.Random(f"{seed}")
    bed = make_bed(run_dir, setting, topology)
    lock = threading.RLock()
    res: dict[str, Any] = {"setting": setting, "injections": []}
    t_setting = time.monotonic()
    wd = None
    try:
        if setting != "babeld":
            wd = WatchdogStandIn(bed, lock)
            bed.watchdog = wd
            wd.start()
        bed.start_all(timeout_s=120.0)
        t_ready = time.monotonic()
        conv = measure.wait_converged(bed, 120.0)
        res["converge_s"] = conv
        time.sleep(3.0)
        if setting == "healing":
            time.sleep(max(0.0, GUARD_AFTER_START_S - (time.monotonic() - t_ready)))
            q0 = time.time()
            res.update(steady_stats(bed, quiet_s))
            q1 = time.time()
            res["quiet_s"] = q1 - q0
            res["quiet_actions"] = count_actions(bed, q0, q1)
            res["cycle_p95_ms_quiet"] = cycle_p95_ms(bed)
        elif setting == "routing":
            res.update(steady_stats(bed, steady_s))
        else:
            res.update(steady_stats(bed, min(steady_s, 30.0)))
        for kind in kinds:
            pool = elements(bed, kind, random.Random(f"{seed}-{kind}"))
            done = 0
            idx = 0
            misses = 0
            while done < injections and misses < 3 * len(pool):
                a, b = pool[idx % len(pool)]
                idx += 1
                with lock:
                    pairs = pairs_through(bed, kind, a, b, rng)
                if not pairs:
                    misses += 1
                    continue
                inj = Injection(setting, kind, a, b, pairs)
                try:
                    run_injection(bed, lock, inj, max_obs_s)
                except Exception as exc:  # noqa: BLE001 - one failed injection is reported, the run goes on
                    print(f"   {setting} {kind} on {a}-{b}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    with lock, contextlib.suppress(Exception):
                        heal(bed, kind, a, b)
                    misses += 1
                    settle(bed, setting)
                    continue
                done += 1
                res["injections"].append(inj)
                with open(run_dir / f"{setting}-injections.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({k: v for k, v in vars(inj).items()}) + "\n")
                inj.samples = []
                where = f"n{a}-n{b}" if b is not None else f"n{a}"
                print(f"   {setting} {kind} #{done} {where} pairs {inj.pairs}: mttr "
                      f"{'never' if inj.mttr_s is None else f'{inj.mttr_s:.2f} s'} (per pair {fmt(inj.per_pair)}, "
                      f"base {fmt(inj.baselines)} ms)"
                      + (f" rca {inj.rca} {inj.diagnosis}" if inj.rca is not None else ""), file=sys.stderr, flush=True)
                inj.settle_s = settle(bed, setting)
        if setting == "healing":
            res["cycle_p95_ms"] = cycle_p95_ms(bed)
            res["all_actions"] = count_actions(bed, 0.0, time.time())
        res["watchdog_restarts"] = len(wd.restarts) if wd else 0
        res["duration_s"] = time.monotonic() - t_setting
    finally:
        if wd is not None:
            wd.close()
        bed.down()
    return res


def fmt(values: Sequence[float | None]) -> str:
    return "[" + ", ".join("-" if v is None else f"{v:.2f}" for v in values) + "]"


def summarize(results: dict[str, dict[str, Any]], kinds: Sequence[str], nodes: int,
              topology: str = TOPOLOGY) -> dict[str, Any]:
    def by_kind(setting: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for kind in kinds:
            vals = [i.mttr_s for i in results.get(setting, {}).get("injections", []) if i.kind == kind]
            v = p95(vals)
            out[kind] = None if v is None else round(v, 2)
        return out

    h = results.get("healing", {})
    r = results.get("routing", {})
    hinj = h.get("injections", [])
    rca = [i.rca for i in hinj if i.rca is not None]
    out: dict[str, Any] = {
        "bench": "healing",
        "topology": topology,
        "injections_per_kind": max((sum(1 for i in hinj if i.kind == k) for k in kinds), default=0),
        "mttr_p95_s": by_kind("healing"),
        "mttr_p95_s_routing_only": by_kind("routing"),
        "mttr_p95_s_babeld": by_kind("babeld"),
        "recovery_success": round(sum(1 for i in hinj if i.mttr_s is not None) / len(hinj), 3) if hinj else None,
        "rca_top1": round(sum(1 for t1, _ in rca if t1) / len(rca), 3) if rca else None,
        "rca_top3": round(sum(1 for _, t3 in rca if t3) / len(rca), 3) if rca else None,
        "false_actions_per_node_hour": None,
        "cycle_p95_ms": None if h.get("cycle_p95_ms") is None else round(h["cycle_p95_ms"], 2),
        "cpu_pct": None,
        "rss_mb": None,
    }
    opened = [i.rca for i in hinj if i.rca is not None and i.diagnosis is not None]
    out["incident_opened"] = round(len(opened) / len(rca), 3) if rca else None
    out["rca_top1_opened"] = round(sum(1 for t1, _ in opened if t1) / len(opened), 3) if opened else None
    out["rca_top3_opened"] = round(sum(1 for _, t3 in opened if t3) / len(opened), 3) if opened else None
    if "quiet_actions" in h and h.get("quiet_s"):
        out["false_actions_per_node_hour"] = round(h["quiet_actions"]["disruptive"] / (nodes * h["quiet_s"] / 3600), 3)
        out["quiet_s"] = round(h["quiet_s"])
        out["quiet_disruptive_actions"] = h["quiet_actions"]["disruptive"]
    if "cpu_pct" in h and "cpu_pct" in r:  # what healing adds: the same mesh with routing only, per node
        out["cpu_pct"] = round(h["cpu_pct"] - r["cpu_pct"], 2)
        out["rss_mb"] = round(h["rss_mb"] - r["rss_mb"], 2)
        out["cpu_rss_source"] = h.get("source", "process")
        out["daemon_cpu_pct"] = {"healing": round(h["cpu_pct"], 2), "routing": round(r["cpu_pct"], 2)}
        out["daemon_rss_mb"] = {"healing": round(h["rss_mb"], 2), "routing": round(r["rss_mb"], 2)}
        if "proc_cpu_pct" in h and "proc_cpu_pct" in r:
            out["process_cpu_pct"] = {"healing": round(h["proc_cpu_pct"], 2), "routing": round(r["proc_cpu_pct"], 2)}
            out["process_rss_mb"] = {"healing": round(h["proc_rss_mb"], 2), "routing": round(r["proc_rss_mb"], 2)}
    elif "cpu_pct" in h:
        out["daemon_cpu_pct"] = {"healing": round(h["cpu_pct"], 2)}
        out["daemon_rss_mb"] = {"healing": round(h["rss_mb"], 2)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="3 injections per kind, 180 s quiet period, 30 s observation cap")
    ap.add_argument("--injections", type=int, default=None, help="injections per kind and setting (default 20)")
    ap.add_argument("--injections-per-setting", metavar="SETTING=N,...", default="",
                    help="fewer (or more) injections per kind for some settings, e.g. routing=3,babeld=3")
    ap.add_argument("--quiet", type=float, default=None, help="fault-free seconds before the faults (default 1800)")
    ap.add_argument("--max-obs", type=float, default=None, help="seconds to wait for recovery (default 60)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {','.join(SETTINGS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--topology", default=TOPOLOGY, help=f"testbed topology (default {TOPOLOGY}; the goals need >= 10 nodes)")
    ap.add_argument("--steady", type=float, default=None, help="seconds of the routing-only CPU/RSS window")
    ap.add_argument("--keep", metavar="DIR", help="keep the run directories (logs, knowledge stores) in DIR")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM cleans up like ^C (testbeds down)
    if os.geteuid() != 0:
        print("bench/healing.py needs root (network namespaces)", file=sys.stderr)
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    settings = [s for s in args.settings.split(",") if s]
    bad = [k for k in kinds if k not in KINDS] + [s for s in settings if s not in SETTINGS]
    if bad:
        print(f"unknown kind or setting: {', '.join(bad)}", file=sys.stderr)
        return 2
    injections = args.injections or (3 if args.quick else 20)
    per_setting: dict[str, int] = {}
    for item in (x for x in args.injections_per_setting.split(",") if x):
        name, _, n = item.partition("=")
        if name not in SETTINGS or not n.isdigit():
            print(f"bad --injections-per-setting item: {item!r}", file=sys.stderr)
            return 2
        per_setting[name] = int(n)
    quiet_s = args.quiet if args.quiet is not None else (180.0 if args.quick else 1800.0)
    max_obs_s = args.max_obs or (30.0 if args.quick else 60.0)
    steady_s = args.steady if args.steady is not None else (60.0 if args.quick else 120.0)
    load0 = os.getloadavg()
    t_start = time.time()
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="x0bench-heal-"))
        for setting in settings:
            results[setting] = run_setting(setting, pathlib.Path(tmp), kinds, per_setting.get(setting, injections),
                                           quiet_s, steady_s,
                                           max_obs_s, args.seed, args.topology)
    load1 = os.getloadavg()
    from x0lab.testbed.topology import parse

    nodes = parse(args.topology).nodes
    out = summarize(results, kinds, nodes, args.topology)
    print(f"{'kind':<10}" + "".join(f"{s + ' p95 s':>18}{s + ' n/miss':>16}" for s in settings))
    for kind in kinds:
        row = f"{kind:<10}"
        for s in settings:
            inj = [i for i in results[s]["injections"] if i.kind == kind]
            v = p95([i.mttr_s for i in inj])
            row += f"{'never' if v is None else f'{v:.2f}':>18}{f'{len(inj)}/{sum(1 for i in inj if i.mttr_s is None)}':>16}"
        print(row)
    h = results.get("healing", {})
    per_kind_rca = {k: [i.rca for i in h.get("injections", []) if i.kind == k and i.rca is not None] for k in kinds}
    print("RCA per kind (top-1, top-3): " + ", ".join(
        f"{k} {sum(1 for a, _ in v if a)}/{len(v)} {sum(1 for _, b in v if b)}/{len(v)}" for k, v in per_kind_rca.items() if v))
    for s in settings:
        r = results[s]
        print(f"{s}: {len(r['injections'])} injections in {r.get('duration_s', 0):.0f} s; converged in "
              f"{r.get('converge_s')} s; daemon CPU {r.get('cpu_pct', 0):.2f} % RSS {r.get('rss_mb', 0):.1f} MB per node "
              f"({r.get('source')}; process alone {r.get('proc_cpu_pct', 0):.2f} %, {r.get('proc_rss_mb', 0):.1f} MB); "
              f"watchdog restarts {r.get('watchdog_restarts')}"
              + (f"; quiet {r['quiet_s']:.0f} s actions {r['quiet_actions']}; cycle p95 quiet "
                 f"{r.get('cycle_p95_ms_quiet')} ms, whole run {r.get('cycle_p95_ms')} ms; all actions "
                 f"{r.get('all_actions')}" if s == "healing" and "quiet_s" in r else ""))
    out["rca_per_kind"] = {k: [round(sum(1 for a, _ in v if a) / len(v), 2), round(sum(1 for _, b in v if b) / len(v), 2)]
                           for k, v in per_kind_rca.items() if v}
    out["injections_by_kind"] = {k: sum(1 for i in h.get("injections", []) if i.kind == k) for k in kinds}
    settles = [i.settle_s for i in h.get("injections", []) if i.settle_s is not None]
    out["settle_p95_s"] = round(p95(settles), 1) if settles else None
    out["recovered_per_kind"] = {k: f"{sum(1 for i in h.get('injections', []) if i.kind == k and i.mttr_s is not None)}/"
                                    f"{sum(1 for i in h.get('injections', []) if i.kind == k)}" for k in kinds}
    out["injections_per_setting"] = {s: len(results[s]["injections"]) for s in settings}
    out["setting_duration_s"] = {s: round(results[s].get("duration_s", 0.0)) for s in settings}
    out["mode"] = "quick" if args.quick else "full"
    out["quiet_s_asked"] = quiet_s
    out["loadavg_start"] = [round(x, 2) for x in load0]
    out["loadavg_end"] = [round(x, 2) for x in load1]
    out["duration_s"] = round(time.time() - t_start)
    print(f"load average at start {load0}, at end {load1}; {out['duration_s']} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
