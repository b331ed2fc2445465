"""The node directory (x0node/state/directory.py): record codec and validation, the publisher's
decisions, and the directory merged over the gossip core (time stepped, no sleeping)."""

from __future__ import annotations

import json

import pytest

from tests.sim.state_mesh import StateSim, validated_line3
from x0node.state import directory as D
from x0node.state.record import Kind, Record, Scope, encode_lww

ORIGIN = b"\x01" * 16
E = D.Entry("n1", ("gateway",), "0.1.0", "ok", "", 2, 60)


def _rec(value: bytes | None, *, key: str | None = None, scope: Scope = Scope.MESH, ttl: int = D.TTL_S) -> Record:
    return Record(ORIGIN, 1, int(scope), int(Kind.LWW), ttl, D.DIRECTORY_NS,
                  ORIGIN.hex() if key is None else key, encode_lww(value))


def test_entry_round_trip_and_bounds():
    assert D.decode(E.encode()) == E
    assert len(E.encode()) < 300
    big = D.make_entry("host name/with\x00odd chars" * 9, "gateway", "1.2.3 dev", "degraded",
                       "x\n" * 500, 10**9, 10**12)
    assert big.problem() is None and D.decode(big.encode()) == big
    assert len(big.name) == D.NAME_MAX and big.name.startswith("host-name-with-odd")
    assert big.version == "1.2.3-dev" and len(big.reason) == D.REASON_MAX and "\n" not in big.reason
    assert (big.neighbours_up, big.uptime_s) == (D.NEIGHBOURS_MAX, D.UPTIME_MAX_S)
    assert D.make_entry("", None, "", "sideways", None, -1, -5) == D.Entry("node", (), "unknown", "down", "", 0, 0)
    with pytest.raises(ValueError):
        D.Entry("bad name", (), "1", "ok").encode()


@pytest.mark.parametrize("doc", [
    {"name": "n1"},  # fields missing
    dict(json.loads(E.encode()), extra=1),
    dict(json.loads(E.encode()), name="<script>"),
    dict(json.loads(E.encode()), name=7),
    dict(json.loads(E.encode()), roles=["root"]),
    dict(json.loads(E.encode()), roles=["node", "node"]),
    dict(json.loads(E.encode()), roles=[["node"]]),
    dict(json.loads(E.encode()), roles="node"),
    dict(json.loads(E.encode()), health="fine"),
    dict(json.loads(E.encode()), reason="r" * (D.REASON_MAX + 1)),
    dict(json.loads(E.encode()), neighbours_up=-1),
    dict(json.loads(E.encode()), uptime_s=True),
    dict(json.loads(E.encode()), version="9" * 40),
])
def test_decode_refuses_malformed_documents(doc):
    raw = json.dumps(doc).encode()
    assert D.decode(raw) is None
    assert D.validator(_rec(raw)) == "bad_directory"


def test_validator_reasons():
    good = E.encode()
    assert D.validator(_rec(good)) is None
    assert D.validator(_rec(None)) is None  # a delete: a node leaving
    assert D.validator(_rec(b"not json")) == "bad_directory"
    assert D.validator(_rec(good, key=(b"\x02" * 16).hex())) == "bad_directory_origin"
    assert D.validator(_rec(good, key="n1")) == "bad_directory_origin"
    assert D.validator(_rec(good, ttl=0)) == "bad_directory_scope"
    assert D.validator(_rec(good, ttl=D.TTL_S + 1)) == "bad_directory_scope"
    assert D.validator(_rec(good, scope=Scope.HOP, ttl=60)) == "bad_directory_scope"


def test_publisher_refresh_identity_and_health_hold():
    starting = D.Publisher(0.0)
    lonely = D.Entry("n1", ("gateway",), "0.1.0", "degraded", "no neighbour", 0, 1)
    assert not starting.due(lonely, 1.0) and not starting.due(lonely, D.START_GRACE_S - 0.1)
    assert starting.due(lonely, D.START_GRACE_S)  # alone for good: published anyway
    assert D.Publisher(0.0).due(E, 0.5)  # a neighbour found: at once
    p = D.Publisher(0.0)
    assert p.due(E, 0.0)
    p.done(E, 0.0)
    assert not p.due(E, 1.0)
    busy = D.Entry("n1", ("gateway",), "0.1.0", "ok", "", 5, 900)
    assert not p.due(busy, 2.0)  # counts and uptime alone never cause a write
    assert p.due(D.Entry("n1b", ("gateway",), "0.1.0", "ok"), 2.0)  # a new name: at once
    assert p.due(D.Entry("n1", ("gateway",), "0.2.0", "ok"), 2.0)  # a new version: at once
    sick = D.Entry("n1", ("gateway",), "0.1.0", "degraded", "no neighbour", 0, 60)
    assert not p.due(sick, 10.0)
    assert not p.due(sick, 10.0 + D.CHANGE_HOLD_S - 0.1)
    assert not p.due(E, 15.0)  # it flapped back: the hold starts over
    assert not p.due(sick, 16.0) and not p.due(sick, 16.0 + D.CHANGE_HOLD_S - 0.1)
    assert p.due(sick, 16.0 + D.CHANGE_HOLD_S)
    p.done(sick, 30.0)
    assert not p.due(sick, 30.0 + D.REFRESH_S - 1)
    assert p.due(sick, 30.0 + D.REFRESH_S)


def line3() -> StateSim:
    return validated_line3(D.DIRECTORY_NS, D.validator, seed=11)


def _publish(sim: StateSim, i: int, entry: D.Entry, ttl: int = D.TTL_S) -> None:
    g = sim.nodes[i].gossip
    sim.write(i, D.DIRECTORY_NS, g.me.hex(), value=entry.encode(), ttl_s=ttl)


def test_directory_merges_every_node_and_newest_entry_wins():
    sim = line3()
    for i in range(3):
        _publish(sim, i, D.Entry(f"n{i}", ("node",), "0.1.0", "ok", "", 1 + (i == 1), 10))
    sim.run_for(1.0)
    assert sim.converged()
    wall = sim.nodes[0].gossip._wall(sim.now)
    views = [D.listing(n.gossip.store, wall) for n in sim.nodes]
    assert views[0] == views[1] == views[2]
    assert [(e["node_id"], e["name"]) for e in views[0]] == sorted(
        (n.gossip.me.hex(), f"n{i}") for i, n in enumerate(sim.nodes))
    _publish(sim, 2, D.Entry("n2", ("node",), "0.1.0", "degraded", "no neighbour answers", 0, 20))
    sim.run_for(1.0)
    far = {e["name"]: e for e in D.listing(sim.nodes[0].gossip.store, wall)}
    assert far["n2"]["health"] == "degraded" and far["n2"]["health_reason"] == "no neighbour answers"
    assert len(far) == 3


def test_departed_node_ages_out():
    sim = line3()
    for i in range(3):
        _publish(sim, i, D.Entry(f"n{i}", (), "0.1.0", "ok"), ttl=5)
    sim.run_for(1.0)
    assert len(D.listing(sim.nodes[0].gossip.store, None)) == 3
    for i in (0, 1):  # n0 and n1 keep refreshing; n2 left
        _publish(sim, i, D.Entry(f"n{i}", (), "0.1.0", "ok"), ttl=5)
    sim.run_for(6.0)
    for i in (0, 1):
        _publish(sim, i, D.Entry(f"n{i}", (), "0.1.0", "ok"), ttl=5)
    sim.run_for(1.0)
    names = {e["name"] for e in D.listing(sim.nodes[0].gossip.store, None)}
    assert names == {"n0", "n1"}


def test_forged_or_malformed_entries_change_nothing_and_are_counted():
    sim = line3()
    g0, g1 = sim.nodes[0].gossip, sim.nodes[1].gossip
    # n0 signs an entry that claims to be n2's: refused on arrival, counted
    g0.write(D.DIRECTORY_NS, sim.nodes[2].gossip.me.hex(), sim.now, value=E.encode(), ttl_s=60)
    # n0 signs a malformed entry under its own id
    g0.write(D.DIRECTORY_NS, g0.me.hex(), sim.now, value=b'{"name":"x"}', ttl_s=60)
    sim.run_for(1.0)
    assert g1.refused["bad_directory_origin"] >= 1 and g1.refused["bad_directory"] >= 1
    assert D.listing(g1.store, None) == []
