"""Throughput probing in the simulated mesh: links with a rate serialise their datagrams, so probe trains
measure that rate; class, cost, path choice, re-classification and the probe budget follow from it."""

import pytest

from tests.sim.mesh import SimMesh
from x0node.proto.protocol import (
    IPV6_UDP_HEADER_BYTES,
    MIN_COST_CHANGE_INTERVAL_S,
    PROBE_FAST_INTERVAL_S,
    PROBE_IDLE_BUDGET_BPS,
    PROBE_LEARN_SAMPLES,
    PROBE_MAX_INTERVAL_S,
    PROBE_TRAFFIC_FRACTION,
)
from x0node.proto.quality import Quality, classify


def _nbr(mesh: SimMesh, i: int, peer: int):
    pid = mesh.nodes[peer].router.identity.node_id.hex()
    return next(v for v in mesh.nodes[i].router.neighbours(mesh.now) if v.node_id == pid)


def _nbr_or_none(mesh: SimMesh, i: int, peer: int):
    pid = mesh.nodes[peer].router.identity.node_id.hex()
    return next((v for v in mesh.nodes[i].router.neighbours(mesh.now) if v.node_id == pid), None)


def _probe_bytes(mesh: SimMesh, i: int) -> int:
    c = mesh.nodes[i].router.out.counters
    return (c["probe_bytes_sent"] + c["probe_trains_sent"] * 3 * IPV6_UDP_HEADER_BYTES
            + c["probe_reports_sent"] * (20 + IPV6_UDP_HEADER_BYTES))


@pytest.mark.parametrize("rate_bps", [0.5e6, 3e6, 25e6, 70e6, 400e6])
def test_probed_throughput_matches_the_link_and_sets_its_class(rate_bps):
    mesh = SimMesh(2, seed=3)
    mesh.connect(0, 1, rate_bps=rate_bps)
    mesh.run_for(3.0)
    for a, b in ((0, 1), (1, 0)):
        v = _nbr(mesh, a, b)
        assert v.throughput_source == "probe"
        assert v.throughput_bps == pytest.approx(rate_bps, rel=0.02)
        assert v.quality == classify(0.0, 0.0, rate_bps).name.lower()  # RTT and loss are excellent here


def test_traffic_takes_the_faster_of_two_equal_hop_paths():
    """0-1-3 and 0-2-3: same hop count and latency; one path 10x the rate of the other."""
    for fast, slow in ((1, 2), (2, 1)):
        mesh = SimMesh(4, seed=5)
        for x in (0, 3):
            mesh.connect(x, fast, latency_s=0.001, rate_bps=100e6)
            mesh.connect(x, slow, latency_s=0.001, rate_bps=10e6)
        mesh.run_for(4.0)
        assert mesh.mesh_route(0, 3) == [0, fast, 3]
        assert mesh.mesh_route(3, 0) == [3, fast, 0]
        assert _nbr(mesh, 0, slow).cost > 5 * _nbr(mesh, 0, fast).cost


def test_a_throttled_link_moves_class_soon_when_it_carries_traffic_and_within_the_idle_interval_when_not():
    for busy in (True, False):
        mesh = SimMesh(2, seed=7)
        link = mesh.connect(0, 1, rate_bps=100e6)
        mesh.run_for(3.0)
        assert _nbr(mesh, 0, 1).quality in ("excellent", "good")
        counter = 0
        link.rate_bps = 0.5e6  # well inside BAD (the class band keeps a link at exactly 1 Mbit/s POOR)
        t0 = mesh.now
        while _nbr(mesh, 0, 1).quality != "bad":
            assert mesh.now - t0 < (10.0 if busy else 1.25 * PROBE_MAX_INTERVAL_S + 5), busy
            if busy:  # 60 kB/s of someone's traffic on the interface, as the adapter would report it
                counter += 60_000
                r = mesh.nodes[0].router
                r.note_tx_bytes("m0", counter + r.out.wire_bytes_sent("m0", IPV6_UDP_HEADER_BYTES), mesh.now)
            mesh.run_for(1.0)
        assert _nbr(mesh, 0, 1).throughput_bps == pytest.approx(0.5e6, rel=0.02)
        assert classify(0.0, 0.0, 0.5e6) is Quality.BAD


RECLASS_GOAL_S = 10.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rate_change_under_traffic_is_reclassified_within_the_bound(seed):
    """100 -> 2 -> 100 -> 2 Mbit/s with 56 kB/s of traffic on the interface (the bench's 440 kbit/s ping
    stream) and a sender that needs 80 us per datagram: each change reaches the class within the next
    steady train (+25 % jitter), its two confirming trains and one cost-change interval, and within the
    goal of 10 s; the class never stops at the wrong one on the way."""
    mesh = SimMesh(2, seed=seed)
    link = mesh.connect(0, 1, rate_bps=100e6)
    link.send_gap_s = 80e-6
    r = mesh.nodes[0].router
    counter, noted = 0, -1.0

    def step(dt: float) -> None:
        nonlocal counter, noted
        end = mesh.now + dt
        while mesh.now < end - 1e-9:
            if mesh.now - noted >= 1.0:  # the adapter reads the transmit counter every second
                counter += 56_000
                noted = mesh.now
                r.note_tx_bytes("m0", counter + r.out.wire_bytes_sent("m0", IPV6_UDP_HEADER_BYTES), mesh.now)
            mesh.run_for(0.05)

    step(20.0)
    n = r.hello.nbrs[("m0", mesh.nodes[1].router.identity.node_id)]
    for rate, want in ((2e6, {"poor"}), (100e6, {"good", "excellent"}), (2e6, {"poor"}), (100e6, {"good", "excellent"})):
        steady = r.probing.steady_interval_s(n, mesh.now)
        bound = 1.25 * steady + (PROBE_LEARN_SAMPLES - 1) * (PROBE_FAST_INTERVAL_S + 0.1) + MIN_COST_CHANGE_INTERVAL_S
        link.rate_bps, t0, seen = rate, mesh.now, set()
        while (q := _nbr(mesh, 0, 1).quality) not in want:
            seen.add(q)
            assert mesh.now - t0 <= min(bound, RECLASS_GOAL_S), (rate, seen, list(n.probe.samples))
            step(0.05)
        assert seen <= {"excellent", "good", "poor"}, seen  # no stop at fair on the way
        assert n.throughput_bps == pytest.approx(rate, rel=0.1)
        step(3.0)


def test_probe_budget_idle_and_busy():
    mesh = SimMesh(2, seed=9)
    mesh.connect(0, 1, rate_bps=50e6)
    mesh.run_for(5.0)  # learning done
    b0, t0 = _probe_bytes(mesh, 0), mesh.now
    mesh.run_for(1800.0)
    idle = (_probe_bytes(mesh, 0) - b0) / (mesh.now - t0)
    assert 0 < idle <= PROBE_IDLE_BUDGET_BPS
    # a busy interface: probes grow with the traffic, still a bounded fraction of it
    b0, t0 = _probe_bytes(mesh, 0), mesh.now
    counter, r = 0, mesh.nodes[0].router
    for _ in range(120):
        counter += 200_000
        r.note_tx_bytes("m0", counter + r.out.wire_bytes_sent("m0", IPV6_UDP_HEADER_BYTES), mesh.now)
        mesh.run_for(1.0)
    busy = (_probe_bytes(mesh, 0) - b0) / (mesh.now - t0)
    assert idle * 5 < busy <= PROBE_TRAFFIC_FRACTION * 200_000


def test_the_kernels_link_speed_stops_probes_until_it_is_no_longer_renewed():
    mesh = SimMesh(2, seed=11)
    mesh.connect(0, 1, rate_bps=20e6)
    r = mesh.nodes[0].router
    peer = mesh.nodes[1].router.identity.node_id
    mesh.run_for(0.3)
    for _ in range(20):  # the adapter renews it every second
        r.set_throughput("m0", peer, 1e9, mesh.now)
        mesh.run_for(1.0)
    v = _nbr(mesh, 0, 1)
    assert (v.throughput_bps, v.throughput_source, v.quality) == (1e9, "kernel", "excellent")
    sent = r.out.counters["probe_trains_sent"]
    assert sent <= 1  # at most one train left before the kernel's figure came
    mesh.run_for(15.0)  # no longer renewed: probes measure the link
    v = _nbr(mesh, 0, 1)
    assert v.throughput_source == "probe" and v.throughput_bps == pytest.approx(20e6, rel=0.02)
    assert r.out.counters["probe_trains_sent"] > sent


def test_a_neighbour_forgotten_on_one_side_is_measured_again_under_the_same_key():
    """Node 0 drops node 1 (as a missed keepalive or two do on a loaded host) while node 1 keeps it: the
    pairwise key stays, node 0's probe state starts afresh, and its new trains must still be newer
    than those node 1 saw, or node 1 refuses them as replays and node 0 never learns the link."""
    mesh = SimMesh(2, seed=13)
    mesh.connect(0, 1, rate_bps=20e6)
    mesh.run_for(400.0)  # a few steady trains: node 1 has seen train ids above 3
    r0, peer = mesh.nodes[0].router, mesh.nodes[1].router.identity.node_id
    assert mesh.nodes[1].router.hello.nbrs[("m0", r0.identity.node_id)].probe.rx_train > 3
    r0.hello.neighbour_gone(("m0", peer), mesh.now, "test")
    t0 = mesh.now
    while (v := _nbr_or_none(mesh, 0, 1)) is None or v.throughput_source != "probe":
        assert mesh.now - t0 < 40.0  # a full HELLO brings it back (<= 37.5 s), learning takes ~1 s
        mesh.run_for(0.5)
    assert v.throughput_bps == pytest.approx(20e6, rel=0.02)
