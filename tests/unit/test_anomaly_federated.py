"""Federated fine-tuning of the final layer (x0node/anomaly/federated.py): local steps, FedAvg, rounds, gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from x0node.anomaly import federated as F


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows where the shipped margin misses a fault that input 3 (rtt) shows: the head can learn it."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    margin = np.where(rng.random(n) < 0.5, 0.5, -0.5) * np.where(y == 1, 1, -1)  # half the faults missed
    own = np.zeros((n, 9))
    own[:, 3] = np.where(y == 1, 0.8, 0.1) + rng.normal(0, 0.02, n)
    agg = np.zeros((n, 25))
    return F.head_inputs(margin, own, agg), y, margin


def test_the_initial_head_is_the_shipped_detector():
    x, _, margin = _rows(200, 1)
    p = F.initial_params()
    assert np.allclose(F.logits(p, x), np.clip(margin, -F.MARGIN_CLIP, F.MARGIN_CLIP))
    assert F.head_inputs([math.nan], np.full((1, 9), math.inf), np.zeros((1, 25)))[0, 0] == 0.0
    assert F.head_inputs([math.nan], np.full((1, 9), math.inf), np.zeros((1, 25))).max() <= 1.0


def test_local_update_is_deterministic_bounded_and_learns():
    x, y, _ = _rows(6000, 2)
    base = F.initial_params()
    a = F.local_update(base, x, y, np.random.default_rng(5))
    b = F.local_update(base, x, y, np.random.default_rng(5))
    assert a == b and a.rows == F.MAX_LOCAL_ROWS
    assert np.linalg.norm(np.asarray(a.params) - base) <= F.MAX_UPDATE_NORM + 1e-9
    # many rounds from one client: the head finds the signal the shipped margin misses
    p = base
    for r in range(1, F.MAX_ROUNDS + 1):
        p = F.fedavg(p, [F.local_update(p, x, y, np.random.default_rng(r), r)])
    xh, yh, mh = _rows(400, 3)
    assert F.no_worse(p, xh, yh, mh)
    assert not F.no_worse(base - np.r_[np.zeros(F.WIDTH), 10.0], xh, yh, mh)  # never alarms: worse


def test_fedavg_weights_by_rows_clips_and_drops_bad_updates():
    base = np.zeros(F.N_PARAMS)
    far = np.zeros(F.N_PARAMS)
    far[1] = 100.0  # absurd: refused
    one = np.zeros(F.N_PARAMS)
    one[2] = 0.8
    two = np.zeros(F.N_PARAMS)
    two[2] = -0.4
    out = F.fedavg(base, [F.Update(1, tuple(one), 300), F.Update(1, tuple(two), 100),
                          F.Update(1, tuple(far), 10**6), F.Update(1, tuple(one), 0)])
    assert math.isclose(out[2], 0.8 * 0.75 - 0.4 * 0.25) and out[1] == 0.0
    big = np.zeros(F.N_PARAMS)
    big[3] = 10.0  # a peer's update larger than the bound is clipped by the receiver
    assert F.fedavg(base, [F.Update(1, tuple(big), 5)])[3] == F.MAX_UPDATE_NORM
    capped = F.fedavg(base, [F.Update(1, tuple(one), 10**9), F.Update(1, tuple(two), F.MAX_WEIGHT_ROWS)])
    assert math.isclose(capped[2], 0.2)
    assert (F.fedavg(base, []) == base).all()


def test_the_schedule_is_the_same_for_every_node_from_wall_time_alone():
    assert F.round_at(0.0, 60.0) == 0 and F.round_at(59.9, 60.0) == 0  # round 0 is no round
    assert F.round_at(60.0, 60.0) == 1 and F.round_at(119.999, 60.0) == 1 and F.round_at(120.0, 60.0) == 2
    assert F.round_at(1.8e9, 3600.0) == 500000
    for wall, r in ((math.nan, 60.0), (math.inf, 60.0), (-5.0, 60.0), (100.0, 0.0), (100.0, -1.0),
                    (100.0, math.nan), (1e300, 60.0)):
        assert F.round_at(wall, r) == 0


def test_offers_are_held_by_round_and_refused_with_a_reason():
    fed = F.Federation()
    p = tuple(F.initial_params())
    assert fed.begin(5) and not fed.begin(5) and not fed.begin(4) and fed.round == 5
    assert fed.offer(b"a", F.Update(5, p, 10), 100, 5) is None
    # a newer record of the same origin for the same round replaces the one held: not a refusal
    assert fed.offer(b"a", F.Update(5, p, 20), 101, 5) is None
    assert fed.pending[(5, b"a")].rows == 20 and fed.replaced == 1 and len(fed.pending) == 1
    # a sequence number is never accepted twice under one key, nor an older one; rounds only grow
    assert fed.offer(b"a", F.Update(5, p, 30), 101, 5) == "replay"
    assert fed.offer(b"a", F.Update(5, p, 30), 99, 5) == "replay"
    assert fed.offer(b"a", F.Update(6, p, 30), 102, 5) is None  # its next round is held beside it
    assert fed.offer(b"a", F.Update(5, p, 30), 103, 5) == "replay"
    assert fed.offer(b"b", F.Update(4, p, 10), 1, 5) == "stale"  # a past round
    assert fed.offer(b"b", F.Update(7, p, 10), 1, 5) == "early"  # beyond the next
    assert fed.offer(b"b", F.Update(7, p, 10), 1, 6) is None  # the schedule moved on: the next one
    assert fed.offer(b"c", F.Update(5, (math.nan,) + p[1:], 10), 1, 5) == "bad_params"
    assert fed.offer(b"c", F.Update(5, p[:-1], 10), 1, 5) == "bad_params"
    assert fed.offer(b"c", F.Update(0, p, 10), 1, 5) == "bad_params"
    assert fed.offer(b"c", F.Update(F.MAX_ROUND_NUMBER + 1, p, 10), 1, 5) == "bad_params"
    assert fed.offer(b"c", F.Update(5, p, 10), 0, 5) == "bad_params"  # sequence numbers start at 1
    assert fed.offer(b"c", F.Update(5, p, 10), True, 5) == "bad_params"
    assert fed.offer(b"c", F.Update(5, p, 0), 1, 5) == "no_rows"
    assert fed.peers_of(5) == [b"a"] and fed.peers_of(6) == [b"a"] and fed.peers_of(7) == [b"b"]
    x, y, m = _rows(100, 4)
    fed.close_round(None, x, y, m)  # round 5: a's newest update for it
    assert fed.closed_round == 5 and fed.rounds_closed == 1 and fed.peers_of(5) == []
    assert fed.offer(b"c", F.Update(5, p, 10), 1, 5) == "stale"  # closed already
    assert fed.begin(7)  # round 6 was not closed here: its updates are dropped and counted
    assert fed.peers_of(6) == [] and fed.peers_of(7) == [b"b"]
    assert fed.refused == {"bad_params": 6, "no_rows": 1, "replay": 3, "stale": 3, "early": 1, "round_full": 0,
                           "rounds_done": 0}
    for i in range(F.MAX_UPDATES_PER_ROUND):
        fed.offer(bytes([i + 1, 9]), F.Update(7, p, 1), 1, 7)
    assert len(fed.peers_of(7)) == F.MAX_UPDATES_PER_ROUND - 1 and fed.refused["round_full"] == 2
    for i in range(F.MAX_UPDATES_PER_ROUND):
        fed.offer(bytes([i + 1, 8]), F.Update(8, p, 1), 1, 7)
    assert len(fed.pending) == F.MAX_PENDING and fed.refused["round_full"] == 3
    fed.close_round(None, x, y, m)
    assert not fed.close_round(None, x, y, m)  # once per round
    r = 8
    while not fed.done:
        fed.begin(r)
        fed.close_round(fed.local(x, y, np.random.default_rng(r)), x, y, m)
        r += 1
    assert fed.rounds_closed == F.MAX_ROUNDS and not fed.close_round(None, x, y, m)
    assert fed.offer(b"z", F.Update(r, p, 1), 1, r) == "rounds_done"


def test_a_round_without_any_update_is_not_counted():
    fed = F.Federation()
    x, y, m = _rows(100, 5)
    fed.begin(3)
    assert not fed.close_round(None, x, y, m) and fed.closed_round == 3 and fed.rounds_closed == 0
    assert (fed.params == F.initial_params()).all()


def test_the_origins_remembered_are_bounded():
    fed = F.Federation()
    p = tuple(F.initial_params())
    fed.last = {i.to_bytes(4, "big"): (1, 1) for i in range(F.MAX_ORIGINS)}
    fed.begin(2)
    assert fed.offer(b"new", F.Update(2, p, 1), 1, 2) == "round_full"
    assert fed.offer((5).to_bytes(4, "big"), F.Update(2, p, 1), 2, 2) is None  # a known origin still counts


def test_the_gate_keeps_the_shipped_detector_unless_no_worse():
    fed = F.Federation()
    x, y, m = _rows(3000, 6)
    xh, yh, mh = _rows(300, 7)
    assert not F.no_worse(F.initial_params(), xh[:10], yh[:10], mh[:10])  # too few rows to judge
    assert not F.no_worse(F.initial_params(), xh, np.zeros_like(yh), mh)  # no fault to judge by
    rng = np.random.default_rng(0)
    for r in range(1, F.MAX_ROUNDS + 1):
        fed.begin(r)
        fed.close_round(fed.local(x, y, rng), xh, yh, mh)
    assert fed.in_use is not None and fed.accepted_rounds >= 1
    bad = F.Federation()
    flipped = 1 - y  # a poisoned client: labels inverted
    for r in range(1, 4):
        bad.begin(r)
        bad.close_round(bad.local(x, flipped, rng), xh, yh, mh)
    assert bad.in_use is None


def test_holdout_split_keeps_the_newest_quarter():
    tr, ho = F.holdout_split(10)
    assert tr.tolist() == list(range(8)) and ho.tolist() == [8, 9]


def test_state_round_trips_and_an_update_taken_stays_refused_after_a_restart():
    fed = F.Federation()
    p = tuple(F.initial_params())
    fed.begin(7)
    assert fed.offer(b"peer", F.Update(7, p, 10), 40, 7) is None
    x, y, m = _rows(100, 8)
    fed.close_round(None, x, y, m)
    fed.begin(8)
    assert fed.offer(b"peer", F.Update(8, p, 12), 41, 8) is None  # held for the round in progress
    back = F.Federation.from_dict(json.loads(json.dumps(fed.to_dict())))
    assert (back.round, back.closed_round, back.rounds_closed) == (8, 7, 1)
    assert back.last == {b"peer": (8, 41)} and np.array_equal(back.params, fed.params)
    assert back.pending == fed.pending
    assert back.offer(b"peer", F.Update(8, p, 12), 41, 8) == "replay"
    good = fed.to_dict()
    for bad in (None, {**good, "round": -1}, {**good, "round": True}, {**good, "round": F.MAX_ROUND_NUMBER + 1},
                {**good, "closed_round": 9}, {**good, "rounds_closed": F.MAX_ROUNDS + 1},
                {**good, "accepted_rounds": 2},
                {**good, "params": [math.nan] * F.N_PARAMS}, {**good, "params": [0.0] * 3},
                {**good, "in_use": ["x"] * F.N_PARAMS}, {**good, "last": {"zz": [1, 1]}},
                {**good, "last": {"ab": [0, 1]}}, {**good, "last": {"ab": [1, 0]}}, {**good, "last": {"ab": 1}},
                {**good, "last": []}, {**good, "last": {f"{i:04x}": [1, 1] for i in range(F.MAX_ORIGINS + 1)}},
                {**good, "pending": None}, {**good, "pending": [[8, "ab", 12, list(p)]]},  # origin unknown
                {**good, "pending": [[9, b"peer".hex(), 12, list(p)]]},  # beyond the origin's last round
                {**good, "pending": [[8, b"peer".hex(), 0, list(p)]]},
                {**good, "pending": [[8, b"peer".hex(), 12, [math.inf] * F.N_PARAMS]]},
                {**good, "pending": [[8, b"peer".hex(), 12, list(p)]] * (F.MAX_PENDING + 1)},
                {"round": 2, "params": list(p), "in_use": None, "last_round": {}, "accepted_rounds": 0}):  # old form
        with pytest.raises(ValueError):
            F.Federation.from_dict(bad)
