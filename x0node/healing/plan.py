"""Plan: the next rung for an incident, through every safety gate, with the reason for the choice.

Rules and invariants:
- Candidates are taken best first, only while their confidence is >= `min_confidence`; within a
  candidate its ladder (policy.ladder, frozen when first planned) is walked from the incident's
  position. A rung is skipped (and the skip recorded) when it has no target on this node, its
  precondition fails, or its mitigation is already in force.
- A mitigation already in force (another incident holds it) is skipped, but the ladder does not go on
  past it to a disruptive rung: the incident waits, and the mitigation's own incident verifies it and
  escalates if it fails (two incidents about one lossy link, the second taking the first's drain as
  "done", reset the interface while the drain was working).
- The first rung that passes its precondition is the one: a gate that refuses it (guard window,
  cooldown/backoff, rate limit, budget) makes the incident WAIT; it never jumps to a costlier rung.
- Order of gates: guard window, then mode (observe mode records "observe_only" and stops here, so
  what it records is exactly what active mode would have done), then cooldown and backoff of the
  (target, action) pair, the global rate limit, the disruptive budget. Leases are requested by the
  executor after planning.
- Pure: reads the incident, the context and the gates; changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from x0node.healing.actions import PLUGINS, ActionKind, NotNow, PlanContext
from x0node.healing.analyze import FaultKind
from x0node.healing.incident import Incident
from x0node.healing.monitor import Element
from x0node.healing.policy import ROUTING_REPAIRS, Rung, ladder, resolve_target
from x0node.healing.safety import Backoff, DisruptionBudget, GuardConfig, Mode, TokenBucket, guard_reason


class PlanKind(enum.StrEnum):
    ACT = "requested"
    OBSERVE_ONLY = "observe_only"
    WAIT = "waiting"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    cand_index: int
    rung_index: int
    ladder: tuple[Rung, ...] | None
    rung: Rung | None = None
    target: Element | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    gate: str = ""  # which gate decided (for de-duplicating records)
    skipped: tuple[tuple[str, str, str], ...] = ()  # (action, target, reason)


@dataclass
class Gates:
    guard: GuardConfig
    backoff: Backoff
    bucket: TokenBucket
    budget: DisruptionBudget
    start_s: float

    def check(self, action: ActionKind, target: Element, now: float) -> tuple[str, str] | None:
        plugin = PLUGINS[action]
        why = self.backoff.check((str(target), action.value), plugin.cooldown_s, now)
        if why is not None:
            return "backoff", why
        why = self.bucket.check(now)
        if why is not None:
            return "rate", why
        if plugin.disruptive:
            why = self.budget.check(now)
            if why is not None:
                return "budget", why
        return None


def plan(
    incident: Incident,
    ctx: PlanContext,
    gates: Gates,
    mode: Mode,
    stats: Callable[[FaultKind, ActionKind], tuple[int, int]],
    in_force: Callable[[ActionKind, Element], bool],
    min_confidence: float,
) -> Plan:
    now, me = ctx.snapshot.now, ctx.self_id
    cands = incident.diagnosis.candidates
    ci, ri, frozen = incident.cand_index, incident.rung_index, incident.ladder
    skipped: list[tuple[str, str, str]] = []
    while ci < len(cands):
        cand = cands[ci]
        if cand.confidence < min_confidence:
            reason = (f"diagnosis not confident enough: {cand} < {min_confidence:.2f}" if ci == 0
                      else f"no rung left; the next candidate {cand} is below {min_confidence:.2f}")
            return Plan(PlanKind.EXHAUSTED, ci, ri, None, reason=reason, gate="exhausted", skipped=tuple(skipped))
        if cand.fault in ROUTING_REPAIRS:
            return Plan(PlanKind.EXHAUSTED, ci, ri, None, reason=f"{cand}: routing repairs it, nothing to do",
                        gate="exhausted", skipped=tuple(skipped))
        rungs = frozen if frozen is not None else ladder(cand.fault, stats)
        held: str | None = None  # a mitigation of this ladder already in force (another incident's)
        while ri < len(rungs):
            rung = rungs[ri]
            plugin = PLUGINS[rung.action]
            target = resolve_target(rung.target, cand.element, me)
            if target is None:
                ri += 1
                continue  # no lever of ours for this rung (e.g. a neighbour's own mark_self_sick)
            if plugin.disruptive and held is not None:  # the mitigation in force is judged by its own incident
                base = dict(cand=ci, rung=ri, ladder=rungs, rung_=rung, target=target)
                return _plan(PlanKind.WAIT, base, {}, f"{held} already in force: not escalating past it", "in_force",
                             skipped)
            why = plugin.precondition(target, ctx)
            if why is None and plugin.mitigation and in_force(rung.action, target):
                why = "already in force"
                held = f"{rung.action.value} {target}"
            if isinstance(why, NotNow):
                base = dict(cand=ci, rung=ri, ladder=rungs, rung_=rung, target=target)
                return _plan(PlanKind.WAIT, base, {}, why, "not_now", skipped)
            if why is not None:
                skipped.append((rung.action.value, str(target), why))
                ri += 1
                continue
            base = dict(cand=ci, rung=ri, ladder=rungs, rung_=rung, target=target)
            why = guard_reason(gates.guard, now, ctx.snapshot.boot_s, gates.start_s, ctx.snapshot.update_in_progress)
            if why is not None:
                return _plan(PlanKind.WAIT, base, {}, why, "guard", skipped)
            params = plugin.params(target, ctx)
            head = f"{cand.fault.value}@{cand.element} ({cand.confidence:.2f}): {rung.action.value} {target}"
            if mode is Mode.OBSERVE:
                return _plan(PlanKind.OBSERVE_ONLY, base, params, f"{head} (observe mode: not acting)", "observe",
                             skipped)
            refused = gates.check(rung.action, target, now)
            if refused is not None:
                return _plan(PlanKind.WAIT, base, params, refused[1], refused[0], skipped)
            return _plan(PlanKind.ACT, base, params, f"{head}: {plugin.expected_effect}", "act", skipped)
        ci, ri, frozen = ci + 1, 0, None
    reason = "no rung left for any candidate" if cands else "no candidate explains the symptoms"
    return Plan(PlanKind.EXHAUSTED, ci, ri, None, reason=reason,
                gate="exhausted", skipped=tuple(skipped))


def _plan(kind: PlanKind, base: dict[str, Any], params: dict[str, Any], reason: str, gate: str,
          skipped: list[tuple[str, str, str]]) -> Plan:
    return Plan(kind, base["cand"], base["rung"], base["ladder"], base["rung_"], base["target"], params, reason, gate,
                tuple(skipped))
