"""The coordination service on namespace meshes of real daemons: the Raft group through leader kill,
a partition of the leader's side, 30 % loss and restarts; no acknowledged write lost, no two nodes ever
holding overlapping pools (checked after every step), every quorum-acknowledged KV write readable after
heal; the name service answers dig; a gone member is replaced.

Timings are not asserted (bench/coord.py measures them); waits have generous deadlines.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.integration.coord_mesh import coord_bed, held_pools, leader, overlaps, try_ask, wait_for
from tests.integration.state_mesh import heal, split

pytestmark = pytest.mark.integration

MEMBERS = [1, 3, 5]
SETTLE_S = 60.0


class Ledger:
    """Writes the service acknowledged: Raft leases and quorum KV puts, to be found again later."""

    def __init__(self, bed) -> None:
        self.bed = bed
        self.rng = random.Random(7)
        self.leases: dict[str, str] = {}  # resource -> holder node id
        self.values: dict[str, str] = {}
        self.n = 0

    def write(self, nodes: list[int], count: int = 4) -> int:
        acked = 0
        for _ in range(count):
            self.n += 1
            k = self.rng.choice(nodes)
            res = try_ask(self.bed, k, {"op": "lease", "resource": f"lock/w{self.n}", "ttl_s": 3600,
                                        "lease_id": self.n}, 15.0)
            if res.get("granted"):
                self.leases[f"lock/w{self.n}"] = self.bed.nodes[k].node_id
                acked += 1
            key, value = f"app/k{self.n}", f"v{self.n}"
            if try_ask(self.bed, self.rng.choice(nodes), {"op": "kv_put", "key": key, "value": value}, 15.0).get("ok"):
                self.values[key] = value
                acked += 1
        return acked


def diagnose(bed) -> str:
    return "\n".join(f"n{k}: " + json.dumps({x: v for x, v in try_ask(bed, k, {"op": "status"}, 3.0).items()
                                             if x in ("pool", "leader", "raft", "counters", "drops", "error")})
                     for k in bed.nodes)


def is_member(bed, k: int) -> bool:
    return bool(try_ask(bed, k, {"op": "status"}, 3.0).get("raft"))


def no_overlap(bed, step: str) -> None:
    found = overlaps(bed)
    assert not found, f"overlapping pools after {step}: {found}"


@pytest.fixture
def bed(tmp_path):
    b = coord_bed(tmp_path / "bed", "ring:6", MEMBERS, {"reclaim_after_s": 20.0, "member_gone_s": 6.0,
                                                        "dns_listen": ["127.0.0.1:5353"]})
    try:
        assert wait_for(lambda: leader(b, MEMBERS), SETTLE_S), "no leader elected"
        yield b
    finally:
        b.down()


def test_faults_lose_no_acknowledged_write_and_pools_never_overlap(bed):
    ledger = Ledger(bed)
    everyone = list(bed.nodes)
    assert wait_for(lambda: len(held_pools(bed)) == len(everyone), SETTLE_S), held_pools(bed)
    no_overlap(bed, "start")
    assert ledger.write(everyone) == 8

    # leader kill
    lead = leader(bed, list(bed.nodes))
    bed.fault("kill", lead)
    no_overlap(bed, "leader kill")
    rest = [k for k in everyone if k != lead]
    assert wait_for(lambda: leader(bed, rest), SETTLE_S), "no new leader"
    assert ledger.write(rest) > 0
    no_overlap(bed, "writes after leader kill")
    bed.restart(lead)
    no_overlap(bed, "leader restart")

    # partition of the leader's side: the leader and its non-member neighbours cut off
    lead = wait_for(lambda: leader(bed, list(bed.nodes)), SETTLE_S)
    side = {lead} | {k for k in bed.topology.neighbours(lead) if not is_member(bed, k)}
    links = split(bed, side)
    no_overlap(bed, "partition")
    majority = [k for k in everyone if k not in side]
    assert wait_for(lambda: leader(bed, majority), SETTLE_S), "majority has no leader"
    ledger.write(majority)
    ledger.write(sorted(side), count=2)  # the minority side may or may not get acknowledgements: both are fine
    no_overlap(bed, "writes during partition")
    heal(bed, links)
    no_overlap(bed, "heal")

    # 30 % loss on every link
    for a, b in bed.topology.links:
        bed.fault("loss", a, b, percent=30)
    assert wait_for(lambda: leader(bed, list(bed.nodes)), SETTLE_S)
    assert ledger.write(everyone) > 0
    no_overlap(bed, "30 % loss")
    for a, b in bed.topology.links:
        bed.heal(a, b)

    # restarts: a member and a non-member, gracefully
    for k in (MEMBERS[1], 2):
        bed.stop(k)
        no_overlap(bed, f"stop n{k}")
        bed.start(k)
    assert wait_for(lambda: leader(bed, list(bed.nodes)), SETTLE_S)
    assert wait_for(lambda: len(held_pools(bed)) == len(everyone), SETTLE_S), diagnose(bed)
    no_overlap(bed, "restarts")

    # nothing acknowledged is lost: every lease in the group's table, every KV value readable
    lead = leader(bed, list(bed.nodes))
    table = try_ask(bed, lead, {"op": "machine"})["machine"]["leases"]
    missing = {r: h for r, h in ledger.leases.items() if table.get(r, {}).get("holder") != h}
    assert not missing, f"acknowledged leases lost: {missing}"
    assert ledger.values
    for key, value in ledger.values.items():
        for k in (everyone[0], everyone[3]):
            got = wait_for(lambda k=k, key=key: (r := try_ask(bed, k, {"op": "kv_get", "key": key})).get("ok") and r, 20.0)
            assert got and got.get("value") == value, f"{key} read from n{k}: {got}"


def test_name_service_answers_dig_and_refuses_outside_names(bed):
    name = {"aaaa": ["fd00::42"], "a": ["10.64.9.9"]}
    assert try_ask(bed, 2, {"op": "kv_put", "key": "dns/printer", "value": json.dumps(name)}).get("ok")

    def dig(k: int, qname: str, qtype: str) -> str:
        return bed.exec(k, "dig", "+short", "+tries=3", "+time=3", "-p", "5353", "@127.0.0.1", qname, qtype)

    assert dig(5, "printer.mesh", "AAAA").split() == ["fd00::42"]
    assert dig(4, "printer.mesh", "A").split() == ["10.64.9.9"]
    out = bed.exec(6, "dig", "+tries=2", "+time=3", "-p", "5353", "@127.0.0.1", "nobody.mesh", "AAAA")
    assert "status: NXDOMAIN" in out
    out = bed.exec(6, "dig", "+tries=2", "+time=3", "-p", "5353", "@127.0.0.1", "example.com", "A")
    assert "status: REFUSED" in out
    assert try_ask(bed, 3, {"op": "kv_del", "key": "dns/printer"}).get("ok")
    assert "status: NXDOMAIN" in bed.exec(1, "dig", "+tries=2", "+time=3", "-p", "5353", "@127.0.0.1",
                                          "printer.mesh", "AAAA")
    # refused values change nothing
    assert not try_ask(bed, 2, {"op": "kv_put", "key": "dns/x", "value": "not json"}).get("ok")


def test_gone_member_is_replaced(bed):
    before = set(try_ask(bed, 1, {"op": "status"})["members"])
    lead = leader(bed, list(bed.nodes))
    victim = next(m for m in MEMBERS if m != lead)
    bed.stop(victim, sig=9)
    vid = bed.nodes[victim].node_id

    def replaced():
        st = try_ask(bed, lead, {"op": "status"})
        ms = set(st.get("members", []))
        return len(ms) == 3 and vid not in ms and ms
    members = wait_for(replaced, 90.0, poll_s=0.5)
    assert members, try_ask(bed, lead, {"op": "status"})
    newcomer = next(iter(members - before))
    k = next(i for i, n in bed.nodes.items() if n.node_id == newcomer)
    assert wait_for(lambda: (try_ask(bed, k, {"op": "status"}).get("raft") or {}).get("has_quorum"), SETTLE_S)
    assert try_ask(bed, k, {"op": "write"}).get("ok")
