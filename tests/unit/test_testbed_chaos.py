"""x0lab.testbed.chaos: the seeded plan keeps every bound; the runner applies it in order, keeps the
spacing on the real clock, writes the ground truth after every event and heals what is active when it
is interrupted. The runner is driven with a stand-in testbed and a manual clock (no namespaces)."""

from __future__ import annotations

import itertools
import json

import pytest

from x0lab.testbed import chaos, faults
from x0lab.testbed.topology import parse

RING = parse("ring:6")
GRID = parse("grid:3x3")


def _cfg(**kw):
    base = dict(duration_s=600.0, seed=1, max_concurrent=2, min_gap_s=5.0, fault_min_s=10.0, fault_max_s=30.0)
    return chaos.ChaosConfig(**{**base, **kw})


def _check_bounds(plan, cfg, topo):
    assert plan, "an empty plan checks nothing"
    events = sorted(t for p in plan for t in (p.start_s, p.end_s))
    assert all(b - a >= cfg.min_gap_s - 1e-6 for a, b in itertools.pairwise(events))
    for p in plan:
        assert cfg.start_after_s <= p.start_s and p.end_s <= cfg.duration_s
        assert cfg.fault_min_s - 1e-6 <= p.end_s - p.start_s <= cfg.fault_max_s + 1e-6
        assert p.kind in cfg.kinds
        faults.validate(p.kind, p.params)  # parameters within the table's bounds
        if p.b is None:
            assert 1 <= p.a <= topo.nodes
        else:
            assert topo.has_link(p.a, p.b)
        others = [q for q in plan if q is not p and q.start_s < p.end_s and p.start_s < q.end_s]
        assert not any(q.elements & p.elements for q in others)
    for t in (p.start_s for p in plan):
        assert sum(1 for p in plan if p.start_s <= t < p.end_s) <= cfg.max_concurrent


@pytest.mark.parametrize("seed", range(20))
def test_plan_keeps_every_bound(seed):
    cfg = _cfg(seed=seed, max_concurrent=1 + seed % 3)
    _check_bounds(chaos.plan_schedule(GRID, cfg), cfg, GRID)


def test_plan_is_a_function_of_seed_and_topology():
    a, b = chaos.plan_schedule(RING, _cfg()), chaos.plan_schedule(RING, _cfg())
    assert a == b and [p.params for p in a] == [p.params for p in b]
    assert chaos.plan_schedule(RING, _cfg(seed=2)) != a
    assert chaos.plan_schedule(GRID, _cfg()) != a


def test_plan_uses_the_concurrency_it_is_allowed_and_every_kind():
    cfg = _cfg(duration_s=3000.0, max_concurrent=3, seed=7)
    plan = chaos.plan_schedule(GRID, cfg)
    peak = max(sum(1 for q in plan if q.start_s <= p.start_s < q.end_s) for p in plan)
    assert peak == 3
    assert {p.kind for p in plan} == set(faults.KINDS)


def test_plan_honours_a_kind_subset_and_warmup():
    cfg = _cfg(kinds=("hang", "loss"), warmup_s=60.0)
    plan = chaos.plan_schedule(RING, cfg)
    assert {p.kind for p in plan} == {"hang", "loss"} and min(p.start_s for p in plan) >= 60.0


@pytest.mark.parametrize("kw", [
    {"duration_s": 0}, {"max_concurrent": 0}, {"min_gap_s": 0}, {"fault_min_s": 2.0},
    {"fault_max_s": 5.0, "fault_min_s": 10.0}, {"kinds": ()}, {"kinds": ("meteor",)},
])
def test_bad_configs_are_refused(kw):
    with pytest.raises(chaos.ChaosError):
        chaos.plan_schedule(RING, _cfg(**kw))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


class FakeBed:
    """Applies nothing; stamps with the manual clock, taking `apply_s` per change."""

    def __init__(self, topo, clock, apply_s=0.0, fail_kinds=(), interrupt_at=None):
        self.topology, self.clock, self.apply_s = topo, clock, apply_s
        self.fail_kinds, self.interrupt_at = fail_kinds, interrupt_at
        self.id, self.daemon, self.nodes = "fake", "x0node", {}
        self.state = {"topology": topo.spec, "links": [list(x) for x in topo.links]}
        self.active, self.calls = {}, []

    def _stamp(self):
        self.clock.now += self.apply_s
        return {"mono": self.clock.now, "wall": self.clock.now + 1e9, "uncertainty_s": self.apply_s}

    def fault(self, kind, a, b=None, **params):
        if self.interrupt_at is not None and len(self.calls) >= self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(("fault", kind, a, b))
        if kind in self.fail_kinds:
            raise RuntimeError("no daemon")
        key = faults.target_key(kind, a, b)
        assert key not in self.active
        self.active[key] = kind
        return {"start": self._stamp(), "start_details": {"k": kind}}

    def heal(self, a, b=None, wait_ready=True):
        key = f"n{a}" if b is None else f"{min(a, b)}-{max(a, b)}"
        self.calls.append(("heal", a, b))
        if self.active.pop(key, None) is None:
            return None
        return {"end": self._stamp(), "end_details": {}}


def test_runner_applies_the_plan_and_writes_exact_truth(tmp_path):
    clock = Clock()
    cfg = _cfg(duration_s=200.0, seed=3)
    bed = FakeBed(RING, clock, apply_s=0.02)
    out = tmp_path / "truth.json"
    doc = chaos.run(bed, cfg, out, clock=clock, sleep=clock.sleep)
    assert doc["complete"] and json.loads(out.read_text()) == doc
    plan = chaos.plan_schedule(RING, cfg)
    assert [(f["fault"], f["target"]) for f in doc["faults"]] == [(p.kind, p.target) for p in plan]
    t0 = doc["clock"]["t0_mono"]
    for f in doc["faults"]:
        assert f["start"]["mono"] < f["end"]["mono"]
        assert f["start"]["mono"] - t0 == pytest.approx(f["planned_start_s"] + 0.02, abs=1e-6)
        assert f["end"]["mono"] - t0 == pytest.approx(f["planned_end_s"] + 0.02, abs=1e-6)
    assert not bed.active


def test_runner_keeps_the_gap_when_changes_are_slow(tmp_path):
    clock = Clock()
    cfg = _cfg(duration_s=300.0, seed=5)
    bed = FakeBed(RING, clock, apply_s=4.0)  # each change takes most of the gap
    doc = chaos.run(bed, cfg, tmp_path / "t.json", clock=clock, sleep=clock.sleep)
    stamps = sorted(s["mono"] for f in doc["faults"] for s in (f["start"], f["end"]))
    assert all(b - a >= cfg.min_gap_s for a, b in itertools.pairwise(stamps))


def test_a_failed_start_is_recorded_and_the_schedule_goes_on(tmp_path):
    clock = Clock()
    cfg = _cfg(duration_s=300.0, seed=1, kinds=("hang", "loss"))
    bed = FakeBed(RING, clock, fail_kinds=("hang",))
    doc = chaos.run(bed, cfg, tmp_path / "t.json", clock=clock, sleep=clock.sleep)
    failed = [f for f in doc["faults"] if f["fault"] == "hang"]
    applied = [f for f in doc["faults"] if f["fault"] == "loss"]
    assert failed and all(f["error"] == "no daemon" and f["start"] is None and f["end"] is None for f in failed)
    assert applied and all(f["start"] and f["end"] for f in applied)
    assert not any(c[0] == "heal" and c[2] is None for c in bed.calls)  # no heal for what never started


def test_interruption_heals_active_faults_and_leaves_valid_truth(tmp_path):
    clock = Clock()
    cfg = _cfg(duration_s=600.0, seed=2, max_concurrent=3)
    bed = FakeBed(GRID, clock, interrupt_at=6)
    out = tmp_path / "t.json"
    with pytest.raises(KeyboardInterrupt):
        chaos.run(bed, cfg, out, clock=clock, sleep=clock.sleep)
    doc = json.loads(out.read_text())
    assert doc["interrupted"] and not doc["complete"] and not bed.active
    started = [f for f in doc["faults"] if f["start"] is not None]
    assert started and all(f["end"] is not None and f["end"]["mono"] >= f["start"]["mono"] for f in started)
