"""The MAPE-K engine stepped through time on scripted symptom streams: ladders, escalation, undo,
backoff, the budget, guard windows, leases, observe mode and its promotion, mitigations held and
lifted. Every test is deterministic (seeded rng, manual clock); nothing sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.sim.healing_world import CYCLE_S, Fault, World, nid, observer_run
from tests.unit.healing_views import ME, A, B, C, diamond
from x0node.healing import safety
from x0node.healing.actions import PLUGINS, ActionKind, ActionRequest, ActionResult, PlanContext
from x0node.healing.engine import EXHAUSTED_RETRY_S, EngineConfig, HealingEngine
from x0node.healing.incident import ActionDone, Decided, Diagnosed, IncidentClosed, IncidentOpened, Verified
from x0node.healing.knowledge import PastAction
from x0node.healing.monitor import link_element, node_element
from x0node.healing.observation import EdgeObs, NodeMetricsObs, RoutingObs, ServiceObs, Snapshot
from x0node.healing.safety import (
    GuardConfig,
    LeaseAnswer,
    LeaseRelease,
    LeaseRequest,
    Mode,
    ModeChanged,
    ModeConfig,
)

NO_GUARD = GuardConfig(after_boot_s=0.0, after_start_s=0.0)


@dataclass
class Harness:
    engine: HealingEngine
    perform: Callable[[ActionRequest, float], tuple[bool, str]] = lambda req, now: (True, "")
    lease: Callable[[LeaseRequest, float], LeaseAnswer] | None = None
    requests: list[tuple[float, ActionRequest]] = field(default_factory=list)
    leases: list[tuple[float, object]] = field(default_factory=list)
    events: list[object] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._local = safety.LocalLeases(ME)

    def step(self, snap: Snapshot) -> None:
        self.engine.step(snap)
        self.pump(snap.now)

    def pump(self, now: float) -> None:
        for item in iter(self.engine.next_request, None):
            if isinstance(item, LeaseRequest):
                self.leases.append((now, item))
                ans = self.lease(item, now) if self.lease else self._local.request(item, now)
                self.engine.lease_answer(ans, now)
            elif isinstance(item, LeaseRelease):
                self.leases.append((now, item))
                self._local.release(item, now)
            else:
                self.requests.append((now, item))
                ok, detail = self.perform(item, now)
                self.engine.action_result(ActionResult(item.request_id, ok, detail), now)
        self.events.extend(iter(self.engine.next_event, None))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def decided(self, outcome: str | None = None) -> list[Decided]:
        return [d for d in self.of(Decided) if outcome is None or d.outcome == outcome]

    def acted(self, undo: bool | None = False) -> list[tuple[float, ActionKind, str]]:
        return [(t, r.action, str(r.target)) for t, r in self.requests if undo is None or r.undo == undo]


def engine(mode: Mode = Mode.ACTIVE, guard: GuardConfig = NO_GUARD, budget: int = 3, **kw) -> HealingEngine:
    cfg = EngineConfig(mode=mode, guard=guard, disruptive_per_hour=budget,
                       mode_config=kw.pop("mode_config", ModeConfig()), mitigation_hold_s=kw.pop("hold", 30.0),
                       lift_hold_s=kw.pop("lift", 3.0))
    return HealingEngine(ME, cfg, random.Random(7), 0.0, **kw)


def services(**health: bool) -> tuple[ServiceObs, ...]:
    return tuple(ServiceObs(name, True, ok, "" if ok else "stuck") for name, ok in sorted(health.items()))


def run(h: Harness, until: float, snap_at: Callable[[float], Snapshot], start: float = 0.0) -> None:
    t = start
    while t <= until:
        h.step(snap_at(t))
        t = round(t + CYCLE_S, 6)


# --- ladders, verification, escalation --------------------------------------------------------------

def test_a_hung_service_is_restarted_verified_and_the_incident_closed():
    state = {"ok": False}

    def perform(req, now):
        state["ok"] = req.action is ActionKind.RESTART_SUBSYSTEM
        return True, ""

    h = Harness(engine(), perform)
    run(h, 60.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=state["ok"] or t < 5)))
    assert [a for _, a, _ in h.acted()] == [ActionKind.RESTART_SUBSYSTEM]
    assert h.requests[0][1].param("service") == "telemetry"
    opened, closed = h.of(IncidentOpened), h.of(IncidentClosed)
    assert len(opened) == 1 and len(closed) == 1
    c = closed[0]
    assert (c.outcome, c.root_cause, c.element, c.action) == ("recovered", "service_hung", "service:telemetry",
                                                               "restart_subsystem")
    assert c.mttr_s <= 15.0  # verified once the symptom cleared (hysteresis: 10 s healthy)
    v = h.of(Verified)[0]
    assert v.success and "cleared" in v.reason
    assert h.engine.knowledge.stats(*_fa("service_hung", "restart_subsystem")) == (1, 1)


def _fa(fault: str, action: str):
    from x0node.healing.analyze import FaultKind

    return FaultKind(fault), ActionKind(action)


def test_a_failing_repair_escalates_takes_a_lease_and_stops_before_the_reboot():
    h = Harness(engine())
    run(h, 200.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5)))
    assert [a for _, a, _ in h.acted()] == [ActionKind.RESTART_SUBSYSTEM, ActionKind.RESTART_DAEMON]
    t_restart, t_daemon = h.acted()[0][0], h.acted()[1][0]
    assert t_daemon - t_restart >= 30.0  # the restart's verify deadline passed first
    fails = [v for v in h.of(Verified) if not v.success]
    assert [v.action for v in fails] == ["restart_subsystem", "restart_daemon"]
    lease_reqs = [x for _, x in h.leases if isinstance(x, LeaseRequest)]
    releases = [x for _, x in h.leases if isinstance(x, LeaseRelease)]
    assert len(lease_reqs) == 1 and lease_reqs[0].resource == f"disrupt/{ME}"
    assert [r.lease_id for r in releases] == [lease_reqs[0].lease_id]  # released when verification ended
    skipped = [d for d in h.decided("skipped") if d.action == "reboot"]
    assert skipped and "last rung" in skipped[0].reason
    assert h.decided("exhausted")


def test_a_mitigation_without_effect_is_undone_and_the_ladder_climbs():
    # routes never move (the adapter says yes, the routing view disagrees): penalise -> drain -> reset
    h = Harness(engine())
    run(h, 120.0, lambda t: Snapshot(t, diamond(loss_a=0.3 if t >= 5 else 0.0)))
    acts = [a for _, a, _ in h.acted()]
    assert acts[:3] == [ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK, ActionKind.RESET_INTERFACE]
    undos = [a for _, a, _ in h.acted(undo=True)]
    assert undos[:3] == [ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK, ActionKind.RESET_INTERFACE]
    assert all(str(link_element(ME, A)) == target for _, _, target in h.acted())
    reasons = [v.reason for v in h.of(Verified) if not v.success]
    assert "effect not observed" in reasons[0]


def _penalty_world(bad: Callable[[float], bool], rtt: Callable[[float], float] = lambda t: 2.0):
    penalised = {"on": False}

    def perform(req, now):
        if req.action is ActionKind.PENALISE_LINK:
            penalised["on"] = not req.undo
        return True, ""

    def snap(t):
        return Snapshot(t, diamond(via_c=B if penalised["on"] else A, loss_a=0.3 if bad(t) else 0.0, rtt_a=rtt(t)))

    return perform, snap


def test_a_verified_mitigation_is_held_while_the_fault_lasts_then_lifted_with_damping():
    perform, snap = _penalty_world(lambda t: 5 <= t < 40 or 100 <= t < 120)
    h = Harness(engine(lift=5.0), perform)
    run(h, 300.0, snap)
    acts, undos = h.acted(), h.acted(undo=True)
    assert [a for _, a, _ in acts] == [ActionKind.PENALISE_LINK, ActionKind.PENALISE_LINK]
    assert len(undos) == 2
    first_hold = undos[0][0] - 40.0
    second_hold = undos[1][0] - 120.0
    assert 5.0 <= first_hold < 8.0  # the evidence clean for the lift hold; not the symptom's 10 s clear timer
    assert 10.0 <= second_hold < 13.0  # recurring within the reset window: hold doubled
    closed = h.of(IncidentClosed)
    assert [c.outcome for c in closed] == ["recovered", "recovered"] and closed[0].mttr_s <= 10.0


def test_a_lifted_mitigation_opens_no_new_incident_while_the_monitor_still_holds_its_symptom():
    """The lift (evidence clean 3 s) comes before the symptom's own clear timer (10 s): the lift settles
    the symptom, so nothing is re-diagnosed or re-applied for a fault that is over."""
    perform, snap = _penalty_world(lambda t: 5 <= t < 40)
    h = Harness(engine(), perform)
    run(h, 120.0, snap)
    assert len(h.of(IncidentOpened)) == 1 and len(h.acted()) == 1
    (t_undo, _, _), = h.acted(undo=True)
    assert 43.0 <= t_undo < 46.0
    assert h.engine.status()["symptoms"] == [] and h.engine.status()["mitigations"] == []


def test_a_mitigation_is_not_lifted_while_its_evidence_flickers():
    """Loss that comes and goes every 2 s never stays clean for the lift hold: the penalty stays."""
    perform, snap = _penalty_world(lambda t: 5 <= t < 60 and int(t) % 4 < 2)
    h = Harness(engine(lift=3.0), perform)
    run(h, 59.0, snap)
    assert len(h.acted()) == 1 and h.acted(undo=True) == []


def test_a_recurring_fault_after_a_lift_is_mitigated_again_with_a_longer_hold():
    perform, snap = _penalty_world(lambda t: 5 <= t < 30 or 45 <= t < 60)
    h = Harness(engine(lift=3.0), perform)
    run(h, 120.0, snap)
    assert len(h.of(IncidentOpened)) == 2 and len(h.acted()) == 2
    first, second = (t for t, _, _ in h.acted(undo=True))
    assert 33.0 <= first < 36.0 and 66.0 <= second < 69.0  # 3 s, then 6 s


# --- safety ------------------------------------------------------------------------------------------

def test_refused_actions_back_off_exponentially_per_target_and_action():
    h = Harness(engine(), perform=lambda req, now: (False, "the routing core has no command API yet"))
    run(h, 1000.0, lambda t: Snapshot(t, diamond(loss_a=0.3)))
    pen = [t for t, a, _ in h.acted() if a is ActionKind.PENALISE_LINK]
    assert len(pen) >= 3
    gaps = [b - a for a, b in zip(pen, pen[1:], strict=False)]
    assert gaps[0] >= EXHAUSTED_RETRY_S and all(g >= EXHAUSTED_RETRY_S for g in gaps)
    pair = (str(link_element(ME, A)), ActionKind.PENALISE_LINK.value)
    assert h.engine.gates.backoff.failures(pair, 1000.0) == len(pen)
    # the rungs behind it were refused too, each with its own backoff
    assert {a for _, a, _ in h.acted()} >= {ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK}


def test_the_disruptive_budget_makes_a_second_restart_wait_and_persisted_history_counts():
    h = Harness(engine(budget=1), perform=lambda req, now: (True, ""))
    run(h, 90.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5, anomaly=t < 5)))
    assert len([a for _, a, _ in h.acted() if a is ActionKind.RESTART_SUBSYSTEM]) == 1
    waits = [d for d in h.decided("waiting") if d.reason.startswith("budget")]
    assert waits and "limit 1" in waits[0].reason
    # after a restart of the daemon the budget comes from the store: 10 minutes ago counts
    past = [PastAction("restart_subsystem", "service:telemetry", 600.0, True, True)]
    h2 = Harness(engine(budget=1, history=past))
    run(h2, 20.0, lambda t: Snapshot(t, diamond(), services=services(anomaly=t < 5)))
    assert not h2.acted() and h2.decided("waiting")[0].reason.startswith("budget")


def test_nothing_is_done_inside_the_guard_windows():
    h = Harness(engine(guard=GuardConfig(after_boot_s=0.0, after_start_s=60.0)))
    run(h, 90.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5)))
    assert h.acted()[0][0] >= 60.0
    assert any(d.reason.startswith("guard") for d in h.decided("waiting"))
    upd = Harness(engine())
    run(upd, 40.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5), update_in_progress=t < 30))
    assert upd.acted()[0][0] >= 30.0
    boot = Harness(engine(guard=GuardConfig(after_boot_s=600.0, after_start_s=0.0)))
    run(boot, 30.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=False), boot_s=0.0))
    assert not boot.acted()


def test_a_refused_lease_delays_the_disruptive_rung():
    refuse = {"n": 2}

    def lease(req, now):
        if refuse["n"]:
            refuse["n"] -= 1
            return LeaseAnswer(req.lease_id, False, "a neighbour holds disrupt/xyz")
        return LeaseAnswer(req.lease_id, True)

    h = Harness(engine(), lease=lease)
    run(h, 200.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5)))
    lease_reqs = [t for t, x in h.leases if isinstance(x, LeaseRequest)]
    assert len(lease_reqs) == 3 and lease_reqs[1] - lease_reqs[0] >= safety_lease_retry()
    assert [d for d in h.decided("waiting") if "lease refused" in d.reason]
    assert ActionKind.RESTART_DAEMON in [a for _, a, _ in h.acted()]


def safety_lease_retry() -> float:
    from x0node.healing.engine import LEASE_RETRY_S

    return LEASE_RETRY_S


# --- observe mode ------------------------------------------------------------------------------------

def test_observe_mode_records_what_it_would_do_and_never_acts():
    h = Harness(engine(mode=Mode.OBSERVE))
    run(h, 120.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5)))
    assert h.requests == [] and h.leases == []
    obs = h.decided("observe_only")
    assert len(obs) == 1 and obs[0].action == "restart_subsystem" and "observe mode" in obs[0].reason
    assert list(h.engine.mode_switch.outcomes) == [True]  # the symptom outlasted the restart's deadline
    # a transient one that clears by itself counts as "would not have been needed"
    h2 = Harness(engine(mode=Mode.OBSERVE))
    run(h2, 60.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=not 5 <= t < 12)))
    assert list(h2.engine.mode_switch.outcomes) == [False] and h2.of(IncidentClosed)[0].outcome == "cleared"


def test_observe_mode_promotes_itself_once_its_decisions_proved_right_then_acts():
    mc = ModeConfig(auto_activate=True, min_decisions=3, min_observe_s=0.0, min_precision=0.9)
    h = Harness(engine(mode=Mode.OBSERVE, mode_config=mc))
    for k in range(3):  # three faults that needed action
        run(h, 100.0 * k + 80.0, lambda t, k=k: Snapshot(t, diamond(),
                                                         services=services(telemetry=not 100 * k + 5 <= t < 100 * k + 50)),
            start=100.0 * k)
    changed = h.of(ModeChanged)
    assert changed and changed[-1].new == "active" and "precision" in changed[-1].reason
    # nothing before the switch; the incident still open when it came is acted on at once
    assert h.requests and all(t >= changed[-1].at_s for t, _ in h.requests)
    assert h.requests[0][1].action is ActionKind.RESTART_SUBSYSTEM


def test_the_operator_switch_pins_the_mode():
    h = Harness(engine(mode=Mode.OBSERVE))
    h.engine.set_mode(Mode.ACTIVE, 0.0, "operator: web UI")
    assert h.engine.mode is Mode.ACTIVE
    h.pump(0.0)
    assert h.of(ModeChanged)[0].reason == "operator: web UI"
    h.engine.set_mode(None, 1.0)
    assert h.engine.mode is Mode.OBSERVE


# --- the loop on the synthetic mesh -------------------------------------------------------------------

def test_steering_around_a_partial_black_hole_on_the_synthetic_mesh():
    """A neighbour drops 40 % of what it forwards from 10 s to 60 s: the engine steers our routes around
    it, verifies that they moved, holds the mitigation while the probes through it still fail, and lifts
    it once the node forwards again."""
    w = World.random(12, 11)
    adj = w.adjacency()
    s = next(x for x in w.ids() if len(adj[x]) >= 3 and any(len(adj[n] - {x}) >= 2 for n in adj[x]))
    bad = next(n for n in sorted(adj[s]) if len(adj[n] - {s}) >= 2)
    w.faults.append(Fault("node_blackhole", node_element(bad), 10.0, 60.0, amount=0.4))
    eng = HealingEngine(s, EngineConfig(mode=Mode.ACTIVE, guard=NO_GUARD, mitigation_hold_s=20.0), random.Random(3), 0.0)
    h = Harness(eng, perform=lambda req, now: (w.apply(s, req), ""))
    for _, snap in observer_run(w, s, 140.0, 5):
        h.step(snap)
    # steering where the routing core can move every route off the node, else draining our link to it
    moved = {ActionKind.STEER_AROUND_NODE: str(node_element(bad)), ActionKind.DRAIN_LINK: str(link_element(s, bad))}
    steer = [(t, a, tg) for t, a, tg in h.acted() if a in moved]
    assert steer and steer[0][2] == moved[steer[0][1]]
    assert 10.0 < steer[0][0] <= 16.0  # a few seconds of probes, then the first cycle that can act
    assert [v.success for v in h.of(Verified)][:1] == [True]
    assert not {r.action for _, r in h.requests} & {ActionKind.RESET_INTERFACE, ActionKind.REBOOT,
                                                    ActionKind.RESTART_DAEMON}
    lifted = [t for t, a, _ in h.acted(undo=True) if a is steer[0][1]]
    # the probes' window (15 s) forgets the fault's losses, then the evidence stays clean for the lift hold
    assert lifted and 60.0 + 3.0 <= lifted[0] <= 60.0 + 20.0
    closed = h.of(IncidentClosed)
    assert closed and closed[0].outcome == "recovered" and closed[0].root_cause == "node_blackhole"
    assert not w.penalties  # nothing of ours left behind


def _ring_of_four_steer_run(fault: str) -> tuple[Harness, World]:
    """A ring of four, 0 - 1 - 2 - 3 - 0, with `fault` on node 1 from 10 s, seen from node 0. Node 2 is
    two hops either way and 3 is closer to it than we are (a downstream alternate, RFC 5286), so 0 can
    steer around 1. From 30 s the link 3 - 2 measures three times costlier (its RTT rose): 3 is no
    longer closer to 2 than we are and the routing core would put 2 back through 1."""
    w = World(4, 0, edges={link_element(nid(a), nid(b)).id: 2.0 for a, b in ((0, 1), (1, 2), (2, 3), (3, 0))})
    s = nid(0)
    w.faults.append(Fault(fault, node_element(nid(1)), 10.0, amount=0.4))
    slow = link_element(nid(2), nid(3)).id
    eng = HealingEngine(s, EngineConfig(mode=Mode.ACTIVE, guard=NO_GUARD), random.Random(3), 0.0)
    h = Harness(eng, perform=lambda req, now: (w.apply(s, req), ""))

    def costlier(r: RoutingObs, t: float) -> RoutingObs:
        if t < 30.0:
            return r
        edges = tuple(EdgeObs(e.a, e.b, e.cost * 3, None if e.cost_back is None else e.cost_back * 3)
                      if link_element(e.a, e.b).id == slow else e for e in r.edges)
        return RoutingObs(r.self_id, r.neighbours, r.routes, r.nodes, edges, r.interfaces)

    for t, snap in observer_run(w, s, 60.0, 5):
        h.step(Snapshot(t, costlier(snap.routing, t), metrics=snap.metrics, probes=snap.probes,
                        services=snap.services, boot_s=None))
    return h, w


def test_a_steer_that_falls_short_once_link_costs_move_gives_way_to_the_drain():
    """Node 1 drops 40 % of what it forwards: 0 steers around it; once the steer falls short while the
    fault lasts, the engine lifts it and drains our link to 1, which moves everything."""
    h, w = _ring_of_four_steer_run("node_blackhole")
    acts = [(t, a) for t, a, _ in h.acted()]
    assert [a for _, a in acts] == [ActionKind.STEER_AROUND_NODE, ActionKind.DRAIN_LINK], acts
    assert acts[0][0] < 30.0 <= acts[1][0] <= 32.0  # the first cycle that sees the shortfall climbs
    (t_undo, undone, _), = h.acted(undo=True)
    assert undone is ActionKind.STEER_AROUND_NODE and t_undo == acts[1][0]
    lifted = [d for d in h.decided("undo") if d.action == "steer_around_node"]
    assert lifted and "not enough" in lifted[0].reason and "drain_link" in lifted[0].reason
    assert h.engine.status()["mitigations"] and w.penalties  # the drain holds while the fault lasts


def test_a_steer_that_falls_short_stays_where_no_stronger_work_around_exists():
    """An overloaded neighbour's ladder has no drain (its other rungs are the node's own): the steer
    that falls short stays rather than leave nothing in its place."""
    h, w = _ring_of_four_steer_run("node_overload")
    assert [a for _, a, _ in h.acted()] == [ActionKind.STEER_AROUND_NODE]
    last = PlanContext(h.engine._snapshot, h.engine.last)
    assert "downstream" in PLUGINS[ActionKind.STEER_AROUND_NODE].shortfall(node_element(nid(1)), last)
    assert h.acted(undo=True) == [] and w.penalties


def test_no_action_on_a_healthy_mesh():
    w = World.random(12, 12)
    s = w.ids()[0]
    eng = HealingEngine(s, EngineConfig(mode=Mode.ACTIVE, guard=NO_GUARD), random.Random(4), 0.0)
    h = Harness(eng)
    for t, snap in observer_run(w, s, 300.0, 6):
        metrics = snap.metrics + (NodeMetricsObs(s, 0.3, 0.4, 1.0, 0.0, t),)
        h.step(Snapshot(t, snap.routing, metrics=metrics, probes=snap.probes, boot_s=None))
    assert h.requests == [] and h.of(IncidentOpened) == []


def test_incident_and_request_ids_continue_from_the_store():
    h = Harness(engine(first_incident_id=41, first_request_id=900))
    run(h, 20.0, lambda t: Snapshot(t, diamond(), services=services(telemetry=t < 5)))
    assert h.of(IncidentOpened)[0].incident_id == 41 and h.requests[0][1].request_id >= 900
    assert isinstance(h.of(ActionDone)[0], ActionDone)
    assert RoutingObs  # the view type the harness builds on


def test_a_first_guess_on_thin_evidence_is_replaced_and_incidents_with_one_cause_merge():
    """Answers from c come back through a (equal costs: the smaller first hop). At first only the
    probes through b lose (their answers cross a); then a's own paths lose more. The incident opened
    on b is re-diagnosed to a and the incident a's symptom opened is merged into it."""
    from x0node.healing.observation import ProbeObs

    def probes(t):
        if t < 5:
            return ()
        if t < 9:
            return (ProbeObs(A, C, 16, 0, 5.0), ProbeObs(B, C, 16, 7, 5.0))
        return (ProbeObs(A, C, 16, 12, 5.0), ProbeObs(B, C, 16, 7, 5.0))

    h = Harness(engine(mode=Mode.OBSERVE))
    run(h, 30.0, lambda t: Snapshot(t, diamond(), probes=probes(t)))
    diagnosed = h.of(Diagnosed)
    assert diagnosed[0].candidates[0][:2] == (str(node_element(B)), "node_blackhole")
    assert diagnosed[-1].candidates[0][:2] == (str(node_element(A)), "node_blackhole")
    assert len(h.of(IncidentOpened)) == 2 and [(c.incident_id, c.outcome) for c in h.of(IncidentClosed)] == [
        (2, "merged")]
    observed = [(d.action, d.target) for d in h.decided("observe_only")]
    assert observed[-1] == ("steer_around_node", str(node_element(A)))
    status = h.engine.status()
    assert len(status["open"]) == 1 and status["open"][0]["cause"].startswith(f"node_blackhole@node:{A}")


def test_a_new_link_weight_supersedes_a_held_one_that_would_cancel_it():
    """A corner-like node with two links: its penalty on me~a is still in force (a's symptom lasts) when
    me~b turns bad. Weighting me~b as well would make both links cost alike and move no route, so the
    older weight is lifted first; the new one then moves the route and is verified."""
    from dataclasses import replace

    from tests.unit.healing_views import nbr

    weighted: dict[str, bool] = {A: False, B: False}

    def perform(req, now):
        if req.action in (ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK):
            far = req.param("neighbour", "")
            weighted[str(far)] = not req.undo
        return True, ""

    def snap(t):
        via = B if weighted[A] and not weighted[B] else A
        r = diamond(via_c=via, loss_a=0.3 if t >= 5 else 0.0)
        loss_b = 0.3 if t >= 40 else 0.0
        return Snapshot(t, replace(r, neighbours=(r.neighbours[0], nbr(B, loss_b))))

    h = Harness(engine(), perform)
    run(h, 80.0, snap)
    acts = h.acted()
    assert acts[0][1] is ActionKind.PENALISE_LINK and acts[0][2] == str(link_element(ME, A))
    on_b = [(t, a) for t, a, tg in acts if tg == str(link_element(ME, B))]
    assert on_b, acts
    t_b = on_b[0][0]
    lifted_a = [t for t, a, tg in h.acted(undo=True) if tg == str(link_element(ME, A))]
    assert lifted_a and lifted_a[0] == t_b  # lifted in the same cycle, before the new weight
    ok = [v for v in h.of(Verified) if v.target == str(link_element(ME, B))]
    assert ok and ok[0].success, ok
    assert weighted == {A: False, B: True}
    assert any("superseded" in d.reason for d in h.decided("undo"))


def test_a_drained_flapping_link_is_re_diagnosed_lossy_once_its_sustained_loss_shows():
    """A 20 % lossy link times its neighbour out now and then: the flaps raise the first symptom and the
    link is drained as `link_flapping`; once the hello loss behind the flaps shows, the incident's
    diagnosis is refined to `link_lossy` (same element: the drain stays, nothing else is requested)."""
    h, link = _flapping_link_run(timeouts=None, loss_from=12.0, until=30.0)
    diagnosed = [d for d in h.of(Diagnosed) if d.incident_id == 1]
    assert diagnosed[0].candidates[0][:2] == (link, "link_flapping")
    assert diagnosed[-1].candidates[0][:2] == (link, "link_lossy")
    assert [(a, tg) for _, a, tg in h.acted()] == [(ActionKind.DRAIN_LINK, link)]
    assert h.engine.status()["open"][0]["cause"].startswith(f"link_lossy@{link}")


def test_a_drained_flapping_link_is_lifted_once_it_has_been_quiet_not_two_minutes_later():
    """A link flaps from 5 s to 40 s: drained at its first flaps, held while it flaps, lifted once it
    has stayed up without a transition for FLAP_QUIET_S and the lift hold — not when its two-minute
    flap count falls."""
    drained = {"on": False}

    def perform(req, now):
        if req.action is ActionKind.DRAIN_LINK:
            drained["on"] = not req.undo
        return True, ""

    def snap(t):  # the last transition at 39 s; one more at 90 s
        flaps = 0 if t < 5 else 1 + int((min(t, 40.0) - 5) / 2.0) + (t >= 90.0)
        return Snapshot(t, diamond(via_c=B if drained["on"] else A, transitions_a=flaps))

    h = Harness(engine(), perform)
    run(h, 89.0, snap)
    link = str(link_element(ME, A))
    assert [(a, tg) for _, a, tg in h.acted()] == [(ActionKind.DRAIN_LINK, link)]
    (t_undo, _, _), = h.acted(undo=True)
    assert 39.0 + 10.0 + 3.0 <= t_undo < 39.0 + 20.0
    assert len(h.of(IncidentOpened)) == 1  # the flap count stays lit for two minutes: no new incident
    run(h, 100.0, snap, start=89.0 + 1.0)
    assert len(h.of(IncidentOpened)) == 2 and [t for t, _, _ in h.acted()][1] >= 90.0  # a new flap: again


def test_a_hung_neighbour_stays_node_down_while_it_comes_back():
    """A hung neighbour: our link to it goes down and, once its other neighbours drop it too, it is
    unreachable — `node_down`. When it is restarted it is reachable again a moment before our own link
    to it is back up: the evidence of the node is going, not changing, and the diagnosis stays
    `node_down` (before, the link's down alone was ranked again and the incident ended as `link_down`)."""
    def snap(t):
        hung = 5.0 <= t < 15.0
        back_half = 15.0 <= t < 18.0  # reachable through the others, our link not yet up
        return Snapshot(t, diamond(up_a=not (hung or back_half), a_reachable=not hung))

    h = Harness(engine())
    run(h, 40.0, snap)
    node_a = str(node_element(A))
    opened = h.of(IncidentOpened)
    assert opened, h.events
    first = opened[0].incident_id
    diagnosed = [d for d in h.of(Diagnosed) if d.incident_id == first]
    assert diagnosed[0].candidates[0][:2] == (node_a, "node_down")
    assert diagnosed[-1].candidates[0][:2] == (node_a, "node_down"), diagnosed[-1]
    assert not h.acted()


def _flapping_link_run(timeouts: bool | None, loss_from: float = 1e9, until: float = 20.0) -> tuple[Harness, str]:
    """Our link to a goes down and up every 1.5 s from 5 s on, run to `until`; `timeouts`: each down is a
    hello timeout with the carrier up (a lossy link), else the carrier goes (a flapping one), None: the
    view does not say why (a routing core without the count); 20 % hello
    loss shows from `loss_from`. The harness drains the link when asked."""
    drained = {"on": False}

    def perform(req, now):
        if req.action is ActionKind.DRAIN_LINK:
            drained["on"] = not req.undo
        return True, ""

    def snap(t):
        flaps = 0 if t < 5 else 1 + int((t - 5) / 1.5)
        return Snapshot(t, diamond(via_c=B if drained["on"] else A, transitions_a=flaps,
                                   timeouts_a=None if timeouts is None else (flaps + 1) // 2 if timeouts else 0,
                                   loss_a=0.2 if t >= loss_from else 0.0))

    h = Harness(engine(), perform)
    run(h, until, snap)
    return h, str(link_element(ME, A))


def test_a_lossy_links_timeouts_name_it_lossy_at_its_first_flaps_and_a_carrier_flap_stays_flapping():
    """The first flaps come before any loss estimate. A lossy link's downs are hello timeouts with the
    carrier up: it is named `link_lossy` from the first diagnosis (before, `link_flapping` until the
    loss showed, which on the bench was often after the traffic had recovered). A link whose carrier
    goes is `link_flapping` throughout. Either is drained at once: a lossy link whose neighbour times
    out is past penalising (a x4 penalty left its traffic on it on the bench), so its ladder skips the
    penalty."""
    lossy, link = _flapping_link_run(timeouts=True)
    diagnosed = [d.candidates[0][:2] for d in lossy.of(Diagnosed)]
    assert diagnosed and all(d == (link, "link_lossy") for d in diagnosed), diagnosed
    assert [(a, tg) for _, a, tg in lossy.acted()][:1] == [(ActionKind.DRAIN_LINK, link)], lossy.acted()
    assert any(d.action == "penalise_link" and "past penalising" in d.reason for d in lossy.decided("skipped"))
    flapping, _ = _flapping_link_run(timeouts=False)
    diagnosed = [d.candidates[0][:2] for d in flapping.of(Diagnosed)]
    assert diagnosed and all(d == (link, "link_flapping") for d in diagnosed), diagnosed
    assert [(a, tg) for _, a, tg in flapping.acted()] == [(ActionKind.DRAIN_LINK, link)]


def test_a_flapping_link_is_diagnosed_at_its_second_down_while_the_neighbour_is_gone():
    """The routing core forgets a neighbour at once when its link goes down, so a flapping link is
    missing from the view for each down phase (2 s down, 2 s up from 5 s on). Its second down is its
    third transition: the incident opens then, not two seconds later when the neighbour is back (on the
    bench the traffic had recovered by then and the flap was never diagnosed within its injection)."""
    from dataclasses import replace

    def snap(t):
        phase = t - 5.0
        down = phase >= 0 and int(phase // 2) % 2 == 0
        transitions = 0 if phase < 0 else int(phase // 2) + 1
        r = diamond(transitions_a=transitions, timeouts_a=0)
        if down:  # forgotten: only b is listed
            r = replace(r, neighbours=r.neighbours[1:])
        return Snapshot(t, r)

    h = Harness(engine())
    run(h, 14.0, snap)
    link = str(link_element(ME, A))
    opened = h.of(IncidentOpened)
    assert opened and opened[0].at_s <= 9.0 + CYCLE_S, opened
    assert [d.candidates[0][:2] for d in h.of(Diagnosed)][0] == (link, "link_flapping")


def test_a_lossy_links_neighbour_down_for_a_moment_makes_the_weight_wait_not_the_interface_reset():
    """A 20 % lossy link times its neighbour out; at the cycle the incident opens the neighbour is down
    (the core forgot it). Penalising or draining the link needs the neighbour up: the plan waits for it
    instead of going on to reset the interface (a disruptive action that on the bench took the link
    down for a second and left the other direction unweighted: that traffic never recovered)."""
    weighted = {"on": False}

    def perform(req, now):
        if req.action in (ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK):
            weighted["on"] = not req.undo
        return True, ""

    def snap(t):
        if t < 5.0:
            return Snapshot(t, diamond(transitions_a=0, timeouts_a=0))
        k = int((t - 5.0) // 1.0)  # one transition a second: down at 5, up at 6, down at 7, ...
        return Snapshot(t, diamond(via_c=B if weighted["on"] else A, transitions_a=k + 1, timeouts_a=(k + 2) // 2,
                                   up_a=k % 2 == 1, loss_a=0.2 if t >= 12 else 0.0))

    h = Harness(engine(), perform)
    run(h, 20.0, snap)
    link = str(link_element(ME, A))
    acts = [(a, tg) for _, a, tg in h.acted()]
    assert acts and acts[0] in ((ActionKind.PENALISE_LINK, link), (ActionKind.DRAIN_LINK, link)), acts
    assert all(a is not ActionKind.RESET_INTERFACE for a, _ in acts), acts
    assert any("up a moment ago" in d.reason for d in h.decided("waiting"))


def test_two_causes_in_one_incident_are_split_not_taken_in_turns():
    """Our link to a is lossy and b drops what it forwards; one incident holds both symptoms (as when a
    first guess on thin evidence took both). Ranked again, the two causes each get an incident — before,
    both groups of the new cover went to the one incident, its cause changed twice a cycle, and only the
    one written last was ever acted on (bench: a black hole at n8 steered around 13.5 s late)."""
    from x0node.healing.engine import Outcome
    from x0node.healing.observation import ProbeObs

    def snap(t):
        probes = (ProbeObs(B, B, 16, 0, 1.0), ProbeObs(B, ME, 16, 9 if t >= 5 else 0, 2.0),
                  ProbeObs(A, A, 16, 0, 1.0), ProbeObs(A, ME, 16, 0, 2.0))
        return Snapshot(t, diamond(loss_a=0.3 if t >= 5 else 0.0), probes=probes)

    h = Harness(engine(mode=Mode.OBSERVE))
    run(h, 8.0, snap)
    e = h.engine
    incs = sorted(e.open_incidents(), key=lambda i: i.id)
    assert len(incs) == 2, [(i.id, i.symptoms) for i in incs]
    first, second = incs  # the first guess took both: move the second's symptom into the first
    first.symptoms |= second.symptoms
    e._close(second, Outcome.MERGED, 8.0)
    n = len(h.of(Diagnosed))
    run(h, 14.0, snap, start=9.0)
    later = h.of(Diagnosed)[n:]
    assert len(later) <= 2, later  # the split once, then no turns taken
    open_causes = {(str(i.candidate.element), i.candidate.fault.value) for i in e.open_incidents()}
    assert (str(node_element(B)), "node_blackhole") in open_causes, open_causes
    assert (str(link_element(ME, A)), "link_lossy") in open_causes, open_causes


def test_an_incident_out_of_candidates_plans_again_when_a_lesser_one_becomes_confident(monkeypatch):
    """The first candidate is a link beyond our neighbour (no lever of ours); the black hole at the
    neighbour comes second at 0.25, below min_confidence, and the incident runs out of candidates. As
    its evidence grows it reaches 0.35 while the link stays first: the incident plans again and acts on
    it then (bench: it waited until the black hole overtook the link by the re-diagnosis margin, 5.8 s
    later, and that injection's MTTR was 8.6 s)."""
    from x0node.healing import engine as eng
    from x0node.healing.analyze import Candidate, Diagnosis, FaultKind

    def cand(element, fault, conf):
        return Candidate(element, fault, conf, conf, 1.0, 1.0, 1.0, 1, (), ())

    def scripted(indicators, symptoms, routing, now, top_k, adjacency=None):
        bh = 0.25 if now < 6.0 else 0.35
        diag = Diagnosis(now, (cand(link_element(A, C), FaultKind.LINK_LOSSY, 0.45),
                               cand(node_element(A), FaultKind.NODE_BLACKHOLE, bh)), ())
        return [(diag, tuple(symptoms))]

    monkeypatch.setattr(eng, "cover", scripted)
    h = Harness(engine())
    run(h, 10.0, lambda t: Snapshot(t, diamond(loss_a=0.3 if t >= 1.0 else 0.0)))
    assert h.decided("exhausted"), h.events
    acts = h.acted()
    assert acts and acts[0][0] >= 6.0 and acts[0][2] in (str(node_element(A)), str(link_element(ME, A))), acts
    assert acts[0][0] <= 6.0 + 2 * CYCLE_S, acts
    assert len(h.of(IncidentOpened)) == 1
