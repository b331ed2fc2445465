from __future__ import annotations

import random

import pytest

from tests.unit.healing_views import ME, A, B, C, diamond
from x0node.healing import probe as pr
from x0node.healing.observation import EdgeObs, NeighbourObs, NodeObs, RoutingObs
from x0node.healing.probe import ProbeScheduler


def _run(sched: ProbeScheduler, routing: RoutingObs, start: float, end: float, answer=lambda req: 0.01,
         step: float = 0.01):
    """Step time; answer(req) -> RTT seconds or None (lost). Returns every request sent."""
    sent, pending, t = [], [], start
    while t < end:
        sched.update(routing, t)
        for at, pid in [p for p in pending if p[0] <= t]:
            pending.remove((at, pid))
            sched.answer(pid, at)
        for req in sched.poll(t):
            sent.append(req)
            rtt = answer(req)
            if rtt is not None:
                pending.append((t + rtt, req.probe_id))
        t = round(t + step, 6)
    return sent


def test_probes_go_through_each_neighbour_to_it_to_us_and_to_its_neighbours():
    sched = ProbeScheduler(ME, random.Random(1), 0.0)
    sent = _run(sched, diamond(), 0.0, 3.0)
    pairs = {(r.target.via, r.target.dest) for r in sent}
    # path probes to each neighbour's neighbours other than us, link probes to it, loop probes to us
    assert pairs == {(A, C), (B, C), (A, A), (B, B), (A, ME), (B, ME)}
    assert all(r.target.via_address == f"fe80::{r.target.via[:2]}" for r in sent)
    # link probes to the neighbour's link-local address (answered over the link), others to mesh addresses
    assert all(r.target.dest_address == (f"fe80::{r.target.via[:2]}" if r.target.dest == r.target.via
                                         else f"fd00::{r.target.dest[:2]}") for r in sent)
    expected = 3.0 / pr.PROBE_INTERVAL_S
    for via in (A, B):
        for dest in (C, via, ME):  # each kind once per tick, the link probes LINK_PROBES_PER_TICK times
            n = sum(1 for r in sent if (r.target.via, r.target.dest) == (via, dest))
            k = pr.LINK_PROBES_PER_TICK if dest == via else 1
            assert expected * k * 0.6 <= n <= expected * k * 1.5, (via, dest, n)
    res = {(p.via, p.dest): p for p in sched.results(3.0)}
    assert res[(A, C)].lost == 0 and res[(A, C)].rtt_ms == pytest.approx(10.0, abs=1.0)
    assert res[(A, ME)].lost_flags == (False,) * res[(A, ME)].sent


def test_loop_probes_use_the_given_address_and_outcomes_keep_their_order():
    sched = ProbeScheduler(ME, random.Random(8), 0.0, self_address="fd00::1")
    sent = _run(sched, diamond(), 0.0, 3.0,
                answer=lambda req: None if req.sent_s >= 2.0 and req.target.dest == ME else 0.01)  # loop loss from 2 s
    assert {r.target.dest_address for r in sent if r.target.dest == ME} == {"fd00::1"}
    sched.poll(4.5)
    loop = {p.via: p for p in sched.results(4.5) if p.dest == ME}
    flags = loop[A].lost_flags
    assert flags[0] is False and flags[-1] is True and sum(flags) == loop[A].lost  # oldest first
    assert {p.via: p.lost for p in sched.results(4.5) if p.dest == p.via} == {A: 0, B: 0}


def test_lost_late_and_unknown_answers():
    sched = ProbeScheduler(ME, random.Random(2), 0.0)
    _run(sched, diamond(), 0.0, 2.5, answer=lambda req: None if req.target.via == A else 0.005)  # < a window
    sched.poll(2.5 + pr.PROBE_TIMEOUT_S + 0.01)
    res = sched.results(2.5 + pr.PROBE_TIMEOUT_S + 0.01)
    lost_a = sum(p.lost for p in res if p.via == A)
    assert lost_a == sum(p.sent for p in res if p.via == A) > 0 and sum(p.lost for p in res if p.via == B) == 0
    assert sched.counters.timed_out == lost_a
    assert sched.answer(99999, 5.0) is False and sched.counters.late_or_unknown == 1
    req = sched.poll(10.0)[0]
    assert sched.answer(req.probe_id, req.deadline_s + 0.1) is False  # too late: counted as lost
    assert sched.counters.late_or_unknown == 2


def test_unsent_probes_are_neither_answered_nor_lost():
    sched = ProbeScheduler(ME, random.Random(3), 0.0)
    sched.update(diamond(), 0.0)
    reqs = sched.poll(1.0)
    assert reqs
    for r in reqs:
        sched.cancel(r.probe_id)
    sched.poll(5.0)
    assert sched.counters.unsent == len(reqs) and sched.counters.timed_out == 0
    assert sched.results(5.0) == ()


def test_rate_stays_bounded_with_many_neighbours():
    n = 64
    ids = [f"{i:08x}" for i in range(n)]
    nbrs = tuple(NeighbourObs(x, "wlan0", f"fe80::{i}", True, 0.0, 1.0, "GOOD", 10) for i, x in enumerate(ids))
    far = [f"f{i:07x}" for i in range(n)]
    nodes = tuple(NodeObs(x, f"fd00::{i}", True) for i, x in enumerate(far))
    edges = tuple(EdgeObs(a, b, 10) for a, b in zip(ids, far, strict=True))
    routing = RoutingObs(ME, nbrs, (), nodes, edges)
    sched = ProbeScheduler(ME, random.Random(4), 0.0)
    sent = _run(sched, routing, 0.0, 10.0)
    assert len(sent) <= 10.0 * pr.PROBE_RATE_MAX_PER_S + pr.PROBE_BURST
    assert len({r.target.via for r in sent}) == n  # everyone still gets probed, less often


def test_destinations_are_bounded_reachable_and_never_us():
    extra = tuple(NodeObs(f"e{i:07x}", f"fd00::e{i}", i % 2 == 0) for i in range(12))
    base = diamond()
    edges = base.edges + tuple(EdgeObs(A, n.node_id, 10) for n in extra)
    routing = RoutingObs(ME, base.neighbours, base.routes, base.nodes + extra, edges, base.interfaces)
    sched = ProbeScheduler(ME, random.Random(5), 0.0)
    sent = _run(sched, routing, 0.0, 5.0)
    dests = {r.target.dest for r in sent if r.target.via == A}
    reachable = {n.node_id for n in extra if n.reachable} | {C}
    paths = dests - {ME, A}  # less the loop and link probes
    assert 0 < len(paths) <= pr.MAX_DESTS_PER_NEIGHBOUR and paths <= reachable


def test_a_neighbour_that_goes_away_takes_its_results_and_ids_wrap(monkeypatch):
    sched = ProbeScheduler(ME, random.Random(6), 0.0)
    _run(sched, diamond(), 0.0, 2.0)
    only_b = RoutingObs(ME, diamond().neighbours[1:], (), diamond().nodes, diamond().edges)
    sched.update(only_b, 2.0)
    assert {p.via for p in sched.results(2.0)} == {B}
    assert sched.next_timer() is not None
    monkeypatch.setattr(pr, "PROBE_ID_SPACE", 4)
    small = ProbeScheduler(ME, random.Random(7), 0.0)
    ids = [r.probe_id for r in _run(small, diamond(), 0.0, 3.0)]
    assert set(ids) <= {0, 1, 2, 3} and len(ids) > 4


def test_the_recent_rtt_follows_a_queue_that_began_a_second_ago():
    """A link's queue fills from 4.2 s on (RTT 1 ms -> 150 ms): the window's median still says 1 ms, the
    median of the last RECENT_RTT_PROBES answers already says 150 ms."""
    sched = ProbeScheduler(ME, random.Random(4), 0.0)
    _run(sched, diamond(), 0.0, 5.0, answer=lambda req: 0.15 if req.sent_s >= 4.2 and req.target.via == A else 0.001)
    sched.poll(5.5)
    link = {p.via: p for p in sched.results(5.5) if p.dest == p.via}
    assert link[A].rtt_ms == pytest.approx(1.0) and link[A].recent_rtt_ms == pytest.approx(150.0)
    assert link[B].recent_rtt_ms == pytest.approx(1.0)
