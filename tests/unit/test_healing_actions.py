from __future__ import annotations

from tests.unit.healing_views import ME, A, B, C, diamond
from x0node.healing import actions as ac
from x0node.healing.actions import PLUGINS, ActionKind, PlanContext, avoidable_routes
from x0node.healing.monitor import Element, ElementKind, Monitor, link_element, node_element
from x0node.healing.observation import NodeObs, RoutingObs, ServiceObs, Snapshot, UplinkObs


def ctx(routing: RoutingObs | None = None, **kw) -> PlanContext:
    snap = Snapshot(10.0, routing or diamond(), services=kw.pop("services", ()), uplinks=kw.pop("uplinks", ()))
    return PlanContext(snap, Monitor(ME).observe(snap), **kw)


def test_every_plugin_declares_its_contract():
    for kind, p in PLUGINS.items():
        assert p.kind is kind and p.cost > 0 and p.verify_s > 0 and p.cooldown_s >= 0 and p.expected_effect
        assert not (p.mitigation and p.disruptive)  # work-arounds never take anything down
        assert not p.needs_lease or p.disruptive
    assert [k for k, p in PLUGINS.items() if p.needs_lease] == [ActionKind.RESET_INTERFACE, ActionKind.RESTART_DAEMON,
                                                                 ActionKind.REBOOT]


def test_link_weights_need_a_link_of_ours_to_an_up_neighbour_and_another_way_out():
    pen = PLUGINS[ActionKind.PENALISE_LINK]
    assert pen.precondition(link_element(ME, A), ctx()) is None
    assert "its ends" in pen.precondition(link_element(A, C), ctx())
    assert "not up" in pen.precondition(link_element(ME, A), ctx(diamond(up_a=False)))
    lonely = RoutingObs(ME, diamond().neighbours[:1], (), diamond().nodes, diamond().edges)
    assert "no other neighbour" in pen.precondition(link_element(ME, A), ctx(lonely))
    assert "does not apply" in pen.precondition(node_element(A), ctx())
    params = pen.params(link_element(ME, A), ctx())
    assert params == {"neighbour": A, "ifnames": f"e{A[:2]}", "factor": ac.PENALTY_FACTOR}
    assert PLUGINS[ActionKind.DRAIN_LINK].params(link_element(ME, A), ctx())["factor"] == ac.DRAIN_FACTOR
    # effect: our route to c left the link (c has another way, via b)
    assert pen.effect_observed(link_element(ME, A), params, ctx(diamond(via_c=A))) is False
    assert pen.effect_observed(link_element(ME, A), params, ctx(diamond(via_c=B))) is True


def test_avoidable_routes_count_only_destinations_with_another_path():
    assert avoidable_routes(diamond(via_c=A), A, only_link=True) == (1, 2)  # c via a though b leads there too
    assert avoidable_routes(diamond(via_c=B), A, only_link=False) == (0, 2)


def test_steering_is_for_neighbours_with_a_way_around():
    steer = PLUGINS[ActionKind.STEER_AROUND_NODE]
    assert steer.precondition(node_element(A), ctx()) is None
    assert "ourselves" in steer.precondition(node_element(ME), ctx())
    assert "not a neighbour" in steer.precondition(node_element(C), ctx())
    assert steer.effect_observed(node_element(A), {}, ctx(diamond(via_c=B))) is True


def test_mark_self_sick_is_only_for_us_and_seen_in_our_own_lsa():
    sick = PLUGINS[ActionKind.MARK_SELF_SICK]
    assert sick.precondition(node_element(ME), ctx()) is None
    assert "itself" in sick.precondition(node_element(A), ctx())
    assert sick.effect_observed(node_element(ME), {}, ctx()) is False  # not (yet) in our LSA
    base = diamond()
    flagged = RoutingObs(ME, base.neighbours, base.routes, (NodeObs(ME, "fd00::aa", True, sick=True),) + base.nodes[1:],
                         base.edges, base.interfaces)
    assert sick.effect_observed(node_element(ME), {}, ctx(flagged)) is True


def test_reset_interface_never_takes_down_healthy_neighbours():
    reset = PLUGINS[ActionKind.RESET_INTERFACE]
    healthy = ctx()
    assert "healthy neighbour" in reset.precondition(link_element(ME, A), healthy)
    m = Monitor(ME)
    bad = diamond(loss_a=0.5)
    m.observe(Snapshot(0.0, bad))
    sick_ctx = PlanContext(Snapshot(5.0, bad), m.observe(Snapshot(5.0, bad)))
    assert reset.precondition(link_element(ME, A), sick_ctx) is None
    assert reset.params(link_element(ME, A), sick_ctx) == {"ifname": f"e{A[:2]}"}
    assert "not a mesh interface" in reset.precondition(Element(ElementKind.INTERFACE, "eth9"), healthy)


def test_restart_subsystem_and_daemon_and_uplink():
    restart = PLUGINS[ActionKind.RESTART_SUBSYSTEM]
    svc = Element(ElementKind.SERVICE, "telemetry")
    assert restart.precondition(svc, ctx()) is None and restart.params(svc, ctx()) == {"service": "telemetry"}
    assert "not restartable" in restart.precondition(Element(ElementKind.SERVICE, "web"), ctx())
    running = (ServiceObs("anomaly", True, True),)
    assert restart.params(node_element(ME), ctx(services=running)) == {"service": "anomaly"}
    assert "no service" in restart.precondition(node_element(ME), ctx())
    daemon = PLUGINS[ActionKind.RESTART_DAEMON]
    assert daemon.precondition(node_element(ME), ctx()) is None and "only this node" in daemon.precondition(
        node_element(A), ctx())
    up = PLUGINS[ActionKind.MOVE_UPLINK_OBFUSCATED]
    wan = Element(ElementKind.UPLINK, "wan")
    plain = (UplinkObs("wan", "plain", False, True, True),)
    assert up.precondition(wan, ctx(uplinks=plain)) is None
    assert "configured" in up.precondition(wan, ctx(uplinks=(UplinkObs("wan", "plain", False, True, False),)))
    moved = (UplinkObs("wan", "obfuscated", True, True, True),)
    assert "already" in up.precondition(wan, ctx(uplinks=moved))
    assert up.effect_observed(wan, {}, ctx(uplinks=moved)) is True


def test_reboot_is_the_last_rung():
    reboot = PLUGINS[ActionKind.REBOOT]
    me = node_element(ME)
    assert "cheaper rungs failed" in reboot.precondition(me, ctx(failed_rungs=1, symptom_age_s=1e6))
    assert "has lasted" in reboot.precondition(me, ctx(failed_rungs=5, symptom_age_s=10.0))
    assert reboot.precondition(me, ctx(failed_rungs=ac.REBOOT_MIN_FAILED_RUNGS, symptom_age_s=ac.REBOOT_MIN_SYMPTOM_S)) is None
    assert "only this node" in reboot.precondition(node_element(A), ctx(failed_rungs=9, symptom_age_s=1e6))


def test_steering_is_refused_where_the_core_has_no_downstream_alternate():
    # me - a - c and me - b - e - c: b is no closer to c than we are, so the routing core cannot steer
    # our route to c off a (RFC 5286 downstream condition); the ladder goes on to draining the link.
    from x0node.healing.actions import steerable_routes
    from x0node.healing.observation import EdgeObs, NodeObs, RouteObs, RoutingObs

    E = "ee" * 4
    base = diamond()
    edges = (EdgeObs(ME, A, 10), EdgeObs(ME, B, 10), EdgeObs(A, C, 10), EdgeObs(B, E, 10), EdgeObs(E, C, 10))
    routes = base.routes + (RouteObs(f"fd00::{E[:2]}/128", f"e{B[:2]}", f"fe80::{B[:2]}", 20, E),)
    corner = RoutingObs(ME, base.neighbours, routes, base.nodes + (NodeObs(E, "fd00::ee", True),), edges,
                        base.interfaces)
    assert steerable_routes(corner, A) == (0, 0, 1)
    steer = PLUGINS[ActionKind.STEER_AROUND_NODE]
    assert "downstream" in steer.precondition(node_element(A), ctx(corner))
    assert steerable_routes(diamond(), A) == (1, 1, 1)  # b is as close to c as a: our route to c can move
    assert steerable_routes(diamond(via_c=B), A) == (0, 1, 1)  # ... and has moved


def test_steering_that_would_leave_some_traffic_on_the_node_gives_way_to_the_drain():
    # the diamond plus f behind a only through a longer way round b (b - g - f): c can move to b, f cannot
    from x0node.healing.actions import steerable_routes
    from x0node.healing.observation import EdgeObs, NodeObs, RouteObs, RoutingObs

    F, G = "ef" * 4, "f0" * 4
    base = diamond()
    edges = base.edges + (EdgeObs(A, F, 10), EdgeObs(B, G, 10), EdgeObs(G, F, 10))
    routes = base.routes + (RouteObs(f"fd00::{F[:2]}/128", f"e{A[:2]}", f"fe80::{A[:2]}", 20, F),
                            RouteObs(f"fd00::{G[:2]}/128", f"e{B[:2]}", f"fe80::{B[:2]}", 20, G))
    nodes = base.nodes + (NodeObs(F, "fd00::ef", True), NodeObs(G, "fd00::f0", True))
    r = RoutingObs(ME, base.neighbours, routes, nodes, edges, base.interfaces)
    assert steerable_routes(r, A) == (1, 1, 2)
    steer = PLUGINS[ActionKind.STEER_AROUND_NODE]
    why = steer.precondition(node_element(A), ctx(r))
    assert why is not None and "1 of 2" in why
    # a steer already in force falls short here; on the plain diamond it covers everything
    assert "1 of 2" in steer.shortfall(node_element(A), ctx(r))
    assert steer.shortfall(node_element(A), ctx()) is None
    assert steer.shortfall(node_element(A), ctx(diamond(up_a=False))) is None  # gone: nothing crosses it


def test_a_drain_by_the_far_end_of_a_link_counts_in_both_directions():
    # the LSDB view lists a link once (lower id first) with both ends' costs: a drains its link to us
    # (its cost towards us is high, ours towards it is not), so c's way back to us goes through b, and
    # our own routes, weighed by our costs, still may use a
    from x0node.healing.actions import steerable_routes
    from x0node.healing.monitor import return_paths
    from x0node.healing.observation import EdgeObs, RoutingObs

    base = diamond()
    assert return_paths(base, [C]) == {C: (A,)}  # equal costs: the smaller first hop from c
    drained = tuple(EdgeObs(e.a, e.b, e.cost, 5000) if {e.a, e.b} == {ME, A} else e for e in base.edges)
    r = RoutingObs(ME, base.neighbours, base.routes, base.nodes, drained, base.interfaces)
    assert return_paths(r, [C]) == {C: (B,)}
    assert steerable_routes(r, A) == steerable_routes(base, A)


def test_the_edge_parser_reads_both_directions_and_refuses_a_bad_back_cost():
    from x0node.healing.observation import _edge

    assert _edge({"a": ME, "b": A, "cost": 10, "cost_back": 70}).costs() == ((ME, A, 10), (A, ME, 70))
    assert _edge({"a": ME, "b": A, "cost": 10}).costs() == ((ME, A, 10), (A, ME, 10))
    assert _edge({"a": ME, "b": A, "cost": 10, "cost_back": "x"}).cost_back is None
    assert _edge({"a": ME, "b": A, "cost": 10, "cost_back": -3}).cost_back is None


def test_a_link_whose_neighbour_times_out_is_past_penalising():
    """A lossy link's downs are hello timeouts with the carrier up: the penalty rung is refused (the
    ladder drains it at once); a link whose downs were carrier losses, or that never went down, may
    still be penalised."""
    pen, drain = PLUGINS[ActionKind.PENALISE_LINK], PLUGINS[ActionKind.DRAIN_LINK]
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond(transitions_a=0, timeouts_a=0)))
    snap = Snapshot(4.0, diamond(transitions_a=2, timeouts_a=1))  # down by a timeout, back up
    lossy = PlanContext(snap, m.observe(snap))
    assert "past penalising" in pen.precondition(link_element(ME, A), lossy)
    assert drain.precondition(link_element(ME, A), lossy) is None
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond(transitions_a=0, timeouts_a=0)))
    snap = Snapshot(4.0, diamond(transitions_a=2, timeouts_a=0))  # the carrier went
    assert pen.precondition(link_element(ME, A), PlanContext(snap, m.observe(snap))) is None
