from __future__ import annotations

import pytest

from tests.unit.healing_views import ME, A, B, C, diamond
from x0node.healing import monitor as mon
from x0node.healing.monitor import (
    ElementKind,
    Monitor,
    Signal,
    SymptomKind,
    link_element,
    node_element,
    ramp,
)
from x0node.healing.observation import (
    InterfaceObs,
    NodeMetricsObs,
    ProbeObs,
    RoutingObs,
    ServiceObs,
    Snapshot,
    UplinkObs,
    VerdictObs,
)


def _ind(out, signal, element=None, path=None):
    for i in out.indicators:
        if i.signal is signal and (element is None or i.element == element) and (path is None or i.path == path):
            return i
    raise AssertionError(f"no {signal} indicator for {element} {path}")


def _keys(symptoms):
    return {(s.kind, s.element) for s in symptoms}


def test_ramp():
    assert ramp(0.0, 0.03, 0.15) == 0.0 and ramp(0.15, 0.03, 0.15) == 1.0 and ramp(0.09, 0.03, 0.15) == pytest.approx(0.5)
    assert ramp(0.8, 0.95, 0.70) == pytest.approx(0.6)  # falling metrics ramp the other way
    assert ramp(2.0, 1.0, 1.0) == 1.0 and ramp(0.5, 1.0, 1.0) == 0.0


def test_link_loss_raises_after_its_delay_and_clears_only_after_being_good_for_the_clear_time():
    m = Monitor(ME)
    rule = mon.RULES[SymptomKind.LINK_LOSS]
    key = (SymptomKind.LINK_LOSS, link_element(ME, A))
    out = m.observe(Snapshot(0.0, diamond(loss_a=0.3)))
    assert _ind(out, Signal.HELLO_LOSS, link_element(ME, A)).degree == 1.0 and not out.raised
    out = m.observe(Snapshot(rule.raise_after_s, diamond(loss_a=0.3)))
    assert _keys(out.raised) == {key} and _keys(out.active) == {key}
    assert out.active[0].detail == f"e{A[:2]}"
    t = rule.raise_after_s
    # between the exit and enter levels: held, and the good timer does not run
    for _ in range(30):
        t += 1.0
        out = m.observe(Snapshot(t, diamond(loss_a=0.07)))
    assert _keys(out.active) == {key}
    out = m.observe(Snapshot(t + 1.0, diamond(loss_a=0.0)))
    assert _keys(out.active) == {key}
    out = m.observe(Snapshot(t + 1.0 + rule.clear_after_s, diamond(loss_a=0.0)))
    assert _keys(out.cleared) == {key} and not out.active


def test_a_short_spike_does_not_raise():
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond(loss_a=0.3)))
    out = m.observe(Snapshot(1.0, diamond(loss_a=0.0)))
    out = m.observe(Snapshot(2.0, diamond(loss_a=0.3)))
    assert not out.raised and not out.active


def test_rtt_is_judged_against_its_own_baseline_and_needs_real_extra_delay():
    m = Monitor(ME)
    for t in range(5):
        m.observe(Snapshot(float(t), diamond(rtt_a=2.0)))
    small = m.observe(Snapshot(5.0, diamond(rtt_a=8.0)))  # 4x, but only 6 ms more: noise on a fast link
    assert _ind(small, Signal.HELLO_RTT, link_element(ME, A)).degree == 0.0
    big = m.observe(Snapshot(6.0, diamond(rtt_a=52.0)))
    ind = _ind(big, Signal.HELLO_RTT, link_element(ME, A))
    assert ind.degree == 1.0 and ind.value == pytest.approx(26.0) and ind.onset_s == 6.0
    later = m.observe(Snapshot(7.0, diamond(rtt_a=52.0)))
    assert _ind(later, Signal.HELLO_RTT, link_element(ME, A)).onset_s == 6.0  # onset kept while abnormal


def test_flaps_are_counted_in_a_window():
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond(transitions_a=0)))
    out = m.observe(Snapshot(10.0, diamond(transitions_a=6)))
    assert _ind(out, Signal.FLAP, link_element(ME, A)).value == 6 and _keys(out.raised) == {
        (SymptomKind.LINK_FLAP, link_element(ME, A))}
    out = m.observe(Snapshot(10.0 + mon.FLAP_WINDOW_S + 1, diamond(transitions_a=6)))
    assert _ind(out, Signal.FLAP, link_element(ME, A)).degree == 0.0


def test_probe_loss_beyond_what_the_first_link_explains():
    m = Monitor(ME)
    probes = (ProbeObs(A, C, 16, 7, 5.0), ProbeObs(B, C, 16, 0, 5.0), ProbeObs(B, A, 3, 3, None))
    out = m.observe(Snapshot(0.0, diamond(), probes=probes))
    assert _ind(out, Signal.PROBE_LOSS, path=(ME, A, C)).degree == 1.0
    assert _ind(out, Signal.PROBE_LOSS, path=(ME, B, C)).degree == 0.0
    assert not [i for i in out.indicators if i.path == (ME, B, A)]  # too few samples to say anything
    # the same loss on a link that loses 20 % itself is mostly explained by the link
    lossy = Monitor(ME).observe(Snapshot(0.0, diamond(loss_a=0.2), probes=probes))
    assert _ind(lossy, Signal.PROBE_LOSS, path=(ME, A, C)).degree < 0.5
    out = m.observe(Snapshot(1.0, diamond(), probes=probes))
    assert _keys(out.active) == {(SymptomKind.FORWARDING_LOSS, node_element(A))}


def test_node_service_verdict_interface_and_uplink_indicators():
    m = Monitor(ME)
    snap = Snapshot(
        0.0, diamond(c_reachable=False),
        metrics=(NodeMetricsObs(ME, cpu_util=0.99, mem_util=0.2, fwd_ratio=0.5), NodeMetricsObs(A, cpu_util=0.99)),
        verdicts=(VerdictObs(B, 3.0, True), VerdictObs(A, 3.0, False)),
        services=(ServiceObs("telemetry", True, False, "stuck"), ServiceObs("web", True, True)),
        uplinks=(UplinkObs("wan", "plain", False, True, True), UplinkObs("lte", "plain", False, False, True)),
    )
    out = m.observe(snap)
    assert _ind(out, Signal.UNREACHABLE, node_element(C)).degree == 1.0
    assert _ind(out, Signal.CPU, node_element(A)).degree == 1.0
    assert _ind(out, Signal.FORWARDING, node_element(ME)).degree == 1.0
    assert _ind(out, Signal.VERDICT, node_element(A)).degree == mon.VERDICT_DEGREE_OBSERVED
    keys = _keys(out.active)
    assert (SymptomKind.NODE_UNREACHABLE, node_element(C)) in keys
    assert (SymptomKind.ANOMALY, node_element(B)) in keys and (SymptomKind.ANOMALY, node_element(A)) not in keys
    out = m.observe(Snapshot(30.0, snap.routing, metrics=snap.metrics, verdicts=snap.verdicts, services=snap.services,
                             uplinks=snap.uplinks))
    keys = _keys(out.active)
    assert (SymptomKind.OVERLOAD, node_element(ME)) in keys and (SymptomKind.OVERLOAD, node_element(A)) not in keys
    assert (SymptomKind.SELF_FORWARDING, node_element(ME)) in keys
    service = next(e for k, e in keys if k is SymptomKind.SERVICE_UNHEALTHY)
    assert service.kind is ElementKind.SERVICE and service.id == "telemetry"
    uplinks = [e.id for k, e in keys if k is SymptomKind.UPLINK_BLOCKED]
    assert uplinks == ["wan"]  # the lte uplink's whole network is down: not a blocking


def test_an_interface_that_had_neighbours_and_lost_them_all_is_silent():
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond()))
    quiet = RoutingObs(ME, (), (), (), (), (InterfaceObs(f"e{A[:2]}", True), InterfaceObs("never", True)))
    out = m.observe(Snapshot(5.0, quiet))
    assert not out.active  # the links' down is pending
    out = m.observe(Snapshot(8.0, quiet))
    assert {k for k, _ in _keys(out.active)} == {SymptomKind.LINK_DOWN}  # both links
    out = m.observe(Snapshot(5.0 + mon.IFACE_SILENT_S, quiet))
    silent = {e.id for k, e in _keys(out.active) if k is SymptomKind.INTERFACE_SILENT}
    assert silent == {f"e{A[:2]}"}  # "never" had no neighbour to lose


def test_remembered_links_and_bounded_tracking(monkeypatch):
    m = Monitor(ME)
    out = m.observe(Snapshot(0.0, diamond()))
    assert C in out.adjacency[A]
    out = m.observe(Snapshot(10.0, RoutingObs(ME)))
    assert C in out.adjacency[A]  # a vanished link is still known
    out = m.observe(Snapshot(10.0 + mon.TOPOLOGY_MEMORY_S + 1, RoutingObs(ME)))
    assert A not in out.adjacency
    monkeypatch.setattr(mon, "MAX_TRACKED", 3)
    small = Monitor(ME)
    small.observe(Snapshot(0.0, diamond(), probes=tuple(ProbeObs(A, f"{i:08x}", 16, 0, 1.0) for i in range(10))))
    assert small.overflow > 0 and len(small._rtt) <= 3


def test_hello_loss_is_carried_across_the_sessions_of_a_flapping_lossy_link():
    """The core restarts a session's loss EWMA at 0 each time a lossy link times its neighbour out; the
    monitor corrects a session's EWMA for that start and a fresh session reads the link's last value."""
    from tests.unit.healing_views import ME, A, diamond
    from x0node.healing import monitor as mon
    from x0node.healing.monitor import Monitor, Signal
    from x0node.healing.observation import RoutingObs, Snapshot

    def view(ewma, up_for):
        base = diamond()
        n0 = base.neighbours[0].__class__(**{**base.neighbours[0].__dict__, "loss": ewma, "up_for_s": up_for})
        return RoutingObs(ME, (n0,) + base.neighbours[1:], base.routes, base.nodes, base.edges, base.interfaces)

    def hello_loss(out):
        return next(i for i in out.indicators if i.signal is Signal.HELLO_LOSS and A in i.path)

    m = Monitor(ME)
    k = 30  # hellos into a session on a 20 % lossy link: the EWMA has only warmed up to a fraction
    ewma = 0.2 * (1 - mon.LOSS_EWMA_KEEP**k)
    warm = hello_loss(m.observe(Snapshot(10.0, view(ewma, k * mon.HELLO_INTERVAL_S))))
    assert abs(warm.value - 0.2) < 1e-6 and warm.degree == 1.0
    fresh = hello_loss(m.observe(Snapshot(11.0, view(0.0, 0.3))))  # timed out and back: a new session
    assert fresh.value == warm.value
    later = hello_loss(m.observe(Snapshot(11.0 + mon.LOSS_MEMORY_S + 1, view(0.0, 0.3))))
    assert later.value == 0.0
    # a long healthy session is left as the core reports it
    steady = hello_loss(Monitor(ME).observe(Snapshot(10.0, view(0.01, 600.0))))
    assert abs(steady.value - 0.01) < 1e-4


def test_the_loss_correction_uses_the_routing_cores_hello_constants():
    from x0node.healing import monitor as mon
    from x0node.proto import protocol

    assert mon.HELLO_INTERVAL_S == protocol.HELLO_INTERVAL_S
    assert mon.LOSS_EWMA_KEEP == 1.0 - 1.0 / protocol.LOSS_EWMA_PACKETS


def test_a_loss_that_began_a_few_probes_ago_counts_before_it_fills_the_window():
    from x0node.healing.monitor import loss_bound, wilson_lower

    flags = (False,) * 24 + (True, False, True, True, False, True, False, True)  # 5 of the last 8
    p = ProbeObs(A, ME, len(flags), sum(flags), 5.0, flags)
    assert loss_bound(p) == wilson_lower(5, 8) > wilson_lower(5, 32)
    quiet = ProbeObs(A, ME, 32, 1, 5.0, (False,) * 31 + (True,))
    assert loss_bound(quiet) < mon.PROBE_EXCESS_NORMAL  # one unlucky probe says nothing
    assert loss_bound(ProbeObs(A, ME, 32, 5, 5.0)) == wilson_lower(5, 32)  # outcomes unknown: the window


def test_a_neighbour_that_vanished_is_a_link_down_until_it_is_back_or_forgotten():
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond()))
    only_b = RoutingObs(ME, diamond().neighbours[1:], (), diamond().nodes, diamond().edges)
    out = m.observe(Snapshot(1.0, only_b))  # the core forgot a at once
    assert not out.raised  # a flapping link's down phase is shorter than the raise time
    out = m.observe(Snapshot(1.0 + mon.RULES[SymptomKind.LINK_DOWN].raise_after_s, only_b))
    assert [(k, e) for k, e in _keys(out.raised)] == [(SymptomKind.LINK_DOWN, link_element(ME, A))]
    down = _ind(out, Signal.LINK_DOWN, link_element(ME, A))
    assert down.degree == 1.0 and down.detail == f"e{A[:2]}"
    assert _ind(out, Signal.LINK_DOWN, link_element(ME, B)).degree == 0.0
    out = m.observe(Snapshot(5.0, diamond()))  # back: the degree falls at once, the symptom clears later
    assert _ind(out, Signal.LINK_DOWN, link_element(ME, A)).degree == 0.0
    out = m.observe(Snapshot(5.0 + mon.RULES[SymptomKind.LINK_DOWN].clear_after_s, diamond()))
    assert (SymptomKind.LINK_DOWN, link_element(ME, A)) in _keys(out.cleared)
    m.observe(Snapshot(12.0, only_b))
    out = m.observe(Snapshot(12.0 + mon.LINK_DOWN_MEMORY_S + 1.0, only_b))
    assert all(i.element != link_element(ME, A) for i in out.indicators if i.signal is Signal.LINK_DOWN)


def test_a_pending_symptom_says_when_it_is_due():
    m = Monitor(ME)
    assert m.next_raise_s() is None
    m.observe(Snapshot(10.0, diamond(loss_a=0.5)))  # link loss above enter: pending, raised after 1 s
    assert m.next_raise_s() == 10.0 + mon.RULES[SymptomKind.LINK_LOSS].raise_after_s
    out = m.observe(Snapshot(m.next_raise_s(), diamond(loss_a=0.5)))
    assert (SymptomKind.LINK_LOSS, link_element(ME, A)) in _keys(out.raised) and m.next_raise_s() is None


def test_a_node_that_says_it_is_sick_is_evidence_not_a_symptom_and_settle_clears_a_symptom():
    import dataclasses

    from x0node.healing.observation import Snapshot

    base = diamond(loss_a=0.5)
    nodes = tuple(dataclasses.replace(n, sick=n.node_id == A) for n in base.nodes)
    routing = dataclasses.replace(base, nodes=nodes)
    m = mon.Monitor(ME)
    out = None
    for t in range(0, 4):
        out = m.observe(Snapshot(float(t), routing))
    sick = [i for i in out.indicators if i.signal is mon.Signal.SICK]
    assert [(i.element, i.degree) for i in sick] == [(mon.node_element(A), 1.0)]
    assert {s.kind for s in out.active} == {mon.SymptomKind.LINK_LOSS}  # no symptom of its own
    key = out.active[0].key
    m.settle([key], 4.0)
    out = m.observe(Snapshot(4.5, routing))
    assert out.active == ()  # settled: the loss must stay for raise_after_s again
    out = m.observe(Snapshot(5.6, routing))
    assert [s.key for s in out.active] == [key]


def test_a_link_loss_that_just_began_is_not_read_as_the_neighbours_forwarding_loss():
    """Our link to a began losing 12 probes ago, both ways: the link and loop probes lose alike in their
    tails. The loop probes' recent bound is compared with the link probes' recent loss, not with their
    whole window diluted by the outcomes before the loss; a's forwarding stays clean. A loss of the
    loop probes alone (a black hole at a) still shows."""
    def probes(loop_lost_tail: tuple[bool, ...], link_lost_tail: tuple[bool, ...]):
        link = (False,) * 20 + link_lost_tail
        loop = (False,) * 20 + loop_lost_tail
        return (ProbeObs(A, A, len(link), sum(link), 1.0, link), ProbeObs(A, ME, len(loop), sum(loop), 2.0, loop))

    tail_link = (True, False, False, True, True, False, True, False, True, True, False, True)  # 5 of the last 8
    tail_loop = (False, True, False, False, True, True, False, True, True, True, False, True)  # 6 of the last 8
    m = Monitor(ME)
    out = m.observe(Snapshot(10.0, diamond(), probes=probes(tail_loop, tail_link)))
    assert _ind(out, Signal.PROBE_VIA, node_element(A)).degree < mon.ABNORMAL_DEGREE
    black_hole = m.observe(Snapshot(11.0, diamond(), probes=probes(tail_loop, (False,) * 12)))
    assert _ind(black_hole, Signal.PROBE_VIA, node_element(A)).degree >= mon.ABNORMAL_DEGREE


def test_flaps_that_are_over_are_counted_but_not_abnormal_and_a_gone_neighbour_keeps_its_timeout_share():
    """A link that flapped and has had no transition for FLAP_QUIET_S reads a flap degree of 0 (its
    two-minute count still says how many); while the neighbour is gone from the view the share of its
    downs that were hello timeouts is the one last measured."""
    from dataclasses import replace

    link = link_element(ME, A)
    m = Monitor(ME)
    m.observe(Snapshot(0.0, diamond(transitions_a=0, timeouts_a=0)))
    out = m.observe(Snapshot(5.0, diamond(transitions_a=4, timeouts_a=2)))
    assert _ind(out, Signal.FLAP, link).degree > 0.5 and _ind(out, Signal.HELLO_TIMEOUT, link).degree == 1.0
    gone = diamond(transitions_a=4, timeouts_a=2)
    gone = replace(gone, neighbours=gone.neighbours[1:])
    out = m.observe(Snapshot(6.0, gone))  # down once more (a timeout, as the last ones)
    assert _ind(out, Signal.FLAP, link).value == 5 and _ind(out, Signal.HELLO_TIMEOUT, link).degree == 1.0
    m.observe(Snapshot(7.0, diamond(transitions_a=6, timeouts_a=3)))
    out = m.observe(Snapshot(7.0 + mon.FLAP_QUIET_S + 0.5, diamond(transitions_a=6, timeouts_a=3)))
    flap = _ind(out, Signal.FLAP, link)
    assert flap.value == 6 and flap.degree == 0.0
    assert all(i.signal is not Signal.HELLO_TIMEOUT for i in out.indicators)
    carrier = Monitor(ME)  # a carrier flap: its share is 0, and 0 while the neighbour is gone
    carrier.observe(Snapshot(0.0, diamond(transitions_a=0, timeouts_a=0)))
    carrier.observe(Snapshot(3.0, diamond(transitions_a=2, timeouts_a=0)))
    out = carrier.observe(Snapshot(4.0, gone))
    assert _ind(out, Signal.HELLO_TIMEOUT, link).degree == 0.0


def test_a_link_probes_recent_rtt_raises_the_links_delay_before_the_hello_rtt_does():
    """Hello RTT is the routing core's smoothed figure; a link probe's recent RTT (kernel-timed) shows a
    queue within a second. The link's delay is the larger of the two, each against its own baseline."""
    link = link_element(ME, A)
    m = Monitor(ME)
    for t in range(5):
        m.observe(Snapshot(float(t), diamond(), probes=(ProbeObs(A, A, 16, 0, 1.0, (), 1.0),)))
    out = m.observe(Snapshot(5.0, diamond(), probes=(ProbeObs(A, A, 16, 0, 1.0, (), 120.0),)))
    rtt = _ind(out, Signal.HELLO_RTT, link)
    assert rtt.degree == 1.0 and rtt.value == pytest.approx(120.0)
    out = m.observe(Snapshot(6.0, diamond(), probes=(ProbeObs(A, A, 16, 0, 1.0, (), 1.2),)))
    assert _ind(out, Signal.HELLO_RTT, link).degree == 0.0  # 0.2 ms more is no delay


def test_a_gone_neighbour_keeps_its_last_hello_rtt_for_a_while():
    """A queue that timed the neighbour out was slow before it did; a random loss was not. While the
    neighbour is gone its last hello RTT reading stays in view for RTT_MEMORY_S (analysis tells the two
    apart by it), then goes."""
    def run(slow_ms):
        m = Monitor(ME)
        for t in range(5):
            m.observe(Snapshot(float(t), diamond(rtt_a=2.0)))
        m.observe(Snapshot(6.0, diamond(rtt_a=slow_ms)))
        base = diamond()
        gone = RoutingObs(ME, base.neighbours[1:], base.routes, base.nodes, base.edges, base.interfaces)
        during = m.observe(Snapshot(7.0, gone))
        after = m.observe(Snapshot(7.0 + mon.RTT_MEMORY_S + 1.0, gone))
        def rtt(out):
            return next((i for i in out.indicators if i.signal is Signal.HELLO_RTT and i.element == link_element(ME, A)),
                        None)
        return rtt(during), rtt(after)

    during, after = run(slow_ms=80.0)
    assert during is not None and during.degree == 1.0 and after is None
    during, _ = run(slow_ms=2.0)
    assert during is not None and during.degree == 0.0


def test_the_way_back_reads_a_drain_both_ways_as_the_routing_core_does():
    from x0node.healing.monitor import DRAINED_COST, return_paths
    from x0node.healing.observation import EdgeObs
    from x0node.proto.commands import LINK_COST_MAX_USABLE

    assert DRAINED_COST == LINK_COST_MAX_USABLE
    base = diamond()
    # c's cheapest way back is over a (c-a-me); a drained its link to c (c's own cost stays low)
    edges = (EdgeObs(ME, A, 10), EdgeObs(ME, B, 10), EdgeObs(A, C, DRAINED_COST, 5), EdgeObs(B, C, 10))
    routing = RoutingObs(ME, base.neighbours, base.routes, base.nodes, edges, base.interfaces)
    assert return_paths(routing, [C]) == {C: (B,)}
