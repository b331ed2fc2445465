"""Verify: did the action do what it promised, by its deadline?

Rules and invariants:
- A repair (reset, restart, reboot) succeeds when none of the incident's symptoms is active any more;
  it fails when any is still active at `pending_since + verify_s`.
- A mitigation (penalise, drain, steer, mark sick, move uplink) succeeds when its effect is observed
  (`effect_observed` true) or the symptoms cleared; when the effect cannot be observed at all (None:
  the view does not carry it yet), the adapter's confirmation is taken as the effect. It fails when
  the effect is still absent at the deadline.
- The verdict carries its reason; the engine records it, undoes a failed action that has an undo, and
  escalates.
- Pure.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from x0node.healing.actions import PLUGINS, PlanContext
from x0node.healing.incident import Incident
from x0node.healing.monitor import Element, SymptomKind


@dataclass(frozen=True)
class Verdict:
    success: bool
    reason: str


def check(incident: Incident, ctx: PlanContext, active: Set[tuple[SymptomKind, Element]]) -> Verdict | None:
    """The verdict on the incident's pending action, or None while it is still undecided."""
    req = incident.pending
    if req is None:
        return None
    now = ctx.snapshot.now
    plugin = PLUGINS[req.action]
    after = now - incident.pending_since_s
    still = sorted(f"{k.value}@{e}" for k, e in incident.symptoms & set(active))
    if plugin.mitigation:
        effect = plugin.effect_observed(req.target, dict(req.params), ctx)
        if effect is True:
            return Verdict(True, f"effect observed after {after:.1f} s: {plugin.expected_effect}")
        if not still:
            return Verdict(True, f"symptoms cleared after {after:.1f} s")
        if effect is None:
            return Verdict(True, "effect not visible in the observations; the adapter confirmed it")
        if now >= incident.deadline_s:
            return Verdict(False, f"effect not observed {after:.1f} s after the action ({plugin.expected_effect})")
        return None
    if not still:
        return Verdict(True, f"symptoms cleared {after:.1f} s after the action")
    if now >= incident.deadline_s:
        return Verdict(False, f"{', '.join(still)} still active {after:.1f} s after the action")
    return None
