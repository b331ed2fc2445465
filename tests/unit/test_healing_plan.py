"""plan, execute and verify, each on its own (the engine's use of them is in tests/sim/test_healing_loop.py)."""

from __future__ import annotations

import random

from tests.unit.healing_views import ME, A, B, diamond
from x0node.healing import execute as ex
from x0node.healing import verify
from x0node.healing.actions import ActionKind, ActionResult, PlanContext
from x0node.healing.analyze import Candidate, Diagnosis, FaultKind
from x0node.healing.execute import Executor
from x0node.healing.incident import Incident
from x0node.healing.monitor import Element, ElementKind, Monitor, SymptomKind, link_element, node_element
from x0node.healing.observation import Snapshot
from x0node.healing.plan import Gates, PlanKind, plan
from x0node.healing.safety import Backoff, DisruptionBudget, GuardConfig, LeaseAnswer, Mode, TokenBucket

NO_STATS = lambda fault, action: (0, 0)  # noqa: E731
NOT_IN_FORCE = lambda action, target: False  # noqa: E731


def cand(element: Element, fault: FaultKind, confidence: float = 0.8) -> Candidate:
    return Candidate(element, fault, confidence, confidence, 1.0, 1.0, 1.0, 1, (), ())


def incident(*cands: Candidate) -> Incident:
    return Incident(1, 0.0, {(SymptomKind.LINK_LOSS, link_element(ME, A))}, Diagnosis(0.0, tuple(cands), ()))


def gates(start_s: float = -1000.0, budget: int = 3, guard: GuardConfig | None = None) -> Gates:
    return Gates(guard or GuardConfig(0.0, 0.0), Backoff(random.Random(1)), TokenBucket(1.0, 5.0, 0.0),
                 DisruptionBudget(budget), start_s)


def ctx(now: float = 100.0, **view) -> PlanContext:
    snap = Snapshot(now, diamond(**view), boot_s=None)
    return PlanContext(snap, Monitor(ME).observe(snap))


def test_the_first_rung_that_applies_is_chosen_and_skips_are_reported():
    inc = incident(cand(link_element(A, "ff" * 4), FaultKind.LINK_LOSSY), cand(node_element(A), FaultKind.NODE_BLACKHOLE))
    p = plan(inc, ctx(), gates(), Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    # the remote link has no lever of ours; the neighbour's black hole does: steer around it
    assert p.kind is PlanKind.ACT and p.rung.action is ActionKind.STEER_AROUND_NODE and p.cand_index == 1
    assert p.params == {"neighbour": A, "factor": 64.0}
    in_force = plan(inc, ctx(), gates(), Mode.ACTIVE, NO_STATS, lambda a, t: a is ActionKind.STEER_AROUND_NODE, 0.3)
    assert in_force.rung.action is ActionKind.DRAIN_LINK and ("steer_around_node", str(node_element(A)),
                                                             "already in force") in in_force.skipped


def test_guard_comes_before_the_mode_and_observe_stops_before_the_other_gates():
    inc = incident(cand(link_element(ME, A), FaultKind.LINK_LOSSY))
    guarded = plan(inc, ctx(), gates(start_s=90.0, guard=GuardConfig(0.0, 60.0)), Mode.OBSERVE, NO_STATS,
                   NOT_IN_FORCE, 0.3)
    assert guarded.kind is PlanKind.WAIT and guarded.gate == "guard"
    g = gates()
    g.backoff.failed((str(link_element(ME, A)), "penalise_link"), 99.0)
    observed = plan(inc, ctx(), g, Mode.OBSERVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert observed.kind is PlanKind.OBSERVE_ONLY and "observe mode" in observed.reason
    waiting = plan(inc, ctx(), g, Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert waiting.kind is PlanKind.WAIT and waiting.gate == "backoff"
    assert waiting.rung.action is ActionKind.PENALISE_LINK  # it waits; it does not jump to the drain


def test_low_confidence_and_empty_diagnoses_are_exhausted_with_a_reason():
    weak = plan(incident(cand(link_element(ME, A), FaultKind.LINK_LOSSY, 0.2)), ctx(), gates(), Mode.ACTIVE, NO_STATS,
                NOT_IN_FORCE, 0.3)
    assert weak.kind is PlanKind.EXHAUSTED and "not confident" in weak.reason
    none = plan(incident(), ctx(), gates(), Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert none.kind is PlanKind.EXHAUSTED and "no candidate" in none.reason
    down = plan(incident(cand(node_element("ff" * 4), FaultKind.NODE_DOWN)), ctx(), gates(), Mode.ACTIVE, NO_STATS,
                NOT_IN_FORCE, 0.3)
    assert down.kind is PlanKind.EXHAUSTED and "routing repairs it" in down.reason


def test_a_link_down_is_left_to_routing_and_its_lesser_candidates_are_not_acted_on():
    inc = incident(cand(link_element(ME, A), FaultKind.LINK_DOWN, 0.5), cand(link_element(ME, A), FaultKind.LINK_LOSSY, 0.4))
    p = plan(inc, ctx(), gates(), Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert p.kind is PlanKind.EXHAUSTED and p.rung is None and "routing repairs it" in p.reason


def test_the_budget_holds_back_disruptive_rungs_only():
    svc = Element(ElementKind.SERVICE, "telemetry")
    inc = incident(cand(svc, FaultKind.SERVICE_HUNG))
    g = gates(budget=0)
    p = plan(inc, ctx(), g, Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert p.kind is PlanKind.WAIT and p.gate == "budget"
    lossy = plan(incident(cand(link_element(ME, A), FaultKind.LINK_LOSSY)), ctx(), g, Mode.ACTIVE, NO_STATS,
                 NOT_IN_FORCE, 0.3)
    assert lossy.kind is PlanKind.ACT


def test_executor_ids_answers_leases_mitigations_and_a_bounded_outbox(monkeypatch):
    e = Executor(first_id=50)
    req = e.request(1, ActionKind.PENALISE_LINK, link_element(ME, A), {"factor": 4.0}, "why")
    assert req.request_id == 50 and req.param("factor") == 4.0 and e.next() is req
    assert e.result(ActionResult(50, True)).incident_id == 1 and e.result(ActionResult(50, True)) is None
    assert e.unknown_answers == 1
    lease = e.lease(2, "disrupt/x", ME, 30.0, "r")
    assert e.lease_answer(LeaseAnswer(lease.lease_id, True)) == 2
    e.release(lease.lease_id)
    assert [type(x).__name__ for x in iter(e.next, None)] == ["LeaseRequest", "LeaseRelease"]
    e.enforce(req)
    assert e.in_force(ActionKind.PENALISE_LINK, link_element(ME, A))
    undo = e.lift(req, "healthy")
    assert undo is not None and undo.undo and undo.params == req.params and e.lift(req, "again") is None
    monkeypatch.setattr(ex, "MAX_OUTBOX", 2)
    for _ in range(4):
        e.request(3, ActionKind.REBOOT, node_element(ME), {}, "x")
    assert e.dropped == 3  # the undo above and two reboots fell out
    assert e.next_id > 50


def test_verify_repairs_by_symptoms_and_mitigations_by_their_effect():
    key = (SymptomKind.LINK_LOSS, link_element(ME, A))
    inc = incident(cand(link_element(ME, A), FaultKind.LINK_LOSSY))
    e = Executor()
    inc.pending = e.request(1, ActionKind.PENALISE_LINK, link_element(ME, A), {"neighbour": A}, "x")
    inc.pending_since_s, inc.deadline_s = 100.0, 105.0
    assert verify.check(inc, ctx(101.0, via_c=A, loss_a=0.3), {key}) is None  # not yet
    moved = verify.check(inc, ctx(102.0, via_c=B, loss_a=0.3), {key})
    assert moved.success and "effect observed" in moved.reason
    late = verify.check(inc, ctx(106.0, via_c=A, loss_a=0.3), {key})
    assert not late.success and "not observed" in late.reason
    inc.pending = e.request(1, ActionKind.RESET_INTERFACE, link_element(ME, A), {"ifname": "eaa"}, "x")
    inc.deadline_s = 130.0
    assert verify.check(inc, ctx(110.0), {key}) is None
    assert verify.check(inc, ctx(111.0), set()).success
    assert not verify.check(inc, ctx(131.0), {key}).success



def test_a_lesser_candidate_below_the_first_ones_bar_is_still_acted_on():
    """The first candidate (a link between two other nodes) holds no lever of ours; the black hole at our
    neighbour is the lesser candidate at 0.33. It is acted on: a higher bar for lesser candidates was
    tried and made a black hole never recover on the bench (the incident stayed exhausted while its
    first candidate stayed first)."""
    remote = cand(link_element(A, "ff" * 4), FaultKind.LINK_LOSSY, 0.45)
    p = plan(incident(remote, cand(node_element(A), FaultKind.NODE_BLACKHOLE, 0.33)), ctx(), gates(),
             Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert p.kind is PlanKind.ACT and p.cand_index == 1


def test_a_mitigation_in_force_for_another_incident_is_not_escalated_past_to_a_disruptive_rung():
    # bench, lossy n1~n2: a second incident about the link found its drain in force (held by the first)
    # and went on to reset the interface while the drain was working
    inc = incident(cand(link_element(ME, A), FaultKind.LINK_LOSSY))
    p = plan(inc, ctx(), gates(), Mode.ACTIVE, NO_STATS,
             lambda a, t: a in (ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK), 0.3)
    assert p.kind is PlanKind.WAIT and p.gate == "in_force" and p.rung.action is ActionKind.RESET_INTERFACE
    free = plan(inc, ctx(), gates(), Mode.ACTIVE, NO_STATS, NOT_IN_FORCE, 0.3)
    assert free.kind is PlanKind.ACT and free.rung.action is ActionKind.PENALISE_LINK
