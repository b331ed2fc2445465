"""Policy: the table from a diagnosed fault to its ladder of actions, cheapest first.

Rules and invariants:
- `POLICY[fault]` lists rungs; each names an action and how its target follows from the diagnosed
  element (the element itself, our link to a node, this node). A fault with an empty ladder is only
  recorded: routing repairs it (a node that is down) or the fault's own ends do (a link between two
  other nodes: each end runs this loop and penalises it locally).
- Rungs are grouped in tiers by how much they disturb: 0 = re-weighting and flags (mitigations),
  1 = restarting one of our services, 2 = taking links or the daemon down (needs a lease),
  3 = reboot. Learned success rates reorder rungs *within* a tier only, so learning can never put a
  reset before a penalty or a reboot before anything: within a tier, rungs are ordered by expected
  cost = cost / P(success), P from the knowledge base with a Laplace prior (1 success in 2 tries)
  so an untried rung keeps its table cost.
- Targets are resolved against this node: a diagnosis about someone else's element resolves to the
  lever we hold (our link to it), or to nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from x0node.healing.actions import PLUGINS, ActionKind
from x0node.healing.analyze import FaultKind
from x0node.healing.monitor import Element, ElementKind, link_element, link_ends, node_element


class TargetRule(enum.StrEnum):
    SAME = "same"  # the diagnosed element
    OWN_LINK = "own_link"  # the diagnosed element is a link of ours; else no target
    LINK_TO_NODE = "link_to_node"  # our link to the diagnosed neighbour
    NEIGHBOUR = "neighbour"  # the diagnosed node, if it is another node
    SELF = "self"  # this node, if the diagnosed element is this node or one of its parts


@dataclass(frozen=True)
class Rung:
    action: ActionKind
    target: TargetRule
    tier: int


def _r(action: ActionKind, target: TargetRule) -> Rung:
    plugin = PLUGINS[action]
    if action is ActionKind.REBOOT:
        tier = 3
    elif plugin.needs_lease:
        tier = 2
    elif plugin.disruptive:
        tier = 1
    else:
        tier = 0
    return Rung(action, target, tier)


A, T = ActionKind, TargetRule
POLICY: dict[FaultKind, tuple[Rung, ...]] = {
    FaultKind.LINK_LOSSY: (_r(A.PENALISE_LINK, T.OWN_LINK), _r(A.DRAIN_LINK, T.OWN_LINK),
                           _r(A.RESET_INTERFACE, T.OWN_LINK)),
    FaultKind.LINK_CONGESTED: (_r(A.PENALISE_LINK, T.OWN_LINK), _r(A.DRAIN_LINK, T.OWN_LINK)),
    FaultKind.LINK_FLAPPING: (_r(A.DRAIN_LINK, T.OWN_LINK), _r(A.RESET_INTERFACE, T.OWN_LINK)),
    FaultKind.NODE_BLACKHOLE: (_r(A.STEER_AROUND_NODE, T.NEIGHBOUR), _r(A.DRAIN_LINK, T.LINK_TO_NODE),
                               _r(A.MARK_SELF_SICK, T.SELF), _r(A.RESTART_DAEMON, T.SELF), _r(A.REBOOT, T.SELF)),
    FaultKind.NODE_OVERLOAD: (_r(A.STEER_AROUND_NODE, T.NEIGHBOUR), _r(A.MARK_SELF_SICK, T.SELF),
                              _r(A.RESTART_SUBSYSTEM, T.SELF), _r(A.REBOOT, T.SELF)),
    FaultKind.NODE_MEMORY: (_r(A.STEER_AROUND_NODE, T.NEIGHBOUR), _r(A.MARK_SELF_SICK, T.SELF),
                            _r(A.RESTART_SUBSYSTEM, T.SELF), _r(A.RESTART_DAEMON, T.SELF), _r(A.REBOOT, T.SELF)),
    FaultKind.NODE_DOWN: (),
    FaultKind.LINK_DOWN: (),
    FaultKind.NODE_ANOMALOUS: (_r(A.STEER_AROUND_NODE, T.NEIGHBOUR), _r(A.MARK_SELF_SICK, T.SELF)),
    FaultKind.INTERFACE_STUCK: (_r(A.RESET_INTERFACE, T.SAME), _r(A.REBOOT, T.SELF)),
    FaultKind.SERVICE_HUNG: (_r(A.RESTART_SUBSYSTEM, T.SAME), _r(A.RESTART_DAEMON, T.SELF), _r(A.REBOOT, T.SELF)),
    FaultKind.UPLINK_BLOCKED: (_r(A.MOVE_UPLINK_OBFUSCATED, T.SAME),),
}
del A, T
# Faults the routing core repairs by itself (it routes around a link or node that stopped answering):
# the loop records them and does nothing, nor does it go on to a lesser candidate's ladder.
ROUTING_REPAIRS = frozenset({FaultKind.NODE_DOWN, FaultKind.LINK_DOWN})

LAPLACE_SUCCESSES = 1.0
LAPLACE_TRIES = 2.0
MIN_SUCCESS_P = 0.05  # a rung that never worked is tried last in its tier, not never


def resolve_target(rule: TargetRule, element: Element, self_id: str) -> Element | None:
    """The element the rung acts on, or None when this node holds no lever for it."""
    if rule is TargetRule.SAME:
        return element
    if rule is TargetRule.OWN_LINK:
        if element.kind is ElementKind.LINK and self_id in link_ends(element):
            return element
        return None
    if rule is TargetRule.LINK_TO_NODE:
        if element.kind is ElementKind.NODE and element.id != self_id:
            return link_element(self_id, element.id)
        return None
    if rule is TargetRule.NEIGHBOUR:
        return element if element.kind is ElementKind.NODE and element.id != self_id else None
    if rule is TargetRule.SELF:
        if element.kind is ElementKind.NODE:
            return element if element.id == self_id else None
        return node_element(self_id)
    return None


def expected_cost(rung: Rung, success_p: float) -> float:
    return PLUGINS[rung.action].cost / max(MIN_SUCCESS_P, success_p)


def success_p(successes: float, tries: float) -> float:
    return (successes + LAPLACE_SUCCESSES) / (tries + LAPLACE_TRIES)


def ladder(fault: FaultKind, stats: Callable[[FaultKind, ActionKind], tuple[int, int]]) -> tuple[Rung, ...]:
    """The fault's rungs ordered by tier, then by learned expected cost (ties keep table order).
    `stats(fault, action)` returns (successes, tries) from the knowledge base."""
    rungs = POLICY[fault]
    keyed = [(r.tier, expected_cost(r, success_p(*stats(fault, r.action))), i, r) for i, r in enumerate(rungs)]
    return tuple(r for _, _, _, r in sorted(keyed))
