"""Probe train sizing, rate arithmetic and the estimator's smoothing (x0node/proto/throughput.py)."""

import random

import pytest

from x0node.proto.identity import Identity
from x0node.proto.neighbour import Neighbour, NeighbourState
from x0node.proto.protocol import (
    IPV6_UDP_HEADER_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_LINK_THROUGHPUT_KBPS,
    PROBE_IDLE_BUDGET_BPS,
    PROBE_MAX_BUDGET_BPS,
    PROBE_MIN_PAYLOAD_BYTES,
    PROBE_TARGET_GAP_S,
    PROBE_TRAFFIC_FRACTION,
)
from x0node.proto.router import Router
from x0node.proto.throughput import measured_rate_kbps, tail_payload, train_cost, wire_bytes
from x0node.proto.trust import TrustStore


def test_tail_is_sized_for_the_target_gap_within_bounds():
    assert tail_payload(None, 14) == MAX_DATAGRAM_BYTES  # nothing known: full size
    got = tail_payload(10e6, 14)
    assert wire_bytes(got, 14) * 8 / 10e6 == pytest.approx(PROBE_TARGET_GAP_S, abs=1e-6)
    assert tail_payload(0.1e6, 14) == PROBE_MIN_PAYLOAD_BYTES
    assert tail_payload(1e9, 0) == MAX_DATAGRAM_BYTES
    # with the head, the smallest tail still empties a one-frame (1514 B) token bucket
    assert wire_bytes(MAX_DATAGRAM_BYTES, 14) + wire_bytes(PROBE_MIN_PAYLOAD_BYTES, 14) >= 1514


def test_rate_counts_the_headers_and_stays_within_the_wire_bounds():
    frame = MAX_DATAGRAM_BYTES + IPV6_UDP_HEADER_BYTES + 14
    assert measured_rate_kbps(MAX_DATAGRAM_BYTES, 14, frame * 8 / 10e6) == 10_000
    assert measured_rate_kbps(MAX_DATAGRAM_BYTES, 14, 0.0) <= MAX_LINK_THROUGHPUT_KBPS  # one receive batch
    assert measured_rate_kbps(200, 0, 1e6) == 1  # never 0: the wire's minimum
    assert train_cost(200, 14) == sum(wire_bytes(s, 14) for s in (MAX_DATAGRAM_BYTES, 200, 200, 20))


def _router_with_neighbour() -> tuple[Router, Neighbour]:
    r = Router(Identity.from_seed(b"\x01" * 32), TrustStore([]), None, random.Random(1), 0.0)
    r.add_interface("m0", 0.0, link_header_bytes=14)
    n = Neighbour("m0", b"\x02" * 16, b"\x00" * 32, "fe80::2", 1, b"k" * 32, 0.1, 0.0, NeighbourState.UP)
    r.hello.nbrs[("m0", n.node_id)] = n
    r.hello.by_addr[("m0", n.address)] = n.node_id
    n.refresh_advertised(0.0, force=True)
    return r, n


def test_estimate_is_the_median_first_used_after_three_samples_and_one_outlier_never_moves_it():
    r, n = _router_with_neighbour()
    for i, bps in enumerate((10e6, 30e6)):
        r.probing.sample(n, bps, float(i))
        assert n.throughput_bps is None  # learning
    r.probing.sample(n, 11e6, 2.0)
    assert (n.throughput_bps, n.throughput_source) == (11e6, "probe")
    assert n.adv_quality.name == "FAIR"  # first known: taken as measured, no band
    r.probing.sample(n, 10.5e6, 3.0)
    r.probing.sample(n, 1e6, 4.0)  # an outlier asks for two confirming trains ...
    assert n.probe.fast == 2 and n.throughput_bps == 11e6
    r.probing.sample(n, 10.8e6, 4.3)
    r.probing.sample(n, 11.2e6, 4.6)  # ... which dismiss it
    assert n.throughput_bps == 11e6
    for t in (5.0, 5.3, 5.6):  # a real change moves the median after three trains
        r.probing.sample(n, 2e6, t)
    assert n.throughput_bps == 2e6


def test_a_change_is_taken_whole_after_three_samples_on_one_side_and_confirmed_with_full_size_tails():
    r, n = _router_with_neighbour()
    for t in range(5):
        r.probing.sample(n, 2e6, float(t))
    assert r.probing._tail(n) == PROBE_MIN_PAYLOAD_BYTES  # sized for 2 Mbit/s
    r.probing.sample(n, 30e6, 5.0)  # the small tail showed the sender's spacing, not the link
    assert n.probe.fast == 2 and n.throughput_bps == 2e6
    assert r.probing._tail(n) == MAX_DATAGRAM_BYTES  # confirming: full size
    r.probing.sample(n, 2.5e6, 5.3)  # back in the band: dismissed
    assert not n.probe.change and r.probing._tail(n) < MAX_DATAGRAM_BYTES
    for t, bps in ((6.0, 40e6), (6.3, 0.5e6), (6.6, 40e6), (6.9, 0.5e6)):  # either side by turns: never
        r.probing.sample(n, bps, t)
        assert n.throughput_bps == 2e6 and len(n.probe.change) == 1
    for t, bps in ((7.0, 30e6), (7.3, 100e6), (7.6, 98e6)):  # one side three times: the link changed
        r.probing.sample(n, bps, t)
    assert n.throughput_bps == 98e6  # their median at once, not a step through the old samples
    assert list(n.probe.samples) == [30e6, 100e6, 98e6] and not n.probe.change


def test_published_throughput_moves_only_beyond_the_publish_fraction():
    r, n = _router_with_neighbour()
    for t in range(3):
        r.probing.sample(n, 50e6, float(t))
    for t, bps in enumerate((52e6, 53e6, 54e6, 53e6), start=3):
        r.probing.sample(n, bps, float(t))
    assert n.throughput_bps == 50e6  # the median moved by 6 %: kept
    for t, bps in enumerate((60e6, 61e6, 62e6), start=7):
        r.probing.sample(n, bps, float(t))
    assert n.throughput_bps == 60e6


def test_budget_follows_the_traffic_that_is_not_ours():
    r, _n = _router_with_neighbour()
    assert r.probing.budget_bps("m0", 0.0) == PROBE_IDLE_BUDGET_BPS
    r.note_tx_bytes("m0", 1_000_000, 1.0)
    r.note_tx_bytes("m0", 1_100_000, 2.0)
    assert r.probing.budget_bps("m0", 2.0) == pytest.approx(PROBE_TRAFFIC_FRACTION * 100_000)
    r.out.send("m0", None, bytes(1000))  # our own datagram is not traffic
    r.note_tx_bytes("m0", 1_101_062, 3.0)
    assert r.probing.budget_bps("m0", 3.0) == PROBE_IDLE_BUDGET_BPS
    r.note_tx_bytes("m0", 100_000_000_000, 4.0)
    assert r.probing.budget_bps("m0", 4.0) == PROBE_MAX_BUDGET_BPS
    assert r.probing.budget_bps("m0", 60.0) == PROBE_IDLE_BUDGET_BPS  # the adapter stopped telling
    r.note_tx_bytes("m0", 5, 61.0)  # a counter reset is not negative traffic
    assert r.probing.budget_bps("m0", 61.0) == PROBE_IDLE_BUDGET_BPS


def test_set_throughput_refuses_nonsense_and_unknown_neighbours():
    r, n = _router_with_neighbour()
    for bps in (0.0, -1.0, float("nan"), MAX_LINK_THROUGHPUT_KBPS * 1000.0 * 2):
        r.set_throughput("m0", n.node_id, bps, 1.0)
    r.set_throughput("m0", b"\x09" * 16, 1e9, 1.0)
    assert n.throughput_bps is None
    r.set_throughput("m0", n.node_id.hex(), 1e9, 1.0)
    assert (n.throughput_bps, n.throughput_source) == (1e9, "kernel")


def test_the_first_throughput_known_sets_the_class_without_the_band():
    r, n = _router_with_neighbour()
    assert n.adv_quality.name == "EXCELLENT"  # loss and RTT alone
    for t in range(3):
        r.probing.sample(n, 0.9e6, float(t))
    assert n.adv_quality.name == "BAD"  # the band would have kept POOR (0.9 / 0.8 > 1 Mbit/s)
