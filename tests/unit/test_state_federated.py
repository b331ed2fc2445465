"""Federated head updates as signed mesh records (x0node/state/federated.py) on the gossip core."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from tests.sim.state_mesh import StateSim, validated_line3
from x0node.anomaly.federated import MAX_ROUND_NUMBER, N_PARAMS, Federation, Update, initial_params
from x0node.state import federated as S
from x0node.state.record import Kind, Record, Scope, encode_lww

UP = Update(3, tuple(float(v) for v in initial_params()), 120)


def line3() -> StateSim:
    return validated_line3(S.FED_NS, S.validator, seed=11)


def test_update_round_trip_and_bounds():
    raw = S.encode_update(UP)
    assert len(raw) == S.VALUE_BYTES == 8 + 4 * N_PARAMS
    assert S.decode_update(raw) == UP
    for bad in (Update(0, UP.params, 1), Update(MAX_ROUND_NUMBER + 1, UP.params, 1), Update(1, UP.params, 0),
                Update(1, UP.params[:-1], 1), Update(1, (math.inf,) + UP.params[1:], 1),
                Update(1, (1e3,) + UP.params[1:], 1)):
        with pytest.raises(ValueError):
            S.encode_update(bad)
    assert S.decode_update(raw[:-1]) is None and S.decode_update(None) is None
    assert S.decode_update(struct.pack("<II", 1, 5) + struct.pack(f"<{N_PARAMS}f", math.nan, *UP.params[1:])) is None
    assert S.decode_update(struct.pack("<II", 0, 5) + raw[8:]) is None
    assert S.decode_update(struct.pack("<II", 1, 0) + raw[8:]) is None


def _rec(scope: Scope, key: str, value: bytes) -> Record:
    return Record(b"\x01" * 16, 1, int(scope), int(Kind.LWW), 10, S.FED_NS, key, encode_lww(value))


def test_validator_accepts_only_well_formed_mesh_updates():
    good = S.encode_update(UP)
    assert S.validator(_rec(Scope.MESH, S.FED_KEY, good)) is None
    assert S.validator(_rec(Scope.HOP, S.FED_KEY, good)) == "bad_fedhead"
    assert S.validator(_rec(Scope.MESH, "other", good)) == "bad_fedhead"
    assert S.validator(_rec(Scope.MESH, S.FED_KEY, good + b"\x00")) == "bad_fedhead"
    absurd = good[:8] + struct.pack("<f", 1e9) + good[12:]
    assert S.validator(_rec(Scope.MESH, S.FED_KEY, absurd)) == "bad_fedhead"


def test_updates_cross_the_mesh_signed_and_each_round_is_taken_once():
    sim = line3()
    sim.write(0, S.FED_NS, S.FED_KEY, value=S.encode_update(UP), ttl_s=S.TTL_S, scope=Scope.MESH)
    sim.run_for(1.0)
    me = sim.nodes[0].gossip.me
    got = S.peer_updates(sim.nodes[2].gossip.store)  # mesh scope: two hops away too
    assert list(got) == [me] and got[me][1] == UP
    assert S.peer_updates(sim.nodes[0].gossip.store, me=me) == {}
    seen = {me: got[me][0]}
    assert S.peer_updates(sim.nodes[2].gossip.store, seen) == {}  # nothing newer: not handed over again
    fed = Federation(round=3)
    version, up = got[me]
    assert fed.offer(me, up, version, 3) is None
    assert fed.offer(me, up, version, 3) == "replay"  # the same signed record handed over again
    # the origin publishes a newer update for the same round: a newer version, which replaces the held one
    newer = Update(3, UP.params, 200)
    sim.write(0, S.FED_NS, S.FED_KEY, value=S.encode_update(newer), ttl_s=S.TTL_S, scope=Scope.MESH)
    sim.run_for(1.0)
    got = S.peer_updates(sim.nodes[2].gossip.store, seen)
    assert got[me][0] > version and got[me][1] == newer
    assert fed.offer(me, got[me][1], got[me][0], 3) is None and fed.replaced == 1
    assert fed.pending == {(3, me): newer}


def test_a_malformed_update_changes_nothing_and_is_counted():
    sim = line3()
    g0, g1 = sim.nodes[0].gossip, sim.nodes[1].gossip
    g0.write(S.FED_NS, S.FED_KEY, sim.now, value=b"\x00" * 12, ttl_s=60, scope=Scope.MESH)
    sim.run_for(1.0)
    assert g1.refused["bad_fedhead"] >= 1 and S.peer_updates(g1.store) == {}


def test_a_round_across_three_nodes_averages_every_signed_update_once():
    from x0node.anomaly.federated import WIDTH, fedavg

    sim = line3()
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (3, 200, WIDTH))
    y = (x[:, :, 3] > 0).astype(int)
    feds = [Federation() for _ in range(3)]
    for f in feds:
        f.begin(7)  # the schedule's round: the same on every node
    own = [f.local(x[i], y[i], np.random.default_rng(i)) for i, f in enumerate(feds)]
    for i, u in enumerate(own):
        sim.write(i, S.FED_NS, S.FED_KEY, value=S.encode_update(u), ttl_s=S.TTL_S, scope=Scope.MESH)
    sim.run_until_converged(3.0)
    for i, f in enumerate(feds):
        me = sim.nodes[i].gossip.me
        got = S.peer_updates(sim.nodes[i].gossip.store, me=me)
        assert len(got) == 2
        for origin, (v, u) in got.items():
            assert f.offer(origin, u, v, 7) is None
        f.close_round(own[i], x[i], y[i], np.zeros(200))
    # every node averaged the same three updates (float32 on the wire), so they agree
    assert np.allclose(feds[0].params, feds[1].params, atol=1e-6) and np.allclose(feds[1].params, feds[2].params, atol=1e-6)
    wire = [S.decode_update(S.encode_update(u)) for u in own]
    assert np.allclose(feds[0].params, fedavg(np.asarray(Federation().params), wire), atol=1e-6)
