"""Throughput on real daemons over tbf-shaped veths: each link's estimate and class, the faster of two
equal-hop paths carrying the traffic, and a link throttled at run time changing class and route.

The veths are shaped with the fault lab's `congest` (tbf on both ends) with a one-frame bucket, so
each link serialises every packet at its rate as a real link of that rate does; an unshaped veth moves
many Gbit/s. Rates sit inside the seed's classes (a rate on a boundary, exactly 10 Mbit/s, may land on
either side of it). Timing is only bounded generously here; bench/throughput.py measures it.
"""

from __future__ import annotations

import time

import pytest

from x0lab.testbed import measure
from x0lab.testbed.bed import Testbed
from x0lab.testbed.faults import ONE_FRAME_BURST_BYTES
from x0node.proto.quality import classify

CONVERGE_TIMEOUT_S = 30.0
ESTIMATE_TIMEOUT_S = 30.0
RECLASS_BOUND_S = 30.0  # goal 10 s (bench/throughput.py); generous here, the machine is shared
TOLERANCE = 0.25


def _wait(what, cond, timeout_s: float, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(poll_s)


def _seed_class(bps: float) -> str:
    return classify(0.0, 0.0, bps).name.lower()


def _shaped(run_dir, topology: str, rates: dict[tuple[int, int], float]) -> Testbed:
    """A testbed whose links are shaped before the daemons start (they measure them as they come up)."""
    bed = Testbed.create(run_dir, topology, "x0node")
    try:
        for (a, b), rate in rates.items():
            bed.fault("congest", a, b, rate=int(rate), burst=ONE_FRAME_BURST_BYTES)
        bed.start_all()
    except BaseException:
        bed.down()
        raise
    return bed


@pytest.fixture
def star(tmp_path):
    bed = _shaped(tmp_path / "bed", "star:6", {(1, 2): 0.5e6, (1, 3): 4e6, (1, 4): 25e6, (1, 5): 70e6})
    try:
        yield bed
    finally:
        bed.down()


def test_each_shaped_link_lands_in_the_seeds_class_for_its_rate(star):
    rates = {2: 0.5e6, 3: 4e6, 4: 25e6, 5: 70e6, 6: None}  # BAD, POOR, FAIR, GOOD; n6 unshaped: EXCELLENT
    assert measure.wait_converged(star, CONVERGE_TIMEOUT_S) is not None

    def measured(a: int, b: int) -> dict | None:
        n = measure.neighbour_of(star, a, b)
        return n if n is not None and n["throughput_source"] == "probe" else None

    for leaf, rate in rates.items():
        for a, b in ((1, leaf), (leaf, 1)):
            n = _wait(f"n{a}'s estimate of its link to n{b}", lambda a=a, b=b: measured(a, b), ESTIMATE_TIMEOUT_S)
            if rate is None:  # EXCELLENT by its rate, unless a keepalive lost on this busy host counts
                assert n["throughput_bps"] > 125e6, n
                assert n["quality"] == "excellent" or (n["quality"] == "good" and n["loss"] > 0), n
            else:
                assert abs(n["throughput_bps"] - rate) <= TOLERANCE * rate, (rate, n)
                assert n["quality"] == _seed_class(rate), (rate, n)
                assert n["cost"] >= 100 * 100e6 / rate * 0.75, n  # the slower link costs more
    # advertised: the LSAs carry each link's throughput and class, the node manager counts them
    topo = measure.node_status(star, 1)

    def advertised():
        st = measure.node_status(star, 3)
        hist = st["mesh"]["quality_histogram"]  # the unshaped link: excellent (good if it lost a keepalive)
        ok = hist["bad"] == hist["poor"] == hist["fair"] == 1 and hist["excellent"] + hist["good"] == 2
        return st if ok and hist["good"] >= 1 else None

    st = _wait("every link's class in the LSAs", advertised, ESTIMATE_TIMEOUT_S)
    assert st["mesh"]["nodes"] == 5 and st["mesh"]["links"] == 5 and st["mesh"]["max_hops"] == 2
    assert topo["counters"]["probe_reports_received"] >= 3 * len(rates)


def test_traffic_takes_the_faster_path_and_follows_a_throttle(tmp_path):
    """ring:4 = two equal-hop paths n1-n2-n3 and n1-n4-n3 (veths of equal delay), one 10x faster."""
    bed = _shaped(tmp_path / "bed", "ring:4", {(1, 2): 50e6, (2, 3): 50e6, (1, 4): 5e6, (3, 4): 5e6})
    try:
        n1, n3 = bed.nodes[1], bed.nodes[3]
        fast, slow = n1.ifaces[2], n1.ifaces[4]
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None

        def learnt() -> bool:  # until both ends of both paths know their rates, the costs are still moving
            nbrs = [measure.neighbour_of(bed, a, b) for a, b in ((1, 2), (1, 4), (3, 2), (3, 4))]
            return all(n is not None and n.get("throughput_bps") for n in nbrs)

        _wait("the throughput of both paths learnt at n1 and n3", learnt, ESTIMATE_TIMEOUT_S)
        assert measure.wait_route_dev(bed, 1, n3.mesh_addr, fast, ESTIMATE_TIMEOUT_S)
        assert measure.wait_route_dev(bed, 3, n1.mesh_addr, bed.nodes[3].ifaces[2], ESTIMATE_TIMEOUT_S)
        # the pings really leave n1 by the fast path
        before = measure.tx_packets(bed, 1, fast), measure.tx_packets(bed, 1, slow)
        assert measure.ping_loss(bed, 1, n3.mesh_addr, count=200, interval_s=0.005) <= 0.02
        sent_fast = measure.tx_packets(bed, 1, fast) - before[0]
        sent_slow = measure.tx_packets(bed, 1, slow) - before[1]
        assert sent_fast - sent_slow >= 180, (sent_fast, sent_slow)  # both also carry keepalives and probes
        # throttle the fast path's first link while traffic flows: its class and the route follow
        # 50 Mbit/s sits on the GOOD/FAIR edge (GOOD needs more than 50 Mbit/s), so an estimate a little
        # under the shaped rate reads FAIR: before the throttle the link is anything but POOR
        assert measure.neighbour_of(bed, 1, 2)["quality"] in ("excellent", "good", "fair")
        pinger = measure.Pinger(n1.ns, n3.mesh_addr, size=500)
        try:
            bed.fault("congest", 1, 2, rate=2_000_000, burst=ONE_FRAME_BURST_BYTES)
            t0 = time.monotonic()
            _wait("n1's link to n2 re-classified", lambda: measure.neighbour_of(bed, 1, 2)["quality"] == "poor",
                  RECLASS_BOUND_S)
            reclass_s = time.monotonic() - t0
            assert measure.wait_route_dev(bed, 1, n3.mesh_addr, slow, RECLASS_BOUND_S)
        finally:
            pinger.stop()
        n = measure.neighbour_of(bed, 1, 2)
        assert abs(n["throughput_bps"] - 2e6) <= TOLERANCE * 2e6, n
        print(f"re-classified {reclass_s:.1f} s after the throttle")
    finally:
        bed.down()
