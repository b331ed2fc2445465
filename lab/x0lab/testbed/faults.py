"""The fault lab: every fault the testbed can inject into a namespace mesh, its heal, and its ground truth.

Faults (target: a link A-B, or a node A):
- `link-down A B`: A's end of the veth set down (B sees its carrier go). Heal: both ends up.
- `link-silent A B`: nftables drops every frame at ingress on both ends; the carrier stays up.
- `loss A B PCT`: nftables `numgen random mod 100 < PCT drop` at ingress on both ends.
- `congest A B RATE [BURST]`: a tbf root qdisc of RATE (e.g. 4mbit) on both ends, queueing at most
  CONGEST_QUEUE_MS: a bottleneck that still passes hellos. BURST is the bucket in bytes (default 0:
  10 ms of RATE, at least CONGEST_MIN_BURST_BYTES); ONE_FRAME_BURST_BYTES (one full Ethernet frame,
  the least that passes every frame) makes the link serialise every packet at RATE, like a real link
  of that rate. A congest on a link that has one changes the rate in place (the qdisc is replaced).
- `flap A B PERIOD`: a background flapper sets A's end down and up every PERIOD/2 s (bounded); the lab
  tracks it by pid and stops it on heal or down, leaving the link up.
- `partial-blackhole A PCT`: in A's namespace an nftables chain on the *forward* hook drops PCT % of
  what A forwards (`numgen random`); traffic to or from A itself (input/output hooks, including its
  hellos) is untouched. A round trip through A crosses it twice: it is lost with 1-(1-PCT)^2.
- `cpu-hog A [CAP_PCT]`: A's node group is capped at CAP_PCT % of one CPU, and a busy process with
  CPU_HOG_SHARES_RATIO times the daemon's weight runs beside the daemon in it, both held on one CPU
  (the daemon's threads are pinned for the fault's duration; CFS weights only compete within one
  run queue): the daemon gets at most CAP/(1+ratio) when it wants CPU and waits out throttled
  periods. The host pays at most the cap. Heal restores the daemon's CPU affinity.
- `mem-pressure A [MB]`: A's node group gets a memory limit of its current usage + MB, and a filler
  allocates and touches memory until the group has less than MEM_FREE_BYTES left.
- `hang A`: SIGSTOP to A's daemon (heal: SIGCONT). `kill A`: SIGKILL (heal: start it again).

Rules and invariants:
- One fault per target at a time (a link, or a node); a second one is refused until the first is healed,
  except that faults acting through the same kernel object replace each other in place (REPLACES):
  link-silent and loss (the same ingress chains, flushed and refilled in one nftables batch per end),
  congest and congest (the same root qdisc); the old fault's end is the new one's start.
- Ground truth: a fault's `start` and `end` are stamps `{mono, wall, uncertainty_s}`: `mono` is
  time.monotonic() (CLOCK_MONOTONIC, comparable across processes of one boot, whose id is recorded)
  taken as soon as the lab knows the kernel change is in effect (the command returned, the process is
  stopped, the stressor reported its first effect, the process is gone), `wall` is time.time() taken
  next to it, and the change happened within [mono - uncertainty_s, mono]. Every start and end is
  appended (fsync'd) to `<run_dir>/faults.jsonl`, so the log survives the testbed.
- Everything created is recorded before it is created: nftables tables named `x0tb_*`, tbf qdiscs on
  our own veths, stressor processes by pid and command-line tag, limits on our own node groups.
- Parameters are validated against the table below (`validate`); bad ones raise ValueError naming
  the parameter, before anything is changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from x0lab.testbed import cgroups
from x0lab.testbed.command import TestbedError, sh

if TYPE_CHECKING:
    from x0lab.testbed.bed import NodeInfo, Testbed

FAULT_TABLE = "x0tb_fault"  # netdev: ingress drops on veth ends
NODE_TABLE = "x0tb_node"  # inet: the forward-path drop of partial-blackhole
CONGEST_QUEUE_MS = 100
CONGEST_MIN_BURST_BYTES = 3200  # at least two full frames, or tbf never sends one
ONE_FRAME_BURST_BYTES = 1514  # one full Ethernet frame at MTU 1500: the smallest bucket passing every frame
MAX_BURST_BYTES = 16 << 20
CPU_HOG_SHARES_RATIO = 8
CPU_DAEMON_SHARES = 1024
MEM_FREE_BYTES = 2 << 20
STRESSOR_MAX_S = 3600.0  # a stressor nobody stops ends by itself after an hour
READY_TIMEOUT_S = 20.0
PROCESS_STATE_TIMEOUT_S = 5.0
TRUTH_LOG = "faults.jsonl"
REPLACES = {"link-silent": "ingress", "loss": "ingress", "congest": "qdisc"}
"""Faults that act through the same kernel object (the value) replace each other in place."""


def replaces(old: str, new: str) -> bool:
    """May fault `new` take the place of fault `old` on the same target?"""
    return REPLACES.get(old) is not None and REPLACES.get(old) == REPLACES.get(new)


# --- the table of faults and their parameters (pure) ------------------------------------------------

_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)?$")
_RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000, None: 1}
MIN_RATE_BPS = 8_000
MAX_RATE_BPS = 10_000_000_000


def parse_rate(text: str | int | float) -> int:
    """A rate in tc's notation (`4mbit`, `500kbit`, `1gbit`, or bits/s) as integer bits per second."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        bps = int(text)
    else:
        m = _RATE_RE.match(str(text).strip().lower())
        if not m:
            raise ValueError(f"rate must look like 4mbit, 500kbit or 1gbit, got {text!r}")
        bps = int(float(m.group(1)) * _RATE_UNITS[m.group(2)])
    if not MIN_RATE_BPS <= bps <= MAX_RATE_BPS:
        raise ValueError(f"rate must be between {MIN_RATE_BPS} bit/s and {MAX_RATE_BPS} bit/s, got {bps}")
    return bps


@dataclass(frozen=True)
class Param:
    name: str
    convert: Callable[[Any], Any]
    lo: float | None = None
    hi: float | None = None
    default: Any = None
    help: str = ""

    def check(self, raw: Any) -> Any:
        try:
            value = self.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        if self.lo is not None and not self.lo <= value <= self.hi:  # type: ignore[operator]
            raise ValueError(f"{self.name} must be between {self.lo:g} and {self.hi:g}, got {raw!r}")
        return value


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str  # "link" or "node"
    params: tuple[Param, ...]
    help: str
    needs_daemon: bool = False
    needs_cgroups: bool = False

    def usage(self) -> str:
        nodes = "A B" if self.target == "link" else "A"
        args = " ".join(p.name.upper() if p.default is None else f"[{p.name.upper()}]" for p in self.params)
        return f"{self.name} {nodes} {args}".strip()


def _percent(x: Any) -> float:
    return float(x)


def _burst(x: Any) -> int:
    v = int(x)
    if 0 < v < ONE_FRAME_BURST_BYTES:
        raise ValueError(f"a bucket under {ONE_FRAME_BURST_BYTES} bytes never passes a full frame")
    return v


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("link-down", "link", (), "A's end of the link set down (B sees its carrier go)"),
    FaultKind("link-silent", "link", (), "every frame dropped at ingress on both ends, carrier up"),
    FaultKind("loss", "link", (Param("percent", _percent, 1, 100, help="% of frames dropped"),),
              "random loss at ingress on both ends (nftables numgen)"),
    FaultKind("congest", "link", (Param("rate", parse_rate, help="e.g. 4mbit"),
                                  Param("burst", _burst, 0, MAX_BURST_BYTES, 0,
                                        help="bucket bytes (0: 10 ms of the rate)")),
              f"tbf bottleneck on both ends, at most {CONGEST_QUEUE_MS} ms queued"),
    FaultKind("flap", "link", (Param("period_s", float, 0.2, 600, help="seconds per down+up cycle"),),
              "A's end set down and up every PERIOD/2 s by a background flapper"),
    FaultKind("partial-blackhole", "node", (Param("percent", _percent, 1, 100, help="% of forwarded packets"),),
              "A drops PERCENT % of what it forwards; its own traffic passes"),
    FaultKind("cpu-hog", "node", (Param("cap_pct", float, 1, 100, 20.0, help="node CPU cap, % of one CPU"),),
              f"node capped at CAP % of a CPU, a busy process with {CPU_HOG_SHARES_RATIO}x the daemon's weight",
              needs_daemon=True, needs_cgroups=True),
    FaultKind("mem-pressure", "node", (Param("mb", int, 8, 4096, 64, help="MiB the filler may take"),),
              f"node memory limit = usage + MB, filled to {MEM_FREE_BYTES >> 20} MiB free",
              needs_daemon=True, needs_cgroups=True),
    FaultKind("hang", "node", (), "SIGSTOP the daemon (heal: SIGCONT)", needs_daemon=True),
    FaultKind("kill", "node", (), "SIGKILL the daemon (heal: start it again, same key)", needs_daemon=True),
)}


def validate(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Checked, converted parameters of `kind` (defaults filled in); ValueError names the problem."""
    fk = KINDS.get(kind)
    if fk is None:
        raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(KINDS)}")
    known = {p.name for p in fk.params}
    extra = {k for k, v in params.items() if v is not None} - known
    if extra:
        raise ValueError(f"fault {kind} takes no {', '.join(sorted(extra))}")
    out = {}
    for p in fk.params:
        raw = params.get(p.name)
        if raw is None:
            if p.default is None:
                raise ValueError(f"fault {kind} needs {p.name}")
            raw = p.default
        out[p.name] = p.check(raw)
    return out


def target_key(kind: str, a: int, b: int | None) -> str:
    if KINDS[kind].target == "link":
        assert b is not None
        return f"{min(a, b)}-{max(a, b)}"
    return f"n{a}"


# --- stamps and the ground-truth log -------------------------------------------------------------------

def stamp(t0: float) -> dict[str, float]:
    """Now, for a change that was begun at monotonic time t0 and is known to be in effect now."""
    mono = time.monotonic()
    return {"mono": mono, "wall": time.time(), "uncertainty_s": round(mono - t0, 6)}


def boot_id() -> str:
    try:
        return pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def log_event(run_dir: pathlib.Path, event: dict[str, Any]) -> None:
    with open(run_dir / TRUTH_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_log(run_dir: pathlib.Path) -> list[dict[str, Any]]:
    path = run_dir / TRUTH_LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


# --- processes ----------------------------------------------------------------------------------------

def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...), None when gone."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _wait_state(pid: int, want: Callable[[str | None], bool], what: str) -> None:
    deadline = time.monotonic() + PROCESS_STATE_TIMEOUT_S
    while not want(process_state(pid)):
        if time.monotonic() > deadline:
            raise TestbedError(f"pid {pid} did not become {what} within {PROCESS_STATE_TIMEOUT_S:.0f} s")
        time.sleep(0.001)


def _daemon_in_group(bed: Testbed, na: NodeInfo, group: pathlib.Path) -> int:
    """The daemon's pid, checked to run in the node's group (else the fault would miss it)."""
    pid = bed.daemon_pid(na)
    if pid not in cgroups.procs(group):
        raise TestbedError(f"node {na.index} daemon (pid {pid}) is not in its group {group}; restart it")
    return pid


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of pid (threads started meanwhile inherit it from a pinned
    creator; the listing is repeated until every thread has the mask)."""
    for _ in range(10):
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")] if os.path.isdir(f"/proc/{pid}/task") else []
        if not tids:
            raise ProcessLookupError(pid)
        changed = False
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    changed = True
        if not changed:
            return


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Block until pid has exited (pidfd: woken by the kernel at the exit); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


# --- apply and heal ---------------------------------------------------------------------------------------

def _nft_ingress(ends: list[tuple[NodeInfo, NodeInfo]], rule: str) -> None:
    for x, y in ends:
        ifname = x.ifaces[y.index]
        chain = f"in_{ifname}"
        sh("nft", "-f", "-", ns=x.ns, input=(
            f"add table netdev {FAULT_TABLE}\n"
            f"add chain netdev {FAULT_TABLE} {chain} "
            f'{{ type filter hook ingress device "{ifname}" priority -500; policy accept; }}\n'
            f"flush chain netdev {FAULT_TABLE} {chain}\n"
            f"add rule netdev {FAULT_TABLE} {chain} {rule}\n"
        ))


def ingress_script(x: NodeInfo, y: NodeInfo, rule: str | None) -> str:
    """nft lines for x's end towards y: its ingress chain holding `rule`, or (None) deleted (added first,
    so the delete never fails)."""
    ifname = x.ifaces[y.index]
    chain = f"in_{ifname}"
    add = (f"add chain netdev {FAULT_TABLE} {chain} "
           f'{{ type filter hook ingress device "{ifname}" priority -500; policy accept; }}\n')
    if rule is None:
        return f"{add}delete chain netdev {FAULT_TABLE} {chain}\n"
    return f"{add}flush chain netdev {FAULT_TABLE} {chain}\nadd rule netdev {FAULT_TABLE} {chain} {rule}\n"


def nft_batch(scripts: dict[str, str], timeout: float = 30.0) -> float:
    """Run `nft -f -` with one script per namespace, all at once (each one transaction); raise
    TestbedError if any failed. Every nft is started first and the scripts are released only once all of
    them wait on their input, so the changes land together even when starting processes is slow (one by
    one, a 20-link heal took 20 s on a loaded host). Returns the monotonic time of the release."""
    procs = []
    for ns in scripts:
        procs.append((ns, subprocess.Popen(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=subprocess.PIPE,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + timeout
    pending = [p for _, p in procs]
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if p.poll() is None and not _waits_as(p.pid, "nft")]
        if pending:
            time.sleep(0.005)
    released = time.monotonic()
    for ns, p in procs:
        assert p.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it failed at once: reported below
            p.stdin.write(f"add table netdev {FAULT_TABLE}\n" + scripts[ns])
            p.stdin.close()
    failed = []
    for ns, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode != 0:
            failed.append(f"{ns}: {(p.stderr.read() if p.stderr else '').strip() or p.returncode}")
        if p.stderr is not None:
            p.stderr.close()
    if failed:
        raise TestbedError("nft failed in " + "; ".join(failed))
    return released


def _waits_as(pid: int, comm: str) -> bool:
    """True if the process has become `comm` and sleeps (for `nft -f -`: waiting on its input)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone: nothing to wait for
    name, _, rest = stat.partition(" (")[2].rpartition(") ")
    return name == comm and rest[:1] == "S"


def _both(na: NodeInfo, nb: NodeInfo) -> list[tuple[NodeInfo, NodeInfo]]:
    return [(na, nb), (nb, na)]


def apply(bed: Testbed, kind: str, na: NodeInfo, nb: NodeInfo | None, params: dict[str, Any],
          fault_id: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Make the change; returns (start stamp, details needed to heal and to report)."""
    extra: dict[str, Any] = {}
    t0 = time.monotonic()
    if kind == "link-down":
        assert nb is not None
        sh("ip", "link", "set", na.ifaces[nb.index], "down", ns=na.ns)
    elif kind == "link-silent":
        assert nb is not None
        _nft_ingress(_both(na, nb), "drop")
    elif kind == "loss":
        assert nb is not None
        _nft_ingress(_both(na, nb), f"numgen random mod 100 < {int(round(params['percent']))} drop")
    elif kind == "congest":
        assert nb is not None
        rate = params["rate"]
        burst = params.get("burst") or max(CONGEST_MIN_BURST_BYTES, rate // 8 // 100)
        for x, y in _both(na, nb):
            sh("tc", "qdisc", "replace", "dev", x.ifaces[y.index], "root", "tbf", "rate", f"{rate}bit",
               "burst", str(burst), "latency", f"{CONGEST_QUEUE_MS}ms", ns=x.ns)
        extra["burst_bytes"] = burst
    elif kind == "flap":
        assert nb is not None
        log = flap_log(bed, fault_id)
        extra["log"] = str(log)
        ready = bed.spawn_stressor(fault_id, [
            "flap", "--ns", na.ns, "--dev", na.ifaces[nb.index], "--period-s", str(params["period_s"]),
            "--log", str(log)])
        return _from_ready(ready, t0), extra
    elif kind == "partial-blackhole":
        pct = int(round(params["percent"]))
        sh("nft", "-f", "-", ns=na.ns, input=(
            f"table inet {NODE_TABLE} {{\n"
            "  chain forward {\n    type filter hook forward priority -10; policy accept;\n"
            '    counter comment "forwarded"\n'
            f'    numgen random mod 100 < {pct} counter drop comment "dropped"\n  }}\n}}\n'
        ))
    elif kind == "cpu-hog":
        cpu = bed.node_cgroups(na)["cpu"]
        pid = _daemon_in_group(bed, na, cpu["daemon"])
        allowed = sorted(os.sched_getaffinity(pid))
        core = allowed[na.index % len(allowed)]
        extra.update(cpu=core, affinity_before=allowed, pid=pid)
        cgroups.write(cpu["daemon"], "cpu.shares", CPU_DAEMON_SHARES)
        cgroups.write(cpu["hog"], "cpu.shares", CPU_DAEMON_SHARES * CPU_HOG_SHARES_RATIO)
        cgroups.set_cpu_cap(cpu["node"], params["cap_pct"])
        try:
            pin_threads(pid, {core})
            ready = bed.spawn_stressor(fault_id, ["cpu", "--cpu", str(core)], node=na)
        except BaseException:
            cgroups.set_cpu_cap(cpu["node"], None)
            pin_threads(pid, set(allowed))
            raise
        return _from_ready(ready, t0), extra
    elif kind == "mem-pressure":
        mem = bed.node_cgroups(na)["memory"]
        _daemon_in_group(bed, na, mem["daemon"])
        usage = cgroups.read_int(mem["node"], "memory.usage_in_bytes")
        limit = usage + (params["mb"] << 20)
        cgroups.set_memory_limit(mem["node"], limit)
        try:
            ready = bed.spawn_stressor(fault_id, [
                "mem", "--usage-file", str(mem["node"] / "memory.usage_in_bytes"),
                "--fill-to-bytes", str(limit - MEM_FREE_BYTES), "--max-bytes", str(params["mb"] << 20)], node=na)
        except BaseException:
            cgroups.set_memory_limit(mem["node"], None)
            raise
        extra.update(limit_bytes=limit, usage_before_bytes=usage, held_bytes=ready.get("held_bytes"),
                     group_usage_bytes=ready.get("group_usage_bytes"))
        return _from_ready(ready, t0), extra
    elif kind == "hang":
        pid = bed.daemon_pid(na)
        os.kill(pid, signal.SIGSTOP)
        _wait_state(pid, lambda s: s in ("T", "t"), "stopped")
        extra["pid"] = pid
    elif kind == "kill":
        pid = bed.daemon_pid(na)
        os.kill(pid, signal.SIGKILL)
        if not wait_exit(pid, PROCESS_STATE_TIMEOUT_S):
            raise TestbedError(f"node {na.index} daemon (pid {pid}) survived SIGKILL")
        extra["pid"] = pid
        start = stamp(t0)
        bed.stop(na.index)  # reaps and forgets the pid
        return start, extra
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return stamp(t0), extra


def _from_ready(ready: dict[str, Any], t0: float) -> dict[str, float]:
    """A stressor's report of when its effect began, as a start stamp: the flapper's first change
    carries its own stamp; for the others the change began with the limit set at t0."""
    first = ready.get("first")
    if first:
        return {"mono": float(first["mono"]), "wall": float(first["wall"]), "uncertainty_s": float(first["uncertainty_s"])}
    mono = float(ready["ready"])
    return {"mono": mono, "wall": float(ready["wall"]), "uncertainty_s": round(max(0.0, mono - t0), 6)}


def heal(bed: Testbed, record: dict[str, Any], wait_ready: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Undo the fault of `record`; returns (end stamp, details observed while healing)."""
    kind = record["kind"]
    na = bed.node(record["a"])
    nb = bed.node(record["b"]) if record.get("b") is not None else None
    extra: dict[str, Any] = {}
    t0 = time.monotonic()
    if kind == "link-down":
        assert nb is not None
        sh("ip", "link", "set", na.ifaces[nb.index], "up", ns=na.ns)
        sh("ip", "link", "set", nb.ifaces[na.index], "up", ns=nb.ns)
    elif kind in ("link-silent", "loss"):
        assert nb is not None
        for x, y in _both(na, nb):
            sh("nft", "delete", "chain", "netdev", FAULT_TABLE, f"in_{x.ifaces[y.index]}", ns=x.ns, check=False)
    elif kind == "congest":
        assert nb is not None
        for x, y in _both(na, nb):
            sh("tc", "qdisc", "del", "dev", x.ifaces[y.index], "root", ns=x.ns, check=False)
    elif kind == "flap":
        assert nb is not None
        extra["flapper_alive_at_heal"] = bed.stop_stressor(record["id"])
        sh("ip", "link", "set", na.ifaces[nb.index], "up", ns=na.ns)  # whatever the flapper last did
        end = stamp(t0)
        extra["transitions"] = read_transitions(flap_log(bed, record["id"]))
        return end, extra
    elif kind == "partial-blackhole":
        extra["counters"] = blackhole_counters(bed, na)
        sh("nft", "delete", "table", "inet", NODE_TABLE, ns=na.ns, check=False)
    elif kind == "cpu-hog":
        extra["hog_alive_at_heal"] = bed.stop_stressor(record["id"])
        cpu = bed.node_cgroups(na)["cpu"]
        cgroups.set_cpu_cap(cpu["node"], None)
        before = record["start_details"].get("affinity_before") or sorted(os.sched_getaffinity(0))
        with contextlib.suppress(ProcessLookupError):
            pin_threads(record["start_details"].get("pid") or bed.daemon_pid(na), set(before))
        extra["cpu_stat"] = cgroups.stat(cpu["node"], "cpu.stat")
    elif kind == "mem-pressure":
        mem = bed.node_cgroups(na)["memory"]
        extra["failcnt"] = cgroups.read_int(mem["node"], "memory.failcnt")
        extra["hog_alive_at_heal"] = bed.stop_stressor(record["id"])
        cgroups.set_memory_limit(mem["node"], None)
    elif kind == "hang":
        pid = record["start_details"].get("pid") or bed.daemon_pid(na)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        _wait_state(pid, lambda s: s not in ("T", "t"), "running")
    elif kind == "kill":
        bed.start(na.index, wait=False)
        if na.cgroups and na.pid is not None:  # in effect once the new daemon is in its groups
            daemon_dir = pathlib.Path(na.cgroups["cpu"]["daemon"])
            _wait_state(na.pid, lambda s: na.pid in cgroups.procs(daemon_dir) or s is None, "placed")
        end = stamp(t0)  # the daemon process exists again
        if wait_ready:
            bed.wait_ready([na.index])
            extra["ready_mono"] = time.monotonic()
        return end, extra
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return stamp(t0), extra


def blackhole_counters(bed: Testbed, node: NodeInfo) -> dict[str, int]:
    """Packets counted by partial-blackhole's forward chain in the node: forwarded (all) and dropped."""
    out: dict[str, int] = {}
    text = sh("nft", "-j", "list", "table", "inet", NODE_TABLE, ns=node.ns, check=False)
    try:
        doc = json.loads(text or "{}")
    except json.JSONDecodeError:
        return out
    for item in doc.get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("comment") not in ("forwarded", "dropped"):
            continue
        for e in rule.get("expr", []):
            if "counter" in e:
                out[rule["comment"]] = int(e["counter"]["packets"])
    return out


def flap_log(bed: Testbed, fault_id: str) -> pathlib.Path:
    return bed.run_dir / f"flap-{fault_id}.jsonl"


def read_transitions(log: pathlib.Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        for line in log.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def stressor_command(tag: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "x0lab.testbed.stressors", "--tag", tag, "--max-s", str(STRESSOR_MAX_S), *args]
