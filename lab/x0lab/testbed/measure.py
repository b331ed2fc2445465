"""Measurements on a testbed: data-plane outage from a fast ping, convergence, reachability, loss,
throughput and a daemon's CPU.

Rules:
- The outage is measured on the data plane only: a ping every PING_INTERVAL_S from one namespace to a
  mesh address; outage = (longest run of unanswered sequence numbers after the fault) x interval.
- Convergence = every node holds a route to every other node's mesh address in the daemon's table
  with the daemon's protocol number; observed through `ip -j route` in each namespace.
- Loss is counted by `ping` itself (transmitted vs received, each reply waited for PING_WAIT_S);
  throughput is what an iperf3 server in the destination namespace received over TCP, bounded in
  time (and in rate when asked); both only ever reach addresses inside the testbed's namespaces.
- A daemon's own view (neighbours with their throughput and class, mesh statistics) is read from its
  status socket (`x0node status`), never from its logs.
- Every wait has a deadline; nothing here loops forever.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field

from x0lab.testbed.bed import Testbed, proc_stat, sh
from x0node.daemon.control import SOCKET_NAME as STATUS_SOCKET
from x0node.state import control as local_socket

PING_INTERVAL_S = 0.01
PING_WAIT_S = 1.0
IPERF_PORT = 5201
_SEQ_RE = re.compile(r"icmp_seq=(\d+)")
_PING_SUMMARY_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")


def stop_procs(procs: list[subprocess.Popen[str]], wait_s: float = 3.0) -> None:
    """SIGTERM every process, then wait for each; one that outlives `wait_s` is killed."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Pinger:
    """`ping -i 0.01` from a node to an address, replies recorded as (monotonic time, seq)."""

    ns: str
    addr: str
    interval_s: float = PING_INTERVAL_S
    replies: list[tuple[float, int]] = field(default_factory=list)
    started: float = 0.0
    size: int | None = None  # payload bytes (ping's -s); None: ping's default

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        size = [] if self.size is None else ["-s", str(self.size)]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "ping", "-6", "-n", "-i", f"{self.interval_s}", "-W", "1", *size, self.addr],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = _SEQ_RE.search(line)
            if m:
                with self._lock:
                    self.replies.append((time.monotonic(), int(m.group(1))))

    def last_seq(self) -> int | None:
        with self._lock:
            return self.replies[-1][1] if self.replies else None

    def replies_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for ts, _ in self.replies if ts >= t)

    def recovered_since(self, t: float, streak: int) -> bool:
        """True once, after time t, a gap was seen (or not) and the last `streak` seqs all answered."""
        with self._lock:
            seqs = [s for ts, s in self.replies if ts >= t]
        if len(seqs) < streak:
            return False
        tail = seqs[-streak:]
        return tail[-1] - tail[0] == streak - 1

    def stop(self) -> None:
        stop_procs([self.proc])
        self._thread.join(timeout=2)

    def outage_ms(self, fault_at: float) -> float:
        """Longest run of missing sequence numbers among those sent after fault_at, in ms."""
        with self._lock:
            seqs = sorted(s for _, s in self.replies)
            before = [s for ts, s in self.replies if ts < fault_at]
        start = before[-1] if before else (seqs[0] if seqs else 0)
        after = [s for s in seqs if s >= start]
        longest = 0
        for a, b in zip(after, after[1:], strict=False):
            longest = max(longest, b - a - 1)
        return longest * self.interval_s * 1000.0


def outage_trial(
    bed: Testbed, src: int, dst_addr: str, inject, heal, settle, baseline_s: float = 0.5,
    max_outage_s: float = 30.0, streak: int = 30,
) -> float:
    """Ping src->dst, inject the fault, wait for the pings to flow again, heal, wait for settle()."""
    p = Pinger(bed.nodes[src].ns, dst_addr)
    try:
        deadline = time.monotonic() + 5.0
        while p.replies_since(0) < int(baseline_s / PING_INTERVAL_S) and time.monotonic() < deadline:
            time.sleep(0.02)
        fault_at = time.monotonic()
        inject()
        limit = fault_at + max_outage_s
        time.sleep(streak * PING_INTERVAL_S)
        while not p.recovered_since(fault_at + 0.001, streak) and time.monotonic() < limit:
            time.sleep(0.02)
        time.sleep(0.05)
    finally:
        p.stop()
    outage = p.outage_ms(fault_at)
    heal()
    settle()
    return outage


def mesh_prefix(bed: Testbed) -> ipaddress.IPv6Network:
    if bed.daemon == "babeld":
        from x0lab.testbed.bed import BABEL_ULA_PREFIX

        return ipaddress.IPv6Network(f"{BABEL_ULA_PREFIX}/48")
    from x0node.proto.protocol import MESH_ULA_PREFIX

    return ipaddress.IPv6Network(MESH_ULA_PREFIX)


def route_counts(bed: Testbed) -> dict[int, int]:
    """Per node: how many mesh host routes (/128 in the mesh prefix) the daemon installed."""
    return {k: len(v) for k, v in route_dump(bed).items()}


def wait_converged(bed: Testbed, timeout_s: float = 30.0, poll_s: float = 0.02, nodes: list[int] | None = None) -> float | None:
    """Seconds until every node (of `nodes`) has routes to all the others; None on timeout."""
    t0 = time.monotonic()
    members = nodes or list(bed.nodes)
    need = len(members) - 1
    while time.monotonic() - t0 < timeout_s:
        counts = route_counts(bed)
        if all(counts.get(k, 0) >= need for k in members):
            return time.monotonic() - t0
        time.sleep(poll_s)
    return None


def route_dev(bed: Testbed, src: int, addr: str) -> str | None:
    """The interface node src currently uses towards addr (None when unreachable)."""
    text = sh("ip", "-j", "-6", "route", "get", addr, ns=bed.nodes[src].ns, check=False)
    try:
        doc = json.loads(text or "[]")
    except json.JSONDecodeError:
        return None
    if not doc or doc[0].get("type") == "unreachable":
        return None
    return doc[0].get("dev")


def wait_route_dev(bed: Testbed, src: int, addr: str, dev: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if route_dev(bed, src, addr) == dev:
            return True
        time.sleep(0.05)
    return False


def ping_ok(bed: Testbed, src: int, addr: str, count: int = 3, timeout_s: float = 1.0) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", bed.nodes[src].ns, "ping", "-6", "-n", "-c", str(count), "-i", "0.05",
         "-W", str(timeout_s), addr],
        capture_output=True, text=True, timeout=count * timeout_s + 5,
    )
    return out.returncode == 0


def wait_ping(bed: Testbed, src: int, addr: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ping_ok(bed, src, addr, count=1, timeout_s=0.5):
            return True
        time.sleep(0.05)
    return False


class RouteWatcher:
    """Follows the daemons' mesh host routes in every namespace through `ip monitor route` (one
    process per namespace, event-driven: no polling load on a big mesh). Use as a context manager."""

    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        proto, table = bed.route_protocol()
        self._proto_word = "proto babel" if bed.daemon == "babeld" else f"proto {proto}"
        self._table_word = None if table == "main" else f"table {table}"
        self._prefix = mesh_prefix(bed)
        self._lock = threading.Lock()
        self.routes: dict[int, set[str]] = {k: set() for k in bed.nodes}
        self.changed_at: float = time.monotonic()
        self._procs: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RouteWatcher:
        for k, node in self.bed.nodes.items():
            proc = subprocess.Popen(["ip", "-n", node.ns, "monitor", "route"], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, bufsize=1)
            self._procs.append(proc)
            th = threading.Thread(target=self._read, args=(k, proc), daemon=True)
            th.start()
            self._threads.append(th)
        time.sleep(0.1)  # monitors subscribed before the initial dump below
        counts = route_dump(self.bed)
        with self._lock:
            for k, dsts in counts.items():
                self.routes[k] |= dsts
        return self

    def _mine(self, line: str) -> str | None:
        if self._proto_word not in line:
            return None
        if self._table_word is not None and self._table_word not in line:
            return None
        if self._table_word is None and " table " in line:
            return None
        dst = line.split()[0].split("/")[0]
        try:
            return dst if ipaddress.IPv6Address(dst) in self._prefix else None
        except ValueError:
            return None

    def _read(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            deleted = raw.startswith("Deleted ")
            line = raw[len("Deleted "):] if deleted else raw
            dst = self._mine(line)
            if dst is None:
                continue
            with self._lock:
                if deleted:
                    self.routes[k].discard(dst)
                else:
                    self.routes[k].add(dst)
                self.changed_at = time.monotonic()

    def complete(self, nodes: list[int] | None = None) -> bool:
        members = nodes or list(self.routes)
        with self._lock:
            return all(len(self.routes[k]) >= len(members) - 1 for k in members)

    def wait_complete(self, timeout_s: float, nodes: list[int] | None = None) -> float | None:
        """Seconds until every node routes to every other (None on timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.complete(nodes):
                return time.monotonic() - t0
            time.sleep(0.005)
        return None

    def __exit__(self, *exc: object) -> None:
        stop_procs(self._procs)


def route_dump(bed: Testbed) -> dict[int, set[str]]:
    """Per node: the mesh destinations the daemon has routes for right now."""
    proto, table = bed.route_protocol()
    prefix = mesh_prefix(bed)
    out: dict[int, set[str]] = {}
    for k, node in bed.nodes.items():
        text = sh("ip", "-n", node.ns, "-j", "-6", "route", "show", "table", table, "proto", str(proto), check=False)
        try:
            routes = json.loads(text or "[]")
        except json.JSONDecodeError:
            routes = []
        dsts = set()
        for r in routes:
            dst = str(r.get("dst", "")).split("/")[0]
            try:
                if ipaddress.IPv6Address(dst) in prefix:
                    dsts.add(dst)
            except ValueError:
                continue
        out[k] = dsts
    return out


def ping_loss(bed: Testbed, src: int, addr: str, count: int, interval_s: float = 0.005) -> float:
    """Fraction of `count` pings from node src to addr that got no reply."""
    out = subprocess.run(
        ["ip", "netns", "exec", bed.nodes[src].ns, "ping", "-6", "-n", "-q", "-c", str(count), "-i", str(interval_s),
         "-W", str(PING_WAIT_S), addr],
        capture_output=True, text=True, timeout=count * interval_s + 30,
    )
    m = _PING_SUMMARY_RE.search(out.stdout)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"ping from n{src} to {addr} gave no summary: {out.stdout!r} {out.stderr!r}")
    return 1.0 - int(m.group(2)) / int(m.group(1))


def tcp_throughput_bps(bed: Testbed, src: int, dst: int, seconds: float = 3.0, bitrate: str | None = None) -> float:
    """Bits per second an iperf3 server on node dst received from node src over TCP to its mesh address
    (`bitrate` caps the sender, e.g. "50M", to keep an unconstrained run cheap)."""
    addr = bed.nodes[dst].mesh_addr
    assert addr is not None
    server = subprocess.Popen(
        ["ip", "netns", "exec", bed.nodes[dst].ns, "iperf3", "-s", "-1", "-B", addr, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        cmd = ["ip", "netns", "exec", bed.nodes[src].ns, "iperf3", "-c", addr, "-p", str(IPERF_PORT),
               "-t", f"{seconds:g}", "-J", "--connect-timeout", "3000"]
        if bitrate:
            cmd += ["-b", bitrate]
        deadline = time.monotonic() + 10.0
        while True:  # the server needs a moment to listen
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
            doc = json.loads(out.stdout or "{}")
            if "error" not in doc and out.returncode == 0:
                return float(doc["end"]["sum_received"]["bits_per_second"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 n{src} -> n{dst} failed: {doc.get('error') or out.stderr}")
            time.sleep(0.1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=3)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0.0 when it is gone)."""
    st = proc_stat(pid)
    return 0.0 if st is None else st[0]


def node_status(bed: Testbed, k: int) -> dict:
    """Node k's daemon status (`x0node status --json`: neighbours, throughput, mesh statistics)."""
    return local_socket.request(pathlib.Path(bed.nodes[k].data_dir) / STATUS_SOCKET, {"op": "status"})


def neighbour_of(bed: Testbed, k: int, peer: int) -> dict | None:
    """Node k's view of its neighbour `peer` (None while it has none)."""
    for n in node_status(bed, k)["neighbours"]:
        if n["node_id"] == bed.nodes[peer].node_id:
            return n
    return None


def tx_packets(bed: Testbed, k: int, ifname: str) -> int:
    """Packets node k has sent on `ifname` (the kernel's counter)."""
    return int(bed.exec(k, "cat", f"/sys/class/net/{ifname}/statistics/tx_packets").strip())
