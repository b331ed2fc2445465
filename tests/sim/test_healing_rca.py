"""Root-cause analysis against injected truth on seeded synthetic meshes (tests/sim/healing_world.py).

Each trial: a random connected 12-node mesh, one observing node, one fault of a known kind at a known
element starting at 8 s; the observer's monitor runs on what it would see (hellos, pinned probes,
routing views, shared node metrics) and, 13 s later, analysis ranks the causes of the active
symptoms. Top-1 and top-3 hits against the truth are counted per fault kind. The harder variants take
away the peers' shared metrics, add RTT jitter and put busy (high-CPU, harmless) decoy nodes around.
"""

from __future__ import annotations

import collections
import random

import pytest

from tests.sim.healing_world import World, observer_run
from x0node.healing.analyze import FaultKind, cover, rank
from x0node.healing.monitor import Monitor, link_element, node_element

KINDS = ("link_lossy", "remote_link_lossy", "link_congested", "link_flapping", "node_blackhole", "node_overload",
         "node_down")
FAULT_START_S, JUDGE_AT_S = 8.0, 21.0


def pick(kind: str, w: World, rng: random.Random):
    """(observer, fault) for a fault of `kind` the observer can see, or None."""
    from tests.sim.healing_world import Fault

    adj = w.adjacency()
    for _ in range(200):
        s = rng.choice(w.ids())
        if len(adj[s]) < 2:
            continue
        n = rng.choice(sorted(adj[s]))
        onward = sorted(adj[n] - {s})
        if kind in ("link_lossy", "link_congested", "link_flapping"):
            amount = {"link_lossy": 0.2, "link_congested": 80.0, "link_flapping": 3.0}[kind]
            return s, Fault(kind, link_element(s, n), FAULT_START_S, amount=amount)
        if len(onward) < 2:
            continue  # with one onward neighbour "the node" and "its one link" cannot be told apart
        if kind in ("node_blackhole", "node_overload"):
            return s, Fault(kind, node_element(n), FAULT_START_S, amount=0.4)
        if kind == "remote_link_lossy":
            return s, Fault("link_lossy", link_element(n, rng.choice(onward)), FAULT_START_S, amount=0.4)
        if kind == "node_down":
            two_hops = [d for d in onward if d not in adj[s]]
            if two_hops:
                return s, Fault("node_down", node_element(rng.choice(two_hops)), FAULT_START_S)
    return None


def trial(kind: str, seed: int, share: bool = True, jitter: float = 0.0, decoys: int = 0):
    rng = random.Random(seed * 7 + 1)
    w = World.random(12, seed)
    w.share_metrics, w.jitter, w._rng = share, jitter, random.Random(seed)
    got = pick(kind, w, rng)
    if got is None:
        return None
    s, fault = got
    w.faults.append(fault)
    if decoys:
        w.busy = frozenset(rng.sample([x for x in w.ids() if x not in (s, fault.element.id)], decoys))
    mon = Monitor(s)
    diag = None
    for t, snap in observer_run(w, s, JUDGE_AT_S + 1.0, seed):
        out = mon.observe(snap)
        if t >= JUDGE_AT_S:
            diag = rank(out.indicators, out.active, snap.routing, t, adjacency=out.adjacency)
            break
    truth = (fault.element, FaultKind(kind.removeprefix("remote_")))
    ranked = [(c.element, c.fault) for c in diag.candidates]
    return ranked[:1] == [truth], truth in ranked[:3], diag


def score(trials: int, **variant) -> tuple[dict[str, tuple[float, float, float]], float, float]:
    """Per kind (detected share, top-1, top-3 among the detected), and overall top-1 and top-3 over
    every detected trial. Undetected = no symptom active at judging time."""
    hits1, hits3, n, seen = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
    for kind in KINDS:
        for seed in range(trials):
            r = trial(kind, seed, **variant)
            if r is None:
                continue
            n[kind] += 1
            if not r[2].symptoms:
                continue
            seen[kind] += 1
            hits1[kind] += r[0]
            hits3[kind] += r[1]
    per = {k: (seen[k] / n[k], hits1[k] / max(1, seen[k]), hits3[k] / max(1, seen[k])) for k in KINDS}
    total = sum(seen.values())
    return per, sum(hits1.values()) / total, sum(hits3.values()) / total


def test_rca_names_the_injected_fault_with_shared_metrics():
    per, top1, top3 = score(8)
    assert top1 >= 0.9 and top3 >= 0.95, per
    assert all(p1 >= 0.75 for _, p1, _ in per.values()), per
    assert all(seen >= 0.75 for seen, _, _ in per.values()), per  # the faults are seen at all


@pytest.mark.parametrize("variant", [dict(share=False, jitter=0.5, decoys=2)], ids=["no-shared-metrics-jitter-decoys"])
def test_rca_under_jitter_decoys_and_no_shared_metrics(variant):
    per, top1, top3 = score(8, **variant)
    # without the far end's CPU reading an overloaded transit and a slow link look alike: top-3 only
    assert per["node_overload"][2] >= 0.75, per
    others = [per[k] for k in KINDS if k != "node_overload"]
    assert sum(p1 for _, p1, _ in others) / len(others) >= 0.8 and top3 >= 0.9, per


def test_cover_gives_two_simultaneous_faults_two_diagnoses():
    from tests.sim.healing_world import Fault

    w = World.random(12, 3)
    adj = w.adjacency()
    s = next(x for x in w.ids() if len(adj[x]) >= 3)
    n1, n2 = sorted(adj[s])[:2]
    w.faults += [Fault("link_lossy", link_element(s, n1), FAULT_START_S, amount=0.25),
                 Fault("link_congested", link_element(s, n2), FAULT_START_S, amount=80.0)]
    mon = Monitor(s)
    for t, snap in observer_run(w, s, JUDGE_AT_S + 1.0, 3):
        out = mon.observe(snap)
        if t >= JUDGE_AT_S:
            groups = cover(out.indicators, out.active, snap.routing, t, adjacency=out.adjacency)
            break
    tops = {(g.top.element, g.top.fault) for g, _ in groups if g.top is not None}
    assert (link_element(s, n1), FaultKind.LINK_LOSSY) in tops
    assert (link_element(s, n2), FaultKind.LINK_CONGESTED) in tops
