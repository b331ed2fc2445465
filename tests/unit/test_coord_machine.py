"""The replicated machine: pools never overlap and are reclaimed by mesh time, THE RULE for disruptive
leases, expiry, idempotent retries, the rollout seat, refusals that change nothing."""

from __future__ import annotations

import copy
import random

from x0node.coord.machine import Machine
from x0node.coord.pools import PoolLayout, overlapping

LAYOUT = {"v4": "10.64.0.0/22", "v4_len": 24, "v6": "fd64::/48", "v6_len": 64}


def node(i: int) -> str:
    return f"{i:032x}"


def configured(reclaim: float = 60.0) -> Machine:
    m = Machine()
    assert m.apply({"op": "configure", "layout": LAYOUT, "reclaim_after_s": reclaim})["ok"]
    return m


def test_pools_distinct_renewed_and_reclaimed():
    m = configured(reclaim=10.0)
    got = {i: m.apply({"op": "pool", "node": node(i)}) for i in range(4)}
    assert sorted(g["index"] for g in got.values()) == [0, 1, 2, 3]
    assert m.apply({"op": "pool", "node": node(9)}) == {"ok": False, "error": "no free pool"}  # 4 /24 in a /22
    assert not overlapping({n: [g["v4"], g["v6"]] for n, g in got.items()})
    assert m.apply({"op": "pool", "node": node(0)})["index"] == got[0]["index"]  # a renewal keeps the pool
    m.apply({"op": "tick", "dt": 6.0})
    m.apply({"op": "pool", "node": node(1)})  # node 1 renews, the others do not
    m.apply({"op": "tick", "dt": 5.0})
    assert set(m.pools) == {node(1)} and m.reclaimed == 3
    assert m.apply({"op": "pool", "node": node(9)})["ok"]


def test_random_histories_never_overlap():
    rng = random.Random(4)
    m = configured(reclaim=5.0)
    for _ in range(2000):
        r = rng.random()
        if r < 0.5:
            m.apply({"op": "pool", "node": node(rng.randrange(8))})
        elif r < 0.6:
            m.apply({"op": "pool_release", "node": node(rng.randrange(8))})
        else:
            m.apply({"op": "tick", "dt": rng.uniform(0, 2)})
        idx = [e["index"] for e in m.pools.values()]
        assert len(idx) == len(set(idx))


def test_disruptive_leases_follow_the_rule():
    m = Machine()
    a, b, c, d = node(1), node(2), node(3), node(4)

    def ask(target: str, nbrs: list[str], lid: int = 1) -> dict:
        return m.apply({"op": "lease", "resource": f"disrupt/{target}", "holder": target, "lease_id": lid,
                        "ttl_s": 30, "neighbours": nbrs})

    assert ask(a, [b])["granted"]
    assert not ask(b, [a, c])["granted"]  # a neighbour holds one
    assert ask(c, [d])["granted"]  # not adjacent to a
    assert not ask(d, [])["granted"]  # d is c's neighbour (as c declared)
    assert ask(a, [b])["granted"] and ask(a, [b])["detail"] == "renewed"
    assert not ask(a, [b], lid=2)["granted"]
    for _ in range(4):
        m.apply({"op": "tick", "dt": 8.0})
    assert ask(b, [a, c])["granted"]  # both expired


def test_release_needs_the_holder_and_id():
    m = Machine()
    m.apply({"op": "lease", "resource": "lock/x", "holder": node(1), "lease_id": 7, "ttl_s": 5})
    assert not m.apply({"op": "lease_release", "resource": "lock/x", "holder": node(2), "lease_id": 7})["released"]
    assert m.apply({"op": "lease_release", "resource": "lock/x", "holder": node(1), "lease_id": 7})["released"]


def test_retries_are_applied_once():
    m = configured()
    first = m.apply({"op": "pool", "node": node(1), "rid": "r1"})
    m.apply({"op": "pool_release", "node": node(1)})
    assert m.apply({"op": "pool", "node": node(1), "rid": "r1"}) == first
    assert node(1) not in m.pools


def test_rollout_seat():
    m = Machine()
    put = {"op": "rollout_put", "rollout": "v2", "holder": node(1), "state": {"done": 3}}
    assert not m.apply(put)["ok"]
    m.apply({"op": "lease", "resource": "ota/rollout", "holder": node(1), "lease_id": 1, "ttl_s": 10})
    assert m.apply(put)["ok"]
    assert not m.apply(dict(put, holder=node(2)))["ok"]
    assert m.apply({"op": "read", "what": "rollout", "rollout": "v2"})["rollout"]["state"] == {"done": 3}


def test_bad_commands_change_nothing():
    m = configured()
    before = copy.deepcopy(m.view())
    for cmd in (None, [], {"op": "nope"}, {"op": "tick", "dt": -1}, {"op": "tick", "dt": 1e9},
                {"op": "pool", "node": "xyz"}, {"op": "lease", "resource": "../etc", "holder": node(1), "lease_id": 1, "ttl_s": 1},
                {"op": "lease", "resource": "lock/a", "holder": node(1), "lease_id": -1, "ttl_s": 1},
                {"op": "configure", "layout": {"v4": "10.0.0.0/8", "v4_len": 9, "v6": "fd00::/8", "v6_len": 9}, "reclaim_after_s": 5},
                {"op": "rollout_put", "rollout": "x", "holder": node(1), "state": "x" * 5000}):
        assert m.apply(cmd)["ok"] is not True or cmd.get("op") == "configure"  # type: ignore[union-attr]
    after = m.view()
    assert after["pools"] == before["pools"] and after["leases"] == before["leases"] and after["layout"] == before["layout"]


def test_layout_prefixes():
    lay = PoolLayout(**LAYOUT)
    assert lay.count == 4 and lay.prefixes(3) == ("10.64.3.0/24", "fd64:0:0:3::/64")
    assert overlapping({"a": ["10.0.0.0/23"], "b": ["10.0.1.0/24"]})
