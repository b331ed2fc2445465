"""Neighbours' feature vectors as signed 1-hop records (x0node/state/features.py) on the gossip core."""

from __future__ import annotations

import math
import struct

import pytest

from tests.sim.state_mesh import StateSim, validated_line3
from x0node.state import features as F
from x0node.state.record import Kind, Record, Scope, encode_lww

VEC = [0.25, 0.4, 0.1, 12.5, 0.0, 1.0, 0.0, 1.0]


def line3() -> StateSim:
    return validated_line3(F.FEATURES_NS, F.validator, seed=7)


def test_vector_round_trip_and_bounds():
    assert F.decode_vector(F.encode_vector(VEC)) == pytest.approx(VEC)
    assert len(F.encode_vector(VEC)) == F.VALUE_BYTES
    clipped = F.decode_vector(F.encode_vector([math.nan, -1.0, 1e9, 1, 1, 1, 1, 1]))
    assert clipped[:3] == (0.0, 0.0, F.MAX_VALUE)
    with pytest.raises(ValueError):
        F.encode_vector(VEC[:7])
    assert F.decode_vector(b"\x00" * 31) is None
    assert F.decode_vector(struct.pack("<8f", math.inf, *VEC[1:])) is None
    assert F.decode_vector(struct.pack("<8f", -0.5, *VEC[1:])) is None
    assert F.ttl_for(30.0) == 120 and F.ttl_for(0.1) == 1 and F.ttl_for(10_000) == 3600


def _rec(scope: Scope, key: str, value: bytes) -> Record:
    return Record(b"\x01" * 16, 1, int(scope), int(Kind.LWW), 10, F.FEATURES_NS, key, encode_lww(value))


def test_validator_accepts_only_well_formed_hop_vectors():
    good = F.encode_vector(VEC)
    assert F.validator(_rec(Scope.HOP, F.FEATURES_KEY, good)) is None
    assert F.validator(_rec(Scope.MESH, F.FEATURES_KEY, good)) == "bad_features"
    assert F.validator(_rec(Scope.HOP, "other", good)) == "bad_features"
    assert F.validator(_rec(Scope.HOP, F.FEATURES_KEY, good[:-4])) == "bad_features"
    assert F.validator(_rec(Scope.HOP, F.FEATURES_KEY, struct.pack("<8f", math.nan, *VEC[1:]))) == "bad_features"


def test_vectors_reach_neighbours_only_signed_and_expire():
    sim = line3()
    sim.write(0, F.FEATURES_NS, F.FEATURES_KEY, value=F.encode_vector(VEC), ttl_s=2, scope=Scope.HOP)
    sim.run_for(0.2)
    me = sim.nodes[0].gossip.me
    got = F.neighbour_vectors(sim.nodes[1].gossip.store)
    assert list(got) == [me] and got[me][1] == pytest.approx(VEC)
    assert F.neighbour_vectors(sim.nodes[2].gossip.store) == {}  # 1-hop: never forwarded
    version = got[me][0]
    assert F.neighbour_vectors(sim.nodes[1].gossip.store, {me: version}) == {}  # nothing newer
    sim.write(0, F.FEATURES_NS, F.FEATURES_KEY, value=F.encode_vector([0.9] + VEC[1:]), ttl_s=2, scope=Scope.HOP)
    sim.run_for(0.2)
    newer = F.neighbour_vectors(sim.nodes[1].gossip.store, {me: version})
    assert newer[me][1][0] == pytest.approx(0.9)
    sim.run_for(3.5)
    assert F.neighbour_vectors(sim.nodes[1].gossip.store) == {}


def test_a_forged_or_malformed_vector_changes_nothing_and_is_counted():
    sim = line3()
    g0, g1 = sim.nodes[0].gossip, sim.nodes[1].gossip
    with pytest.raises(ValueError):
        sim.write(0, F.FEATURES_NS, F.FEATURES_KEY, value=F.encode_vector(VEC), ttl_s=0, scope=Scope.HOP)
    # a malformed value signed by its origin: refused by the validator on arrival
    rec = g0.write(F.FEATURES_NS, F.FEATURES_KEY, sim.now, value=b"\x00" * 8, ttl_s=5, scope=Scope.HOP)
    assert rec.scope == Scope.HOP
    sim.run_for(0.3)
    assert g1.refused["bad_features"] >= 1 and F.neighbour_vectors(g1.store) == {}
