"""`x0node testbed chaos`: a seeded, bounded schedule of faults run on a testbed, with its ground truth.

Rules and invariants:
- The plan is a pure function of (topology, config): `plan_schedule` draws every choice (start jitter,
  kind, target, duration, parameters) from one `random.Random(seed)`; the same inputs give the same
  plan on every machine. It never touches the testbed or the clock.
- Bounded: every fault starts at or after `warmup_s` (a fault-free baseline) and ends by `duration_s`;
  at most `max_concurrent` faults are active at any time; concurrent faults act on disjoint elements
  (a node fault occupies its node, a link fault both end nodes), so each fault's effect is its own;
  any two events (starts and ends, of all faults) are at least `min_gap_s` apart, so every change is
  distinguishable in time; a fault lasts between `fault_min_s` (>= min_gap_s) and `fault_max_s`.
- The runner applies the plan in order and keeps the spacing on the real clock: an event never comes
  less than `min_gap_s` after the previous one's stamp, even when a change took long to make; it
  returns no earlier than `duration_s` after it began (the fault-free tail is part of the run). Its
  output records, per fault, the planned times and the ground truth the testbed stamped when the
  kernel change was made (faults.py: `mono`, `wall`, `uncertainty_s`). The file is rewritten
  atomically after every event, so an interrupted run leaves a valid partial truth; on interruption
  or error every active fault is healed and stamped before the runner returns or re-raises.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from x0lab.testbed import faults
from x0lab.testbed.topology import Topology
from x0node.io.atomicfile import write_atomic

if TYPE_CHECKING:
    from x0lab.testbed.bed import Testbed

MAX_DURATION_S = 24 * 3600.0
MAX_TRIES_PER_SLOT = 50
# parameter choices per kind (kinds without parameters are absent)
PARAM_CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "loss": {"percent": (10, 20, 30, 50)},
    "congest": {"rate": ("1mbit", "2mbit", "5mbit")},
    "flap": {"period_s": (1.0, 2.0, 4.0)},
    "partial-blackhole": {"percent": (20, 40, 60)},
    "cpu-hog": {"cap_pct": (10, 20)},
    "mem-pressure": {"mb": (32, 64)},
}


class ChaosError(ValueError):
    """The chaos configuration cannot be met (bad bounds, no applicable fault kinds)."""


@dataclass(frozen=True)
class ChaosConfig:
    duration_s: float
    seed: int
    max_concurrent: int = 2
    min_gap_s: float = 5.0
    fault_min_s: float = 10.0
    fault_max_s: float = 30.0
    kinds: tuple[str, ...] = tuple(faults.KINDS)
    warmup_s: float | None = None  # default: min_gap_s

    def check(self) -> None:
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ChaosError(f"duration must be in (0, {MAX_DURATION_S:.0f}] s")
        if not 1 <= self.max_concurrent <= 16:
            raise ChaosError("max concurrent faults must be between 1 and 16")
        if not 0 < self.min_gap_s <= self.fault_min_s <= self.fault_max_s:
            raise ChaosError("need 0 < gap <= fault minimum <= fault maximum")
        if not self.kinds:
            raise ChaosError("no fault kinds to choose from")
        unknown = [k for k in self.kinds if k not in faults.KINDS]
        if unknown:
            raise ChaosError(f"unknown fault kinds: {', '.join(unknown)}")

    @property
    def start_after_s(self) -> float:
        return self.min_gap_s if self.warmup_s is None else self.warmup_s


@dataclass(frozen=True)
class Planned:
    index: int
    kind: str
    a: int
    b: int | None
    params: dict[str, Any] = field(hash=False)
    start_s: float
    end_s: float

    @property
    def target(self) -> str:
        return faults.target_key(self.kind, self.a, self.b)

    @property
    def elements(self) -> frozenset[int]:
        return frozenset({self.a} if self.b is None else {self.a, self.b})


def _targets(topo: Topology, kind: str) -> list[tuple[int, int | None]]:
    if faults.KINDS[kind].target == "link":
        return [(a, b) for a, b in topo.links]
    return [(k, None) for k in range(1, topo.nodes + 1)]


def _fits(new: Planned, plans: list[Planned], cfg: ChaosConfig) -> bool:
    times = [t for p in plans for t in (p.start_s, p.end_s)]
    if any(abs(t - new.start_s) < cfg.min_gap_s or abs(t - new.end_s) < cfg.min_gap_s for t in times):
        return False
    overlapping = [p for p in plans if p.start_s < new.end_s and new.start_s < p.end_s]
    if any(p.elements & new.elements for p in overlapping):
        return False
    points = [new.start_s] + [p.start_s for p in overlapping if new.start_s <= p.start_s < new.end_s]
    return all(1 + sum(1 for p in overlapping if p.start_s <= x < p.end_s) <= cfg.max_concurrent for x in points)


def plan_schedule(topo: Topology, cfg: ChaosConfig) -> list[Planned]:
    """The seeded schedule (ordered by start), satisfying every bound in the module docstring."""
    cfg.check()
    rng = random.Random(cfg.seed)
    kinds = list(cfg.kinds)
    plans: list[Planned] = []
    t = cfg.start_after_s
    while True:
        t += rng.uniform(0.0, cfg.min_gap_s)
        if t + cfg.fault_min_s > cfg.duration_s:
            break
        for _ in range(MAX_TRIES_PER_SLOT):
            kind = rng.choice(kinds)
            a, b = rng.choice(_targets(topo, kind))
            length = rng.uniform(cfg.fault_min_s, cfg.fault_max_s)
            params = {name: rng.choice(choices) for name, choices in PARAM_CHOICES.get(kind, {}).items()}
            end = min(t + length, cfg.duration_s)
            if end - t < cfg.fault_min_s:
                continue
            cand = Planned(len(plans), kind, a, b, params, round(t, 3), round(end, 3))
            if _fits(cand, plans, cfg):
                plans.append(cand)
                break
        t += cfg.min_gap_s
    return plans


def atomic_write_json(path: Any, doc: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def run(bed: Testbed, cfg: ChaosConfig, out_path: Any, echo: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Apply the plan to the testbed, writing the ground truth to out_path after every event."""
    plan = plan_schedule(bed.topology, cfg)
    t0 = clock()
    doc: dict[str, Any] = {
        "chaos": {**asdict(cfg), "kinds": list(cfg.kinds)},
        "testbed": {"id": bed.id, "topology": bed.state["topology"], "daemon": bed.daemon,
                    "links": bed.state["links"],
                    "nodes": {str(k): {"ns": n.ns, "node_id": n.node_id, "mesh_addr": n.mesh_addr}
                              for k, n in sorted(bed.nodes.items())}},
        "clock": {"mono": "time.monotonic() = CLOCK_MONOTONIC seconds, comparable across processes of one boot",
                  "boot_id": faults.boot_id(), "t0_mono": t0, "t0_wall": time.time()},
        "complete": False,
        "faults": [{"index": p.index, "fault": p.kind, "target": p.target, "a": p.a, "b": p.b,
                    "nodes": sorted(p.elements),
                    "params": p.params, "planned_start_s": p.start_s, "planned_end_s": p.end_s,
                    "start": None, "end": None} for p in plan],
    }
    atomic_write_json(out_path, doc)
    events = sorted([(p.start_s, 1, p) for p in plan] + [(p.end_s, 0, p) for p in plan],
                    key=lambda e: (e[0], e[1]))
    active: dict[int, Planned] = {}
    last = -math.inf
    try:
        for at, is_start, p in events:
            entry = doc["faults"][p.index]
            if not is_start and p.index not in active:
                continue  # its start failed
            when = max(t0 + at, last + cfg.min_gap_s)
            while (left := when - clock()) > 0:
                sleep(min(left, 1.0))
            if is_start:
                try:
                    record = bed.fault(p.kind, p.a, p.b, **p.params)
                except Exception as exc:  # noqa: BLE001  (recorded; the schedule goes on)
                    entry["error"] = str(exc)
                    echo(f"{clock() - t0:8.2f}s  {p.kind} {p.target}: FAILED {exc}")
                    atomic_write_json(out_path, doc)
                    continue
                active[p.index] = p
                entry["start"] = record["start"]
                entry["start_details"] = record["start_details"]
                last = record["start"]["mono"]
                echo(f"{last - t0:8.2f}s  start {p.kind} {p.target} {_fmt(p.params)}")
            else:
                record = bed.heal(p.a, p.b, wait_ready=False)
                active.pop(p.index, None)
                if record is None:  # healed by someone else meanwhile: no stamp of ours to give
                    entry["error"] = "healed elsewhere"
                    continue
                entry["end"] = record["end"]
                entry["end_details"] = record["end_details"]
                last = record["end"]["mono"]
                echo(f"{last - t0:8.2f}s  end   {p.kind} {p.target}")
            atomic_write_json(out_path, doc)
        while (left := t0 + cfg.duration_s - clock()) > 0:  # the fault-free tail belongs to the run
            sleep(min(left, 1.0))
        doc["complete"] = True
    except BaseException:
        doc["interrupted"] = True
        for p in list(active.values()):
            try:
                record = bed.heal(p.a, p.b, wait_ready=False)
            except Exception as exc:  # noqa: BLE001
                doc["faults"][p.index]["heal_error"] = str(exc)
                continue
            if record is not None:
                doc["faults"][p.index]["end"] = record["end"]
                doc["faults"][p.index]["end_details"] = record["end_details"]
        raise
    finally:
        doc["clock"]["finished_mono"] = clock()
        atomic_write_json(out_path, doc)
    return doc


def _fmt(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())
