"""The MAPE-K engine: monitor -> analyze -> verify -> plan -> execute -> knowledge, once per `step`.

Rules and invariants:
- Sans-I/O. Inputs: `step(snapshot)` (its `now`; an optional `clock` only measures phase durations),
  `action_result`, `lease_answer`, `set_mode`, `feedback`. Outputs are pulled: `next_request()`
  (ActionRequest, LeaseRequest, LeaseRelease for the adapters) and `next_event()` (the records, for
  the bus); the knowledge base queues the same records for the store.
- Symptoms that no open incident holds are explained by analyze.cover; each group becomes an
  incident, or joins the open incident with the same root cause (element and fault kind). Until an
  incident acts, its cause is ranked again each cycle (evidence thickens); a clearly better cause
  replaces the first guess and is recorded as a new diagnosis.
- Verification runs before planning, so a failed rung escalates in the same cycle.
- Every decision is recorded once with its reason (a WAIT that repeats for the same gate is not
  recorded again). Observe mode records what active mode would have done and judges afterwards
  whether it was needed (the symptom outlasted the action's verify deadline) — that feeds the
  automatic switch to active mode.
- A verified mitigation stays in force while the fault lasts. It is lifted once the evidence behind
  the incident's symptoms is clean again: every symptom's degree, measured now, at or below its
  rule's exit level (the probes are pinned through the node or link, and hellos still cross a drained
  link, so a mitigation does not hide its own evidence) for the lift hold (`lift_hold_s`), or the
  monitor has cleared them all. Faults whose evidence leaves with the traffic the mitigation moved
  (LOAD_DEPENDENT: a congested link is quiet once drained) keep the longer `mitigation_hold_s`
  instead. While the evidence is not clean a mitigation that no longer covers the fault (its plugin's
  `shortfall`: a steer some destination through the node cannot leave any more, once measured link
  costs moved) is lifted and the ladder climbs in the same cycle, provided a later rung works around
  the fault without disruption and may run now (the drain moves everything); otherwise it stays. Each
  hold doubles when the same mitigation is lifted and needed again within
  BACKOFF_RESET_AFTER_S (damping, as BGP route-flap damping does), up to MITIGATION_HOLD_MAX_S. A lift
  settles the incident's symptoms in the monitor (`Monitor.settle`), so a symptom the monitor still
  holds (its clear timer is longer than the lift hold) opens no new incident; a fault that comes back
  must raise it again.
- Our link penalties and drains never cancel each other: weighting link self~X while every other up
  neighbour's link is already weighted by another incident's mitigation would move no route (all our
  links would cost alike), so one of those is lifted first (superseded: the newer incident has the
  fresher evidence; one whose symptoms cleared, else the oldest) and its incident waits as exhausted
  (EXHAUSTED_RETRY_S). A corner node whose
  only other link stayed drained after a fault there ended otherwise could never route around a new
  fault on its first link.
- Bounded: at most MAX_OPEN_INCIDENTS open (further symptoms wait), CLOSED_KEPT closed ones for
  status, MAX_EVENTS queued events (oldest dropped, counted).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from x0node.healing import verify
from x0node.healing.actions import (
    PLUGINS,
    ActionKind,
    ActionResult,
    PlanContext,
    far_end,
    up_neighbours,
)
from x0node.healing.analyze import TOP_K, Diagnosis, FaultKind, cover, rank
from x0node.healing.execute import Executor, Outgoing
from x0node.healing.incident import (
    ActionDone,
    Decided,
    Diagnosed,
    Incident,
    IncidentClosed,
    IncidentOpened,
    Outcome,
    State,
    Verified,
)
from x0node.healing.knowledge import Knowledge, PastAction
from x0node.healing.monitor import (
    FLAP_QUIET_S,
    RULES,
    Element,
    ElementKind,
    Monitor,
    MonitorOutput,
    Symptom,
    SymptomKind,
    node_element,
)
from x0node.healing.observation import Snapshot
from x0node.healing.plan import Gates, Plan, PlanKind, plan
from x0node.healing.policy import resolve_target
from x0node.healing.safety import (
    ACTIONS_BURST,
    ACTIONS_PER_MIN,
    BACKOFF_RESET_AFTER_S,
    LEASE_MARGIN_S,
    Backoff,
    DisruptionBudget,
    GuardConfig,
    LeaseAnswer,
    Mode,
    ModeChanged,
    ModeConfig,
    ModeSwitch,
    TokenBucket,
    disrupt_resource,
)

if TYPE_CHECKING:
    import random

MITIGATION_HOLD_MAX_S = 1800.0
LOAD_DEPENDENT = frozenset({FaultKind.LINK_CONGESTED})  # evidence that goes away with the moved traffic
LEASE_WAIT_S = 10.0  # a lease answer slower than this is a refusal
LEASE_RETRY_S = 15.0
RESULT_WAIT_S = 30.0  # an adapter that does not answer in this time failed
LINK_WEIGHTS = frozenset({ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK})
EXHAUSTED_RETRY_S = 300.0  # an exhausted incident walks its ladder again after this (gates still apply)
MAX_OPEN_INCIDENTS = 64
CLOSED_KEPT = 50
MAX_EVENTS = 1024
REDIAGNOSE_MARGIN = 1.2  # a new top cause must score this much better than the old one to replace it
PHASES = ("monitor", "analyze", "verify", "plan", "execute", "knowledge")


@dataclass(frozen=True)
class EngineConfig:
    mode: Mode = Mode.OBSERVE  # starting mode; ACTIVE here is the operator's choice and is pinned
    mode_config: ModeConfig = ModeConfig()
    guard: GuardConfig = GuardConfig()
    disruptive_per_hour: int = 3
    min_confidence: float = 0.3
    mitigation_hold_s: float = 30.0  # load-dependent evidence (LOAD_DEPENDENT)
    lift_hold_s: float = 3.0  # evidence clean this long lifts a mitigation
    top_k: int = TOP_K


@dataclass(frozen=True)
class CycleReport:
    now: float
    phases: tuple[tuple[str, float], ...]  # (phase, seconds) when a clock was given
    symptoms: int
    open_incidents: int
    requests: int
    mode: str


class HealingEngine:
    def __init__(
        self,
        self_id: str,
        config: EngineConfig,
        rng: random.Random,
        now: float,
        knowledge: Knowledge | None = None,
        history: Iterable[PastAction] = (),
        first_incident_id: int = 1,
        first_request_id: int = 1,
    ) -> None:
        self.self_id = self_id
        self.config = config
        self._rng = rng
        self.monitor = Monitor(self_id)
        self.knowledge = knowledge if knowledge is not None else Knowledge()
        self.executor = Executor(first_request_id)
        self.gates = Gates(config.guard, Backoff(rng), TokenBucket(ACTIONS_PER_MIN / 60.0, ACTIONS_BURST, now),
                           DisruptionBudget(config.disruptive_per_hour), start_s=now)
        self.mode_switch = ModeSwitch(config.mode_config, now, pinned=Mode.ACTIVE if config.mode is Mode.ACTIVE else None)
        for past in sorted(history, key=lambda p: -p.ago_s):
            t = now - max(0.0, past.ago_s)
            key = (past.target, past.action)
            self.gates.backoff.attempted(key, t)
            if not past.ok:
                self.gates.backoff.failed(key, t)
            if past.disruptive:
                self.gates.budget.spend(t)
        self._next_incident = max(1, first_incident_id)
        self._open: dict[int, Incident] = {}
        self._closed: collections.deque[IncidentClosed] = collections.deque(maxlen=CLOSED_KEPT)
        self._events: collections.deque[Any] = collections.deque()
        self._lifted: dict[tuple[ActionKind, Element], tuple[int, float]] = {}
        self.last: MonitorOutput | None = None
        self._snapshot: Snapshot | None = None
        self.dropped_events = 0
        self.cycles = 0

    # ---- inputs ---------------------------------------------------------------------------------
    def step(self, snap: Snapshot, clock: Callable[[], float] | None = None) -> CycleReport:
        now = snap.now
        phases: list[tuple[str, float]] = []
        t = clock() if clock is not None else 0.0

        def mark(name: str) -> None:
            nonlocal t
            if clock is not None:
                t2 = clock()
                phases.append((name, t2 - t))
                t = t2

        self.cycles += 1
        self._snapshot = snap
        out = self.monitor.observe(snap)
        self.last = out
        mark("monitor")
        self._analyze(out, snap, now)
        self._rediagnose(out, snap, now)
        self._refine_kind(out, snap, now)
        mark("analyze")
        active = {s.key for s in out.active}
        for inc in list(self._open.values()):
            self._track(inc, snap, out, active, now)
        mark("verify")
        plans: list[tuple[Incident, Plan]] = []
        mode = self.mode_switch.mode
        for inc in list(self._open.values()):
            if inc.state is State.EXHAUSTED and inc.exhausted_s is not None \
                    and now - inc.exhausted_s >= EXHAUSTED_RETRY_S:
                inc.state, inc.cand_index, inc.rung_index, inc.ladder = State.OPEN, 0, 0, None
                inc.recorded.clear()
            if inc.state is State.OBSERVED and mode is Mode.ACTIVE:
                inc.state = State.OPEN
            if inc.state is not State.OPEN or now < inc.not_before_s:
                continue
            plans.append((inc, plan(inc, self._ctx(inc, snap, out), self.gates, mode, self.knowledge.stats,
                                    self.executor.in_force, self.config.min_confidence)))
        mark("plan")
        requests = 0
        for inc, p in plans:
            requests += self._execute(inc, p, now)
        mark("execute")
        self._emit_mode(self.mode_switch._advance(now))
        mark("knowledge")
        return CycleReport(now, tuple(phases), len(out.active), len(self._open), requests, self.mode_switch.mode.value)

    def action_result(self, res: ActionResult, now: float) -> None:
        item = self.executor.result(res)
        if item is None:
            return
        req = item.request
        self._emit(ActionDone(item.incident_id, req.request_id, req.action.value, str(req.target), req.undo, res.ok,
                              res.detail[:300], now))
        inc = self._open.get(item.incident_id)
        if req.undo or inc is None or inc.pending is None or inc.pending.request_id != req.request_id:
            return
        if res.ok:
            inc.state = State.VERIFYING
            inc.deadline_s = now + PLUGINS[req.action].verify_s
        else:
            self._fail(inc, f"the adapter refused: {res.detail or 'no reason given'}", now, undo=False)

    def lease_answer(self, ans: LeaseAnswer, now: float) -> None:
        inc_id = self.executor.lease_answer(ans)
        inc = self._open.get(inc_id) if inc_id is not None else None
        if inc is None or inc.state is not State.WAITING_LEASE or not isinstance(inc.planned, Plan):
            if ans.granted:
                self.executor.release(ans.lease_id)
            return
        p = inc.planned
        inc.planned = None
        if not ans.granted:
            inc.state, inc.lease_id = State.OPEN, None
            inc.not_before_s = now + LEASE_RETRY_S * (1.0 + self._rng.uniform(0.0, 0.5))
            self._decide(inc, p, "waiting", f"lease refused: {ans.detail}", now, gate="lease_refused")
            return
        inc.lease_id = ans.lease_id
        self._issue(inc, p, now)

    def set_mode(self, mode: Mode | None, now: float, reason: str = "operator") -> None:
        """Pin a mode (the operator's switch) or unpin (None: automatic)."""
        self._emit_mode(self.mode_switch.pin(mode, now, reason))

    def feedback(self, incident_id: int, right: bool, note: str, now: float) -> None:
        fb = self.knowledge.feedback(incident_id, right, note, now)
        self._push_event(fb)

    # ---- outputs --------------------------------------------------------------------------------
    def next_request(self) -> Outgoing | None:
        return self.executor.next()

    def next_event(self) -> Any | None:
        return self._events.popleft() if self._events else None

    @property
    def mode(self) -> Mode:
        return self.mode_switch.mode

    def open_incidents(self) -> list[Incident]:
        return list(self._open.values())

    def status(self) -> dict[str, Any]:
        now = self._snapshot.now if self._snapshot is not None else 0.0
        ms = self.mode_switch
        precision = ms.precision()
        return {
            "mode": ms.mode.value,
            "pinned": ms.pinned.value if ms.pinned is not None else None,
            "observe_precision": None if precision is None else round(precision, 3),
            "observe_outcomes": len(ms.outcomes),
            "cycles": self.cycles,
            "symptoms": [str(s) for s in (self.last.active if self.last else ())],
            "open": [
                {"id": i.id, "state": i.state.value, "symptoms": sorted(f"{k.value}@{e}" for k, e in i.symptoms),
                 "cause": str(i.candidate) if i.candidate else None,
                 "in_force": i.in_force.action.value if i.in_force else None}
                for i in self._open.values()
            ],
            "closed": [c.__dict__ for c in list(self._closed)[-10:]],
            "disruptive_last_hour": self.gates.budget.used(now),
            "mitigations": [f"{r.action.value} {r.target}" for r in self.executor.mitigations()],
            "dropped_events": self.dropped_events,
        }

    # ---- analyze --------------------------------------------------------------------------------
    def _analyze(self, out: MonitorOutput, snap: Snapshot, now: float) -> None:
        held = set().union(*(i.symptoms for i in self._open.values())) if self._open else set()
        new = [s for s in out.active if s.key not in held]
        if not new:
            return
        for diag, group in cover(out.indicators, new, snap.routing, now, self.config.top_k, adjacency=out.adjacency):
            top = diag.top
            same = next((i for i in self._open.values() if top is not None and i.candidate is not None
                         and (i.candidate.element, i.candidate.fault) == (top.element, top.fault)), None)
            if same is not None:
                same.symptoms.update(s.key for s in group)
                same.clear_since_s = None
                continue
            if len(self._open) >= MAX_OPEN_INCIDENTS:
                return
            self._open_incident(diag, group, now)

    def _rediagnose(self, out: MonitorOutput, snap: Snapshot, now: float) -> None:
        """Explain again the symptoms of every incident that has not acted yet, together: the first
        diagnosis is made on the first symptom to rise and on thin evidence, and a cause found later may
        explain symptoms that opened separate incidents. Each group of the new cover goes to the incident
        holding most of its symptoms and not given another group's cause in the same pass (else the group
        opens its own incident: two causes in one incident took turns, each cycle, and the one left last
        was acted on); its cause changes only when the new one scores REDIAGNOSE_MARGIN
        times the old one's (no flip-flopping), and never while a symptom the old cause explained has
        cleared: what is left of a fault that is ending is no better evidence (a hung node restarted is
        reachable again a moment before our link to it is back: its link's down alone read `link_down`).
        An incident that ran out of candidates without acting plans again when its cause stays first but
        a lesser candidate has reached min_confidence (`_newly_confident`). An incident left without
        active symptoms is merged."""
        flexible = [i for i in sorted(self._open.values(), key=lambda i: i.id)
                    if i.state in (State.OPEN, State.OBSERVED, State.EXHAUSTED) and not i.pending and not i.in_force]
        active = {s.key: s for s in out.active}
        names = {str(s) for s in out.active}
        syms = [active[k] for i in flexible for k in sorted(i.symptoms) if k in active]
        if not syms:
            return
        given: set[int] = set()  # incidents that took a group's cause in this pass
        for diag, group in cover(out.indicators, syms, snap.routing, now, self.config.top_k, adjacency=out.adjacency):
            top, keys = diag.top, {s.key for s in group}
            holders = [i for i in flexible if i.state is not State.CLOSED and i.symptoms & keys]
            if top is None or not holders:
                continue
            free = [i for i in holders if i.id not in given]
            if not free:  # its symptoms sit in an incident that took another cause: a cause of their own
                if len(self._open) < MAX_OPEN_INCIDENTS:
                    for i in holders:
                        i.symptoms -= keys
                    self._open_incident(diag, group, now)
                continue
            owner = max(free, key=lambda i: (len(i.symptoms & keys), -i.id))
            given.add(owner.id)
            old = owner.diagnosis.top
            if old is not None and (top.element, top.fault) == (old.element, old.fault):
                owner.symptoms |= keys
                if owner.state is State.EXHAUSTED and owner.attempts == 0 \
                        and _newly_confident(owner.diagnosis, diag, self.config.min_confidence):
                    self._plan_anew(owner, diag, now)
            else:
                if old is not None and any(name not in names for name in old.explains):
                    continue  # its evidence is going (the fault is ending), not changing: the cause stays
                was = 0.0 if old is None else next(
                    (c.score for c in diag.candidates if (c.element, c.fault) == (old.element, old.fault)), 0.0)
                if top.score < REDIAGNOSE_MARGIN * was:
                    continue
                owner.symptoms |= keys
                self._plan_anew(owner, diag, now)
            for other in flexible:
                if other is owner or other.state is State.CLOSED or not other.symptoms & keys:
                    continue
                other.symptoms -= keys
                if not other.symptoms & set(active):
                    owner.symptoms |= other.symptoms
                    self._close(other, Outcome.MERGED, now)

    def _refine_kind(self, out: MonitorOutput, snap: Snapshot, now: float) -> None:
        """An incident whose mitigation is in force keeps its element, but the kind of fault may still
        be refined as evidence thickens (a link's flaps first, the sustained hello loss behind them a few
        seconds later): when its symptoms, ranked again, put another fault of the same element first by
        REDIAGNOSE_MARGIN, the new diagnosis is recorded. The ladder and the action in force stay."""
        active = {s.key: s for s in out.active}
        for inc in sorted(self._open.values(), key=lambda i: i.id):
            old = inc.candidate
            if inc.state is not State.MITIGATED or old is None or old.element.kind is not ElementKind.LINK:
                continue
            syms = [active[k] for k in sorted(inc.symptoms) if k in active]
            if not syms:
                continue
            diag = rank(out.indicators, syms, snap.routing, now, self.config.top_k, adjacency=out.adjacency)
            top = diag.top
            if top is None or top.element != old.element or top.fault is old.fault:
                continue
            was = next((c.score for c in diag.candidates if (c.element, c.fault) == (old.element, old.fault)), 0.0)
            if top.score < REDIAGNOSE_MARGIN * was:
                continue
            inc.diagnosis, inc.cand_index = diag, 0
            self._emit_diagnosed(inc.id, diag, now)

    def _open_incident(self, diag: Diagnosis, group: tuple[Symptom, ...], now: float) -> None:
        inc = Incident(self._next_incident, now, {s.key for s in group}, diag)
        self._next_incident += 1
        self._open[inc.id] = inc
        self._emit(IncidentOpened(inc.id, tuple(sorted(str(s) for s in group)), now))
        self._emit_diagnosed(inc.id, diag, now)

    def _emit_diagnosed(self, incident: int, diag: Diagnosis, now: float) -> None:
        top = diag.top
        self._emit(Diagnosed(incident, tuple((str(c.element), c.fault.value, c.confidence) for c in diag.candidates),
                             top.evidence if top else (), now))

    def _plan_anew(self, inc: Incident, diag: Diagnosis, now: float) -> None:
        """The incident takes `diag` and plans again from its first candidate's first rung (what it
        decided, and when it ran out or would be judged in observe mode, belong to the old plan)."""
        inc.diagnosis, inc.cand_index, inc.rung_index, inc.ladder = diag, 0, 0, None
        inc.state, inc.exhausted_s, inc.observe_deadline_s, inc.recorded = State.OPEN, None, None, set()
        self._emit_diagnosed(inc.id, diag, now)

    # ---- verify and follow-up -------------------------------------------------------------------
    def _ctx(self, inc: Incident, snap: Snapshot, out: MonitorOutput) -> PlanContext:
        failed = inc.failed + self.gates.backoff.failures_on(str(node_element(self.self_id)), snap.now)
        return PlanContext(snap, out, symptom_age_s=snap.now - inc.opened_s, failed_rungs=failed)

    def _track(self, inc: Incident, snap: Snapshot, out: MonitorOutput,
               active: set[tuple[SymptomKind, Element]], now: float) -> None:
        clear = not (inc.symptoms & active)
        inc.clear_since_s = (inc.clear_since_s if inc.clear_since_s is not None else now) if clear else None
        st = inc.state
        if st is State.VERIFYING:
            verdict = verify.check(inc, self._ctx(inc, snap, out), active)
            if verdict is not None:
                (self._succeed if verdict.success else self._fail_verdict)(inc, verdict.reason, now)
        elif st is State.ACTING and now - inc.pending_since_s >= RESULT_WAIT_S:
            if inc.pending is not None:
                self.executor.forget(inc.pending.request_id)
            self._fail(inc, f"the adapter did not answer within {RESULT_WAIT_S:.0f} s", now, undo=True)
        elif st is State.WAITING_LEASE and now - inc.pending_since_s >= LEASE_WAIT_S:
            inc.state, inc.planned = State.OPEN, None
            inc.not_before_s = now + LEASE_RETRY_S
            self._decide_text(inc, "", "", "waiting", "no lease answer in time", now, gate="lease_timeout")
        elif st is State.MITIGATED and inc.in_force is not None:
            clean = clear or self._evidence_clean(inc, out)
            inc.clean_since_s = (inc.clean_since_s if inc.clean_since_s is not None else now) if clean else None
            if inc.clean_since_s is None:
                req, ctx = inc.in_force, self._ctx(inc, snap, out)
                short = PLUGINS[req.action].shortfall(req.target, ctx)
                stronger = self._stronger_workaround(inc, ctx) if short is not None else None
                if stronger is not None:  # the fault lasts, the mitigation no longer covers it: climb
                    self._lift(inc, f"not enough: {short}; {stronger} next", now, damp=False)
                    inc.rung_index += 1
                    inc.state = State.OPEN
                return
            hold = self._hold_s(inc, now)
            if now - inc.clean_since_s >= hold:
                what = "symptoms clear" if clear else "evidence clean"
                self._lift(inc, f"{what} for {hold:.0f} s", now)
                self.monitor.settle(inc.symptoms, now)
                self._close(inc, Outcome.RECOVERED, now)
        elif st is State.OBSERVED:
            if inc.observe_deadline_s is not None and not inc.observe_judged:
                if clear:
                    inc.observe_judged = True
                    self._emit_mode(self.mode_switch.observe_outcome(False, now))
                elif now >= inc.observe_deadline_s:
                    inc.observe_judged = True
                    self._emit_mode(self.mode_switch.observe_outcome(True, now))
            if clear:
                self._close(inc, Outcome.CLEARED, now)
        elif st in (State.OPEN, State.EXHAUSTED, State.WAITING_LEASE) and clear:
            self._close(inc, Outcome.UNRESOLVED if inc.failed or st is State.EXHAUSTED else Outcome.CLEARED, now)

    def _stronger_workaround(self, inc: Incident, ctx: PlanContext) -> str | None:
        """The first later rung of the incident's ladder that works around the fault without taking
        anything down and may run now ("action target"), else None: a mitigation that falls short stays
        rather than leave nothing in its place."""
        cand = inc.candidate
        if cand is None or inc.ladder is None:
            return None
        for rung in inc.ladder[inc.rung_index + 1:]:
            plugin = PLUGINS[rung.action]
            target = resolve_target(rung.target, cand.element, self.self_id)
            if target is not None and plugin.mitigation and not plugin.disruptive \
                    and plugin.precondition(target, ctx) is None:
                return f"{rung.action.value} {target}"
        return None

    def _evidence_clean(self, inc: Incident, out: MonitorOutput) -> bool:
        """Every symptom of the incident measures, now, at or below its rule's exit level; a flapping
        link's evidence (flaps in the last two minutes) is judged by the link being up and without a
        transition for FLAP_QUIET_S instead (monitor.link_quiet_s)."""
        def clean(kind: SymptomKind, el: Element) -> bool:
            if kind is SymptomKind.LINK_FLAP:
                down = self.monitor.degree(SymptomKind.LINK_DOWN, el, out.indicators)
                return down <= RULES[SymptomKind.LINK_DOWN].exit and \
                    self.monitor.link_quiet_s(el, out.now) >= FLAP_QUIET_S
            return self.monitor.degree(kind, el, out.indicators) <= RULES[kind].exit

        return all(clean(kind, el) for kind, el in inc.symptoms)

    def _hold_s(self, inc: Incident, now: float) -> float:
        req = inc.in_force
        assert req is not None
        count, last = self._lifted.get((req.action, req.target), (0, float("-inf")))
        if now - last >= BACKOFF_RESET_AFTER_S:
            count = 0
        fault = inc.candidate.fault if inc.candidate is not None else None
        base = self.config.mitigation_hold_s if fault in LOAD_DEPENDENT else self.config.lift_hold_s
        return min(MITIGATION_HOLD_MAX_S, base * 2 ** count)

    def _lift(self, inc: Incident, reason: str, now: float, damp: bool = True) -> None:
        """Take back the incident's mitigation; `damp` counts the lift towards the longer hold of the
        same mitigation needed again (not when it is lifted for a stronger rung)."""
        req = inc.in_force
        if req is None:
            return
        inc.in_force = None
        if damp:
            count, last = self._lifted.get((req.action, req.target), (0, float("-inf")))
            self._lifted[(req.action, req.target)] = (0 if now - last >= BACKOFF_RESET_AFTER_S else count) + 1, now
            while len(self._lifted) > MAX_OPEN_INCIDENTS * 4:
                self._lifted.pop(next(iter(self._lifted)))
        if self.executor.lift(req, reason) is not None:
            self._decide_text(inc, req.action.value, str(req.target), "undo", f"lifted: {reason}", now, gate="lift")

    def _succeed(self, inc: Incident, reason: str, now: float) -> None:
        req = inc.pending
        assert req is not None
        plugin = PLUGINS[req.action]
        fault = inc.candidate.fault if inc.candidate else None
        if fault is not None:
            self.knowledge.outcome(fault, req.action, True)
        self._emit(Verified(inc.id, req.request_id, fault.value if fault else "", req.action.value, str(req.target),
                            True, reason, now - inc.pending_since_s, now))
        self._emit_mode(self.mode_switch.action_outcome(True, now))
        self._release(inc)
        inc.pending = None
        if inc.recovered_s is None:
            inc.recovered_s = now
        if plugin.mitigation:
            self.executor.enforce(req)
            inc.in_force = req
            inc.state = State.MITIGATED  # lifted by _track once the symptoms have been clear for the hold time
        else:
            self._close(inc, Outcome.RECOVERED, now, action=req.action)

    def _fail_verdict(self, inc: Incident, reason: str, now: float) -> None:
        self._fail(inc, reason, now, undo=True)

    def _fail(self, inc: Incident, reason: str, now: float, undo: bool) -> None:
        req = inc.pending
        if req is None:
            return
        plugin = PLUGINS[req.action]
        fault = inc.candidate.fault if inc.candidate else None
        self.gates.backoff.failed((str(req.target), req.action.value), now)
        if fault is not None:
            self.knowledge.outcome(fault, req.action, False)
        self._emit(Verified(inc.id, req.request_id, fault.value if fault else "", req.action.value, str(req.target),
                            False, reason, now - inc.pending_since_s, now))
        self._emit_mode(self.mode_switch.action_outcome(False, now))
        if undo and plugin.has_undo:
            self.executor.request(inc.id, req.action, req.target, dict(req.params), f"undo: {reason}", undo=True)
            self._decide_text(inc, req.action.value, str(req.target), "undo", reason, now, gate="undo", force=True)
        self._release(inc)
        inc.pending = None
        inc.failed += 1
        inc.rung_index += 1
        inc.state = State.OPEN

    def _release(self, inc: Incident) -> None:
        if inc.lease_id is not None:
            self.executor.release(inc.lease_id)
            inc.lease_id = None

    def _close(self, inc: Incident, outcome: Outcome, now: float, action: ActionKind | None = None) -> None:
        self._lift(inc, "incident closed", now)
        self._release(inc)
        cand = inc.candidate
        mttr = (inc.recovered_s if inc.recovered_s is not None else now) - inc.opened_s
        acted = (action or inc.last_action_kind) if outcome is Outcome.RECOVERED else None
        ev = IncidentClosed(inc.id, outcome.value, cand.fault.value if cand else "", str(cand.element) if cand else "",
                            cand.confidence if cand else 0.0, acted.value if acted else "", round(mttr, 3), now)
        inc.state = State.CLOSED
        self._open.pop(inc.id, None)
        self._closed.append(ev)
        self._emit(ev)

    # ---- plan -> execute ------------------------------------------------------------------------
    def _execute(self, inc: Incident, p: Plan, now: float) -> int:
        for action, target, why in p.skipped:
            self._decide_text(inc, action, target, "skipped", why, now, gate=f"skip:{why}")
        inc.cand_index, inc.rung_index, inc.ladder = p.cand_index, p.rung_index, p.ladder
        if p.kind is PlanKind.EXHAUSTED:
            inc.state, inc.exhausted_s = State.EXHAUSTED, now
            self._decide(inc, p, "exhausted", p.reason, now, gate="exhausted")
            return 0
        if p.kind is PlanKind.WAIT:
            self._decide(inc, p, "waiting", p.reason, now, gate=p.gate)
            return 0
        assert p.rung is not None and p.target is not None
        plugin = PLUGINS[p.rung.action]
        if p.kind is PlanKind.OBSERVE_ONLY:
            inc.state = State.OBSERVED
            inc.observe_deadline_s = now + plugin.verify_s
            inc.observe_judged = False
            self._decide(inc, p, "observe_only", p.reason, now, gate="observe")
            return 0
        if plugin.needs_lease and inc.lease_id is None:
            lease = self.executor.lease(inc.id, disrupt_resource(self.self_id), self.self_id,
                                        plugin.verify_s + LEASE_MARGIN_S, p.reason)
            inc.state, inc.planned, inc.pending_since_s = State.WAITING_LEASE, p, now
            self._decide(inc, p, "waiting", f"lease {lease.resource} requested", now, gate="lease")
            return 1
        return self._issue(inc, p, now)

    def _issue(self, inc: Incident, p: Plan, now: float) -> int:
        assert p.rung is not None and p.target is not None
        plugin = PLUGINS[p.rung.action]
        refused = self.gates.check(p.rung.action, p.target, now)  # an earlier incident may have spent it
        if refused is not None:
            self._release(inc)
            inc.state = State.OPEN
            self._decide(inc, p, "waiting", refused[1], now, gate=refused[0])
            return 0
        if p.rung.action in LINK_WEIGHTS:
            self._supersede_link_weights(inc, p.target, now)
        req = self.executor.request(inc.id, p.rung.action, p.target, p.params, p.reason)
        key = (str(p.target), p.rung.action.value)
        self.gates.backoff.attempted(key, now)
        self.gates.bucket.take(now)
        if plugin.disruptive:
            self.gates.budget.spend(now)
        inc.pending, inc.pending_since_s, inc.state = req, now, State.ACTING
        inc.attempts += 1
        inc.last_action_kind = p.rung.action
        self._decide(inc, p, "requested", p.reason, now, gate="act", force=True)
        return 1

    # ---- records --------------------------------------------------------------------------------
    def _supersede_link_weights(self, inc: Incident, target: Element, now: float) -> None:
        """Lift other incidents' penalties and drains on our links when, with `target` weighted too, no
        link of ours to another up neighbour would be left unweighted (see the module rules)."""
        if self._snapshot is None:
            return
        me = self.self_id
        far = far_end(target, me)
        others = set(up_neighbours(self._snapshot.routing)) - {far}
        holders = [i for i in self._open.values() if i is not inc and i.in_force is not None
                   and i.in_force.action in LINK_WEIGHTS and far_end(i.in_force.target, me) in others]
        if not others or {far_end(i.in_force.target, me) for i in holders if i.in_force} != others:
            return
        # one link freed is enough for the new weight to move routes: the one whose symptoms cleared
        # (if any), else the oldest
        old = min(holders, key=lambda i: (i.clear_since_s is None, i.id))
        self._lift(old, f"superseded by incident {inc.id} on {target}: with both weighted no route would move", now)
        old.state, old.exhausted_s = State.EXHAUSTED, now

    def _decide(self, inc: Incident, p: Plan, outcome: str, reason: str, now: float, gate: str,
                force: bool = False) -> None:
        action = p.rung.action.value if p.rung is not None else ""
        self._decide_text(inc, action, str(p.target) if p.target is not None else "", outcome, reason, now, gate, force)

    def _decide_text(self, inc: Incident, action: str, target: str, outcome: str, reason: str, now: float,
                     gate: str, force: bool = False) -> None:
        sig = (action, target, outcome, gate)
        if not force and sig in inc.recorded:
            return
        inc.recorded.add(sig)
        self._emit(Decided(inc.id, action, target, outcome, reason, self.mode_switch.mode.value, now))

    def _emit_mode(self, ev: ModeChanged | None) -> None:
        if ev is not None:
            self._emit(ev)

    def _emit(self, ev: Any) -> None:
        self.knowledge.record(ev)
        self._push_event(ev)

    def _push_event(self, ev: Any) -> None:
        self._events.append(ev)
        while len(self._events) > MAX_EVENTS:
            self._events.popleft()
            self.dropped_events += 1


def _newly_confident(old: Diagnosis, new: Diagnosis, bar: float) -> bool:
    """The new ranking holds a candidate at or above `bar` that the old one did not: an incident that
    ran out of candidates without acting (its first one has no lever of ours, the next was below the
    bar) plans again. Its first candidate stays first, so the incident is not re-diagnosed, and the
    lesser candidate's confidence grew as its evidence did (bench: a black hole's neighbour waited
    5.8 s, until its cause overtook a link beyond it by the re-diagnosis margin)."""
    was = {(c.element, c.fault) for c in old.candidates if c.confidence >= bar}
    return any((c.element, c.fault) not in was for c in new.candidates if c.confidence >= bar)
