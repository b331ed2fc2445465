"""Chunk fetch planning: rarest first, no peer trusted, resume, uplink last, token bucket."""

from __future__ import annotations

import random

from x0node.ota import fetch


def test_fetches_everything_from_one_peer_one_at_a_time():
    f = fetch.Fetcher(5, set(), random.Random(1))
    f.set_peer("a", None)
    got = []
    now = 0.0
    while not f.done:
        reqs = f.next_requests(now)
        assert len(reqs) == 1
        got.append(reqs[0].index)
        f.completed("a", reqs[0].index, True, now)
    assert sorted(got) == list(range(5))


def test_resume_asks_only_for_missing_chunks():
    f = fetch.Fetcher(10, {0, 1, 2, 3, 4, 5, 6}, random.Random(2), total=10, per_peer=10)
    f.set_peer("a", None)
    assert sorted(r.index for r in f.next_requests(0.0)) == [7, 8, 9]


def test_rarest_first():
    f = fetch.Fetcher(3, set(), random.Random(3), per_peer=1, total=1)
    f.set_peer("a", frozenset({0, 1}))
    f.set_peer("b", frozenset({0, 1, 2}))
    f.set_peer("c", frozenset({0, 1}))
    reqs = f.next_requests(0.0)
    assert reqs and reqs[0].index == 2 and reqs[0].peer == "b"


def test_bad_chunks_ban_a_peer_and_others_take_over():
    f = fetch.Fetcher(2, set(), random.Random(4), per_peer=1, total=1)
    f.set_peer("liar", None)
    now = 0.0
    for _ in range(fetch.STRIKES_MAX):
        (r,) = f.next_requests(now)
        f.completed(r.peer, r.index, False, now)
    assert f.next_requests(now) == []
    assert f.counters["peers_banned"] == 1
    f.set_peer("honest", None)
    (r,) = f.next_requests(now)
    assert r.peer == "honest"


def test_failure_backs_off_then_retries():
    f = fetch.Fetcher(1, set(), random.Random(5))
    f.set_peer("a", None)
    (r,) = f.next_requests(0.0)
    f.failed("a", r.index, 0.0)
    assert f.next_requests(0.1) == []
    assert f.next_timer() is not None
    assert f.next_requests(f.next_timer() + 0.01)


def test_timeout_expires_a_request():
    f = fetch.Fetcher(1, set(), random.Random(6), timeout_s=5.0)
    f.set_peer("a", None)
    f.next_requests(0.0)
    assert f.tick(4.0) == []
    assert len(f.tick(5.0)) == 1
    assert f.counters["timeouts"] == 1


def test_uplink_only_for_what_the_mesh_lacks():
    f = fetch.Fetcher(4, set(), random.Random(7), per_peer=4, total=8)
    f.set_peer("up", None, tier=fetch.TIER_UPLINK)
    f.set_peer("n", frozenset({0, 1}))
    reqs = f.next_requests(0.0)
    by = {r.index: r.peer for r in reqs}
    assert by[0] == "n" and by[1] == "n" and by[2] == "up" and by[3] == "up"


def test_uplink_node_is_the_same_everywhere():
    assert fetch.uplink_node(["b", "a", "c"]) == "a"
    assert fetch.uplink_node([]) is None


def test_token_bucket():
    tb = fetch.TokenBucket(1000.0, 1000.0, 0.0)
    assert tb.delay(1000, 0.0) == 0.0
    assert abs(tb.delay(500, 0.0) - 0.5) < 1e-9
    assert tb.delay(100, 10.0) == 0.0


def test_far_nodes_only_for_what_neighbours_lack():
    f = fetch.Fetcher(2, set(), random.Random(8), per_peer=2, total=4)
    f.set_peer("far", None, tier=fetch.TIER_FAR)
    f.set_peer("nb", frozenset({0}))
    by = {r.index: r.peer for r in f.next_requests(0.0)}
    assert by == {0: "nb", 1: "far"}
