"""The real-fault dataset: x0node daemons on namespace testbeds under seeded chaos, as they run.

Rules and invariants:
- `collect(out_dir, seed)` (root) runs one chaos schedule on each topology of `plan_runs(seed)` in
  turn: a testbed of real x0node daemons with `[state]` (so neighbours' feature vectors travel as
  signed 1-hop records) and `[anomaly] record = true` (every node appends, each tick, the raw vector
  its own collector computed, the neighbours' vectors that reached it through the state layer, and
  the verdict of its live chain). The recordings (gzip) and the chaos ground truth are copied to
  `out_dir/<run>/`, then the testbed is taken down. Everything is a function of the seed.
- With `transit_pps` (> 0), `collect` drives bounded transit traffic for the whole chaos run: every
  node pings the node farthest from it in hops (ties: the lowest index) at that many packets per
  second (`transit_flows`), so the nodes between them forward traffic and a partial black hole
  changes their `fwd_ratio`; the flows are written to `transit.json` beside the recordings and the
  pings are stopped by PID when the run ends. Traffic stays inside the testbed's namespaces.
- `collect_fault_free(out_dir, seed, nodes, duration_s)` (root) records one testbed of real daemons
  (`FAULT_FREE_TOPOLOGY`, seeded) with the same sections and no fault at all, for the false-alarm
  rate; its `truth.json` has the same shape with an empty fault list. SIGTERM or SIGINT ends the
  recording early and keeps it (`stopped_early_s` in truth.json). With `cpu_cores` the whole
  recording (this process, the testbed's groups below it, every daemon) runs in a cgroup v1 `cpu`
  group capped at that many cores once every daemon is ready, so a long recording stays a bounded
  guest on a shared host.
- `load(data_dir)` turns the recordings into one table of rows, one per (node, tick), with labels
  from the ground truth (never from the detectors):
    * positive (label 1) while a fault acts on the row's node: a node fault's target; both ends of a
      link fault; for faults that stop the target's daemon (hang, kill: the target records nothing)
      its neighbours in the testbed, the nodes that can see it;
    * ignored (label -1): the GRACE_S after a fault ends on those nodes (recovery: routes and link
      windows settle), and during a fault the other 1-hop neighbours of its nodes (collateral
      effects are neither a hit nor a false alarm);
    * negative (label 0) otherwise.
  Each fault is one event with the rows that may detect it (its positive rows).
- Recordings from before features version 2 (no `"features": 2` in a tick) counted every UP-set
  transition as a link change; for them `load` replays each node's recorded UP sets through the
  collector's own link state machine (`FeatureState.observe_up`, the code the daemon runs) and
  replaces `link_changes` in its vectors and in the copies its neighbours received (the replayed value
  at the sender's tick nearest to when the copy was made). The replay sees one link sample per tick
  (the daemon also samples between ticks), so it can miss a loss the daemon would count, never add one.
- Recordings made by version-3 daemons that record their own loop stall (`"stall"` in a tick) but
  predate version 4 measured a tick's control-packet loss even while the node itself was stalled;
  `load` applies the collector's version-4 rule to them (`loss_max` is the neutral 0 in a tick whose
  `stall` is at least collector.OWN_STALL_S). Only the node's own vector: the copies its neighbours
  received keep what was sent (the neighbour aggregates see the version-3 figure).
- A recording ends when its clock says it finished (`clock.finished_mono` in truth.json): ticks after
  it, written while the testbed stops its daemons one by one (the last ones see their neighbours
  go), are not part of it.
- Pure numpy after the files are read; the table keeps, per row, the run, topology, node, tick time,
  the node's own raw vector, the raw vectors its state layer delivered (as deployed) and, for the
  full-neighbour reference, the vectors every testbed neighbour recorded at the nearest tick.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from x0node.anomaly.collector import FeatureState
from x0node.anomaly.features import FEATURES, N_FEATURES

if TYPE_CHECKING:
    from x0lab.testbed.topology import Topology

RUNS: tuple[str, ...] = ("ring:8", "grid:3x3", "ladder:5", "random:10:{seed}:3")
"""Topologies of one collection, in order (a random one seeded by the collection seed)."""
INTERVAL_S = 3.0
"""The anomaly tick while collecting (the device default is 30 s; every feature window is in seconds)."""
CHAOS = {"max_concurrent": 2, "min_gap_s": 8.0, "fault_min_s": 15.0, "fault_max_s": 45.0, "warmup_s": 45.0}
GRACE_S = 20.0
DOWN_FAULTS = frozenset({"hang", "kill"})
HARD_FAULTS = frozenset({"partial-blackhole", "kill", "hang", "link-silent", "link-down"})
"""Hard faults (black hole, partial black hole, crash, hang; loss >= 20 % is added by `is_hard`)."""


def plan_runs(seed: int) -> list[tuple[str, int]]:
    return [(spec.format(seed=seed % 1000), seed * 10 + i) for i, spec in enumerate(RUNS)]


MAX_TRANSIT_PPS = 50.0
"""Bound on each transit flow's rate (packets per second)."""


def _features_version(tick: dict[str, Any]) -> int:
    """The features version a recorded tick was written with (version 1 wrote none)."""
    return int(tick.get("features", 1) or 1)


def transit_flows(topo: Topology) -> list[tuple[int, int]]:
    """(source, destination) per node: the node farthest from it in hops (ties: the lowest index)."""
    flows = []
    for src in range(1, topo.nodes + 1):
        dist = topo.hops(src)
        far = max(dist.values())
        if far >= 2:  # a neighbour's traffic transits nobody
            flows.append((src, min(k for k, d in dist.items() if d == far)))
    return flows


def collect(out_dir: pathlib.Path, seed: int, duration_s: float = 480.0, runs: list[int] | None = None,
            echo: Any = print, transit_pps: float = 0.0) -> list[pathlib.Path]:
    """Run the chaos schedules (root) and keep the recordings; returns the run directories."""
    from x0lab.testbed import bed as testbed
    from x0lab.testbed import chaos, measure

    if not 0.0 <= transit_pps <= MAX_TRANSIT_PPS:
        raise ValueError(f"transit_pps must be within 0..{MAX_TRANSIT_PPS:g}")

    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for i, (topo, run_seed) in enumerate(plan_runs(seed)):
        if runs is not None and i not in runs:
            continue
        name = f"run{i}-" + topo.split(":")[0]
        run_dir = pathlib.Path(f"/tmp/x0rd-{seed}-{i}-{int(time.time())}")
        sections = {"state": {}, "anomaly": {"interval_s": INTERVAL_S, "record": True, "seed": run_seed,
                                             "observe_days": 0.0, "cgroup": "parent"}}
        echo(f"[{name}] testbed {topo}, chaos seed {run_seed}, {duration_s:.0f} s")
        bed = testbed.up(run_dir, topo, sections=sections)
        pingers: list[Any] = []
        flows: list[tuple[int, int]] = []
        try:
            time.sleep(10.0)  # adjacencies and the first ticks before the warm-up counts
            if transit_pps > 0:
                flows = transit_flows(bed.topology)
                pingers = [measure.Pinger(bed.nodes[a].ns, bed.nodes[b].mesh_addr, interval_s=1.0 / transit_pps)
                           for a, b in flows]
                echo(f"[{name}] transit: {len(flows)} flows at {transit_pps:g} packets/s")
            cfg = chaos.ChaosConfig(duration_s=duration_s, seed=run_seed, **CHAOS)
            chaos.run(bed, cfg, run_dir / "truth.json", echo=lambda line, n=name: echo(f"[{n}] {line}"))
            time.sleep(2 * INTERVAL_S)
        finally:
            if pingers:
                measure.stop_procs([pg.proc for pg in pingers])
            bed.down()
        _copy_recordings(bed, run_dir, out_dir / name)
        if flows:
            chaos.atomic_write_json(out_dir / name / "transit.json", {
                "packets_per_s": transit_pps, "flows": [list(f) for f in flows],
                "replies": [len(pg.replies) for pg in pingers]})
        done.append(out_dir / name)
        shutil.rmtree(run_dir, ignore_errors=True)
    return done


FAULT_FREE_TOPOLOGY = "random:{nodes}:{seed}:3"
"""The fault-free recording's topology (seeded by the collection seed)."""


def _copy_recordings(bed: Any, run_dir: pathlib.Path, dest: pathlib.Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "truth.json", dest / "truth.json")
    for k, node in sorted(bed.nodes.items()):
        src = pathlib.Path(node.data_dir) / "anomaly" / "ticks.jsonl"
        if src.exists():
            with open(src, "rb") as fi, gzip.open(dest / f"n{k}.jsonl.gz", "wb", compresslevel=9) as fo:
                shutil.copyfileobj(fi, fo)


def _enter_cpu_group() -> pathlib.Path | None:
    """Move this process into a new cgroup v1 `cpu` group below its own (capped by `_cap`)."""
    from x0lab.testbed import cgroups

    base = cgroups.own_group("cpu")
    if base is None:
        return None
    group = base / f"x0rd-{os.getpid()}"
    cgroups.create(group)
    cgroups.write(group, "cgroup.procs", os.getpid())
    return group


NICE10_WEIGHT = 110
"""The CFS weight of one nice-10 task (kernel sched_prio_to_weight)."""


def _cap(group: pathlib.Path, cores: float, tasks: int) -> None:
    """Cap the group at `cores`; weigh it like `tasks` nice-10 processes (a cgroup v1 group otherwise
    weighs as one nice-0 task against every task outside it, and on a busy host its daemons then
    miss their 100 ms hellos: neighbour flaps the recording would count as false alarms)."""
    from x0lab.testbed import cgroups

    cgroups.write(group, "cpu.shares", max(2, NICE10_WEIGHT * tasks))
    cgroups.write(group, "cpu.cfs_period_us", cgroups.CPU_PERIOD_US)
    cgroups.write(group, "cpu.cfs_quota_us", max(1000, int(cgroups.CPU_PERIOD_US * cores)))


def _leave_cpu_cap(group: pathlib.Path | None) -> None:
    from x0lab.testbed import cgroups

    if group is None:
        return
    cgroups.write(group.parent, "cgroup.procs", os.getpid())
    cgroups.remove([str(group)])


def collect_fault_free(out_dir: pathlib.Path, seed: int, nodes: int = 25, duration_s: float = 3000.0,
                       cpu_cores: float | None = None, echo: Any = print) -> pathlib.Path:
    """One fault-free recording (root): `nodes` daemons on FAULT_FREE_TOPOLOGY for duration_s."""
    from x0lab.testbed import bed as testbed
    from x0lab.testbed import chaos, faults

    topo = FAULT_FREE_TOPOLOGY.format(nodes=nodes, seed=seed % 1000)
    name = f"quiet{seed}-random{nodes}"
    run_dir = pathlib.Path(f"/tmp/x0rd-{seed}-quiet-{os.getpid()}")
    sections = {"state": {}, "anomaly": {"interval_s": INTERVAL_S, "record": True, "seed": seed * 10,
                                         "observe_days": 0.0, "cgroup": "parent"}}
    stop: list[int] = []  # SIGTERM / SIGINT end the recording early and keep what was recorded
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    group = _enter_cpu_group() if cpu_cores else None
    try:
        echo(f"[{name}] testbed {topo}, fault-free, {duration_s:.0f} s"
             + (f", capped at {cpu_cores:g} cores after start-up" if group else ""))
        bed = testbed.up(run_dir, topo, sections=sections)  # start-up (imports) uncapped: ready in time
        try:
            if group is not None and cpu_cores:
                _cap(group, cpu_cores, nodes)
            t0 = time.monotonic()
            doc = {"chaos": None, "fault_free": {"duration_s": duration_s, "seed": seed, "cpu_cores": cpu_cores},
                   "testbed": {"id": bed.id, "topology": bed.state["topology"], "daemon": bed.daemon,
                               "links": bed.state["links"],
                               "nodes": {str(k): {"ns": n.ns, "node_id": n.node_id, "mesh_addr": n.mesh_addr}
                                         for k, n in sorted(bed.nodes.items())}},
                   "clock": {"mono": "time.monotonic() seconds", "boot_id": faults.boot_id(), "t0_mono": t0,
                             "t0_wall": time.time()},
                   "complete": False, "faults": []}
            chaos.atomic_write_json(run_dir / "truth.json", doc)
            next_echo = t0 + 60.0
            while (left := t0 + duration_s - time.monotonic()) > 0 and not stop:
                time.sleep(min(left, 1.0))
                if time.monotonic() >= next_echo:
                    echo(f"[{name}] {time.monotonic() - t0:6.0f} s")
                    next_echo += 60.0
            if stop:
                doc["stopped_early_s"] = round(time.monotonic() - t0, 1)
                echo(f"[{name}] stopped by signal {stop[0]} after {doc['stopped_early_s']:.0f} s; keeping the recording")
            doc["complete"] = True
            doc["clock"]["finished_mono"] = time.monotonic()
            chaos.atomic_write_json(run_dir / "truth.json", doc)
        finally:
            bed.down()
        dest = out_dir / name
        _copy_recordings(bed, run_dir, dest)
        shutil.rmtree(run_dir, ignore_errors=True)
        return dest
    finally:
        _leave_cpu_cap(group)


# ------------------------------------------------------------------------------------------- the table
@dataclass
class Event:
    run: str
    kind: str
    params: dict[str, Any]
    start: float
    end: float
    nodes: tuple[str, ...]  # node ids whose rows may detect it
    hard: bool


@dataclass
class Table:
    run: np.ndarray  # [R] str
    topo: np.ndarray  # [R] str
    node: np.ndarray  # [R] str
    t: np.ndarray  # [R] float, monotonic s
    tick: np.ndarray  # [R] int, per-node tick index
    x: np.ndarray  # [R, 8] own raw vector
    label: np.ndarray  # [R] int: 1, 0, -1 (ignored)
    event: np.ndarray  # [R] int: index into events (positive rows), else -1
    deployed: list[dict[str, np.ndarray]]  # per row: neighbour id -> raw vector the state layer delivered
    full: list[dict[str, np.ndarray]]  # per row: testbed neighbour id -> its own recorded vector (nearest tick)
    live_layer: np.ndarray  # [R] str: the daemon's live layer for its own row
    live_alarm: np.ndarray  # [R] bool: the daemon's own verdict
    fault_free: np.ndarray  # [R] bool: the row belongs to a fault-free recording (collect_fault_free)
    events: list[Event] = field(default_factory=list)
    up: list[tuple[str, ...]] = field(default_factory=list)  # per row: the neighbours UP at that tick
    links_down: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [R] collector's links_down
    version: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [R] features version recorded

    def __len__(self) -> int:
        return len(self.t)


def is_hard(kind: str, params: dict[str, Any]) -> bool:
    return kind in HARD_FAULTS or (kind == "loss" and float(params.get("percent", 0)) >= 20)


def _read_ticks(path: pathlib.Path) -> list[dict[str, Any]]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            try:
                d = json.loads(line)
            except ValueError:
                continue  # a torn last line (the daemon was killed mid-write)
            raw = d.get("raw")
            if isinstance(raw, list) and len(raw) == N_FEATURES:
                out.append(d)
    return out


LINK_CHANGES = FEATURES.index("link_changes")


def _replay_up_sets(rows: list[dict[str, Any]], measure: Callable[[FeatureState, float], float]) -> np.ndarray:
    """A node's recorded UP sets, tick by tick, through the collector's link state machine; `measure`
    reads one figure from it after each tick."""
    fs = FeatureState()
    out = np.zeros(len(rows))
    for i, d in enumerate(rows):
        up = d.get("up")
        now = float(d["mono"])
        fs.observe_up([u for u in up if isinstance(u, str)] if isinstance(up, list) else [], now)
        out[i] = measure(fs, now)
    return out


def _replay_link_changes(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """Replay a node's recorded UP sets (version-1 recordings) through the daemon's link state machine;
    writes the result into each tick's raw vector and returns it (None: recorded by version >= 2)."""
    if not rows or all(_features_version(d) >= 2 for d in rows):
        return None
    out = _replay_up_sets(rows, FeatureState.link_changes)
    for i, d in enumerate(rows):
        d["raw"] = list(d["raw"])
        d["raw"][LINK_CHANGES] = out[i]
    return out


LOSS_MAX = FEATURES.index("loss_max")


def _replay_own_stalls(rows: list[dict[str, Any]]) -> None:
    """Version 4's rule (collector.own_stall) on version-3 ticks that recorded the node's own stall: no
    loss is measured in a tick during which the node stalled for OWN_STALL_S or more."""
    from x0node.anomaly.collector import own_stall

    for d in rows:
        if _features_version(d) == 3 and own_stall(d.get("stall")):
            d["raw"] = list(d["raw"])
            d["raw"][LOSS_MAX] = 0.0


def _links_down(rows: list[dict[str, Any]]) -> np.ndarray:
    """Each tick's `links_down` as the node's collector counts it: recorded by daemons that have it, else
    its recorded UP sets replayed through the collector's link state machine (FeatureState), one link
    sample per tick (the daemon samples every 3 s between ticks too, so the replay can count a loss a
    sample later than the daemon would, never earlier)."""
    if rows and all(isinstance(d.get("links_down"), int | float) for d in rows):
        return np.array([float(d["links_down"]) for d in rows])
    return _replay_up_sets(rows, FeatureState.links_down)


def load(data_dir: pathlib.Path) -> Table:
    cols: dict[str, list[Any]] = {k: [] for k in ("run", "topo", "node", "t", "tick", "x", "label", "event",
                                                    "deployed", "full", "layer", "alarm", "quiet", "up", "down", "version")}
    events: list[Event] = []
    for run_dir in sorted(p.parent for p in data_dir.rglob("truth.json")):
        run_name = str(run_dir.relative_to(data_dir))
        truth = json.loads((run_dir / "truth.json").read_text())
        quiet = "fault_free" in truth
        tb = truth["testbed"]
        ids = {int(k): v["node_id"] for k, v in tb["nodes"].items()}
        adj: dict[int, set[int]] = {k: set() for k in ids}
        for a, b in tb["links"]:
            adj[a].add(b)
            adj[b].add(a)
        by_id = {v: k for k, v in ids.items()}
        ticks: dict[int, list[dict[str, Any]]] = {}
        finished = (truth.get("clock") or {}).get("finished_mono")
        for k in ids:
            f = run_dir / f"n{k}.jsonl.gz"
            ticks[k] = _read_ticks(f) if f.exists() else []
            if isinstance(finished, int | float):  # the testbed stopping its daemons is not the recording
                ticks[k] = [d for d in ticks[k] if float(d["mono"]) <= finished]
            _replay_own_stalls(ticks[k])
        times = {k: np.array([d["mono"] for d in ticks[k]]) for k in ids}
        down = {k: _links_down(ticks[k]) for k in ids}
        replayed = {k: _replay_link_changes(ticks[k]) for k in ids}
        run_events: list[tuple[int, Event, set[int], set[int]]] = []
        for f in truth["faults"]:
            if not f.get("start") or not f.get("end"):
                continue
            start = f["start"]["mono"] - f["start"].get("uncertainty_s", 0.0)
            end = f["end"]["mono"]
            nodes = set(f["nodes"])
            if f["fault"] in DOWN_FAULTS:
                pos = set().union(*(adj[n] for n in nodes)) - nodes
            else:
                pos = nodes
            collateral = set().union(*(adj[n] for n in nodes | pos)) - pos
            ev = Event(run_name, f["fault"], f.get("params", {}), start, end,
                       tuple(ids[n] for n in sorted(pos)), is_hard(f["fault"], f.get("params", {})))
            events.append(ev)
            run_events.append((len(events) - 1, ev, pos, collateral))
        for k, rows in ticks.items():
            for i, d in enumerate(rows):
                t = float(d["mono"])
                label, event = 0, -1
                for ei, ev, pos, coll in run_events:
                    if k in pos and ev.start <= t <= ev.end:
                        label, event = 1, ei
                        break
                    if (k in pos and ev.end < t <= ev.end + GRACE_S) or (k in coll and ev.start <= t <= ev.end + GRACE_S):
                        label = -1
                dep = {}
                for nid, vec in (d.get("peers") or {}).items():
                    if isinstance(vec, list) and len(vec) == N_FEATURES + 1 and nid in by_id and by_id[nid] in adj[k]:
                        dep[nid] = np.asarray(vec[:N_FEATURES], dtype=np.float64)
                        j = by_id[nid]
                        if replayed[j] is not None and len(times[j]):
                            p = int(np.argmin(np.abs(times[j] - (t - float(vec[N_FEATURES])))))
                            dep[nid][LINK_CHANGES] = replayed[j][p]
                full = {}
                for j in adj[k]:
                    if len(times[j]) == 0:
                        continue
                    p = int(np.argmin(np.abs(times[j] - t)))
                    if abs(times[j][p] - t) <= 1.5 * INTERVAL_S:  # a stopped or killed node has no vector
                        full[ids[j]] = np.asarray(ticks[j][p]["raw"], dtype=np.float64)
                cols["run"].append(run_name)
                cols["topo"].append(tb["topology"])
                cols["node"].append(ids[k])
                cols["t"].append(t)
                cols["tick"].append(i)
                cols["x"].append(d["raw"])
                cols["label"].append(label)
                cols["event"].append(event)
                cols["deployed"].append(dep)
                cols["full"].append(full)
                cols["layer"].append(str(d.get("layer")))
                cols["alarm"].append(bool(d.get("anomalous")))
                cols["quiet"].append(quiet)
                up = d.get("up")
                cols["up"].append(tuple(u for u in up if isinstance(u, str)) if isinstance(up, list) else ())
                cols["down"].append(down[k][i])
                cols["version"].append(_features_version(d))
    return Table(np.array(cols["run"]), np.array(cols["topo"]), np.array(cols["node"]),
                 np.array(cols["t"], dtype=np.float64), np.array(cols["tick"], dtype=np.int64),
                 np.array(cols["x"], dtype=np.float64).reshape(-1, N_FEATURES),
                 np.array(cols["label"], dtype=np.int64), np.array(cols["event"], dtype=np.int64),
                 cols["deployed"], cols["full"], np.array(cols["layer"]), np.array(cols["alarm"], dtype=bool),
                 np.array(cols["quiet"], dtype=bool), events, cols["up"], np.array(cols["down"], dtype=np.float64),
                 np.array(cols["version"], dtype=np.int64))
