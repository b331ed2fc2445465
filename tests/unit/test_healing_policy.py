from __future__ import annotations

from tests.unit.healing_views import ME, A
from x0node.healing.actions import PLUGINS, ActionKind
from x0node.healing.analyze import FAULTS, FaultKind
from x0node.healing.monitor import Element, ElementKind, link_element, node_element
from x0node.healing.policy import POLICY, TargetRule, ladder, resolve_target, success_p

NO_STATS = lambda fault, action: (0, 0)  # noqa: E731


def test_every_fault_has_a_ladder_cheapest_tier_first_reboot_last():
    assert set(POLICY) == {f for faults in FAULTS.values() for f in faults}
    for fault, rungs in POLICY.items():
        tiers = [r.tier for r in ladder(fault, NO_STATS)]
        assert tiers == sorted(tiers), fault
        if any(r.action is ActionKind.REBOOT for r in rungs):
            assert rungs[-1].action is ActionKind.REBOOT and rungs[-1].tier == 3
        for r in rungs:
            assert r.tier == 0 or PLUGINS[r.action].disruptive
    assert POLICY[FaultKind.NODE_DOWN] == ()  # routing repairs it


def test_learning_reorders_within_a_tier_only():
    # drain has always worked for lossy links, penalise never: drain first, the reset still after both
    stats = {ActionKind.PENALISE_LINK: (0, 20), ActionKind.DRAIN_LINK: (20, 20), ActionKind.RESET_INTERFACE: (50, 50)}
    order = [r.action for r in ladder(FaultKind.LINK_LOSSY, lambda f, a: stats.get(a, (0, 0)))]
    assert order == [ActionKind.DRAIN_LINK, ActionKind.PENALISE_LINK, ActionKind.RESET_INTERFACE]
    assert [r.action for r in ladder(FaultKind.LINK_LOSSY, NO_STATS)] == [
        ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK, ActionKind.RESET_INTERFACE]
    assert success_p(0, 0) == 0.5 and success_p(9, 10) == 10 / 12


def test_targets_resolve_to_the_levers_this_node_holds():
    me, a = node_element(ME), node_element(A)
    own, far = link_element(ME, A), link_element(A, "ff" * 4)
    assert resolve_target(TargetRule.OWN_LINK, own, ME) == own and resolve_target(TargetRule.OWN_LINK, far, ME) is None
    assert resolve_target(TargetRule.LINK_TO_NODE, a, ME) == own and resolve_target(TargetRule.LINK_TO_NODE, me, ME) is None
    assert resolve_target(TargetRule.NEIGHBOUR, a, ME) == a and resolve_target(TargetRule.NEIGHBOUR, me, ME) is None
    svc = Element(ElementKind.SERVICE, "telemetry")
    assert resolve_target(TargetRule.SELF, svc, ME) == me and resolve_target(TargetRule.SELF, a, ME) is None
    assert resolve_target(TargetRule.SAME, svc, ME) == svc
