"""Federated fine-tuning of the final layer (x0node/anomaly/federated.py): local steps, FedAvg, rounds, gate."""

from __future__ import annotations

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


def test_rounds_refuse_replay_duplicates_and_bad_input_with_a_reason():
    fed = F.Federation()
    p = tuple(F.initial_params())
    assert fed.offer(b"a", F.Update(1, p, 10)) is None
    assert fed.offer(b"a", F.Update(2, p, 10)) == "duplicate"  # once per round
    assert fed.offer(b"b", F.Update(1, (math.nan,) + p[1:], 10)) == "bad_params"
    assert fed.offer(b"b", F.Update(1, p[:-1], 10)) == "bad_params"
    assert fed.offer(b"b", F.Update(1, p, 0)) == "no_rows"
    assert fed.offer(b"b", F.Update(F.MAX_ROUNDS + 1, p, 5)) == "bad_params"
    x, y, m = _rows(100, 4)
    fed.close_round(None, x, y, m)
    assert fed.round == 2 and fed.pending == {}
    assert fed.offer(b"a", F.Update(1, p, 10)) == "replay"  # the same round again
    assert fed.offer(b"a", F.Update(2, p, 10)) is None
    assert fed.refused == {"bad_params": 3, "no_rows": 1, "replay": 1, "duplicate": 1, "round_full": 0,
                           "rounds_done": 0}
    for i in range(F.MAX_UPDATES_PER_ROUND):
        fed.offer(bytes([i + 1, 9]), F.Update(2, p, 1))
    assert len(fed.pending) == F.MAX_UPDATES_PER_ROUND - 1 and fed.refused["round_full"] == 2
    while not fed.done:
        fed.close_round(None, x, y, m)
    assert fed.round == F.MAX_ROUNDS + 1 and not fed.close_round(None, x, y, m)
    assert fed.offer(b"z", F.Update(3, p, 1)) == "rounds_done"


def test_the_gate_keeps_the_shipped_detector_unless_no_worse():
    fed = F.Federation()
    x, y, m = _rows(3000, 6)
    xh, yh, mh = _rows(300, 7)
    assert not F.no_worse(F.initial_params(), xh[:10], yh[:10], mh[:10])  # too few rows to judge
    assert not F.no_worse(F.initial_params(), xh, np.zeros_like(yh), mh)  # no fault to judge by
    rng = np.random.default_rng(0)
    for _ in range(F.MAX_ROUNDS):
        fed.close_round(fed.local(x, y, rng), xh, yh, mh)
    assert fed.in_use is not None and fed.accepted_rounds >= 1
    bad = F.Federation()
    flipped = 1 - y  # a poisoned client: labels inverted
    for _ in range(3):
        bad.close_round(bad.local(x, flipped, rng), xh, yh, mh)
    assert bad.in_use is None


def test_holdout_split_keeps_the_newest_quarter():
    tr, ho = F.holdout_split(10)
    assert tr.tolist() == list(range(8)) and ho.tolist() == [8, 9]


def test_state_round_trips_and_a_round_taken_stays_refused_after_a_restart():
    fed = F.Federation()
    p = tuple(F.initial_params())
    assert fed.offer(b"peer", F.Update(1, p, 10)) is None
    x, y, m = _rows(100, 8)
    fed.close_round(None, x, y, m)
    back = F.Federation.from_dict(fed.to_dict())
    assert back.round == 2 and back.last_round == {b"peer": 1} and np.array_equal(back.params, fed.params)
    assert back.offer(b"peer", F.Update(1, p, 10)) == "replay"
    good = fed.to_dict()
    for bad in (None, {**good, "round": 0}, {**good, "round": True}, {**good, "round": F.MAX_ROUNDS + 2},
                {**good, "params": [math.nan] * F.N_PARAMS}, {**good, "params": [0.0] * 3},
                {**good, "in_use": ["x"] * F.N_PARAMS}, {**good, "last_round": {"zz": 1}},
                {**good, "last_round": {"ab": F.MAX_ROUNDS + 1}}, {**good, "last_round": []},
                {**good, "last_round": {f"{i:04x}": 1 for i in range(F.MAX_ORIGINS + 1)}}):
        with pytest.raises(ValueError):
            F.Federation.from_dict(bad)
