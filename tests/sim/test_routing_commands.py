"""The routing core's command API (x0node/proto/commands.py) on simulated meshes, stepping time:
penalties, drains, steering around a transit node, the sick flag; idempotence, undo, expiry, bounds,
loop freedom and the views that show them."""

import random

import pytest

from tests.sim.mesh import SimMesh, grid, random_connected
from x0node.proto import messages as m
from x0node.proto.commands import LINK_COST_MAX_USABLE, MAX_STEERS, SICK_LINK_COST, is_sick


def square(seed: int = 3) -> SimMesh:
    """0-1, 0-2, 1-3, 2-3: two equal paths between 0 and 3."""
    mesh = SimMesh(4, seed=seed)
    for a, b in ((0, 1), (0, 2), (1, 3), (2, 3)):
        mesh.connect(a, b)
    assert mesh.run_until_converged(5.0) is not None
    mesh.run_for(2.0)  # costs settle
    return mesh


def nid(mesh: SimMesh, i: int) -> bytes:
    return mesh.nodes[i].router.me


def act(mesh: SimMesh, i: int, fn, *args, **kw):
    res = fn(*args, now=mesh.now, **kw)
    mesh.inject_flush(i)
    return res


def test_penalise_moves_routes_is_idempotent_lifts_and_expires():
    mesh = square()
    r0 = mesh.nodes[0].router
    path = mesh.mesh_route(0, 3)
    hop = path[1]
    other = 3 - hop  # 1 <-> 2
    res = act(mesh, 0, r0.penalise_link, nid(mesh, hop), 4.0, 30.0)
    assert res.ok and res.changed
    mesh.run_for(1.5)
    assert mesh.mesh_route(0, 3) == [0, other, 3]
    assert mesh.mesh_route(0, hop) == [0, other, 3, hop]  # x4 is dearer than the three-link detour
    cmds = r0.commands_in_force()
    assert [(c.kind, c.target, c.factor) for c in cmds] == [("penalty", nid(mesh, hop).hex(), 4.0)]
    measured = next(n.cost for n in r0.neighbours() if n.node_id == nid(mesh, hop).hex())
    assert cmds[0].cost == 4 * measured
    # the penalised cost is advertised: another node's LSDB holds it
    lsa = mesh.nodes[3].router.lsdb.get(nid(mesh, 0)).lsa
    assert next(ln.cost for ln in lsa.links if ln.node_id == nid(mesh, hop)) == 4 * measured
    # idempotent: the same end state again changes nothing (no new LSA)
    originated = r0.out.counters["lsa_originated"]
    again = act(mesh, 0, r0.penalise_link, nid(mesh, hop), 4.0, 30.0)
    assert again.ok and not again.changed
    mesh.run_for(1.5)
    assert r0.out.counters["lsa_originated"] == originated and r0.out.counters["commands_renewed"] == 1
    # undo
    assert act(mesh, 0, r0.lift_command, "penalty", nid(mesh, hop)).changed
    assert not act(mesh, 0, r0.lift_command, "penalty", nid(mesh, hop)).changed  # idempotent
    mesh.run_for(1.5)
    assert mesh.mesh_route(0, 3) == path and r0.commands_in_force() == ()
    # expiry: a command not renewed is lifted by the core's own timer
    act(mesh, 0, r0.penalise_link, nid(mesh, hop), 4.0, 3.0)
    mesh.run_for(1.5)
    assert mesh.mesh_route(0, 3) == [0, other, 3]
    assert r0.commands_in_force(mesh.now)[0].expires_in_s == pytest.approx(1.5, abs=0.01)
    mesh.run_for(3.0)
    assert r0.commands_in_force() == () and r0.out.counters["commands_expired"] == 1
    assert mesh.mesh_route(0, 3) == path


def test_drain_is_advertised_at_the_highest_usable_cost_and_one_interface_can_be_named():
    mesh = square()
    r0 = mesh.nodes[0].router
    hop = mesh.mesh_route(0, 3)[1]
    ifname = mesh.link_between(0, hop).a_if
    assert act(mesh, 0, r0.drain_link, nid(mesh, hop), 30.0, ifname=ifname).changed
    mesh.run_for(1.5)
    assert mesh.mesh_route(0, 3) == [0, 3 - hop, 3]
    (cmd,) = r0.commands_in_force()
    assert (cmd.kind, cmd.ifname, cmd.cost) == ("drain", ifname, LINK_COST_MAX_USABLE)
    lsa = mesh.nodes[3].router.lsdb.get(nid(mesh, 0)).lsa
    assert next(ln.cost for ln in lsa.links if ln.node_id == nid(mesh, hop)) == LINK_COST_MAX_USABLE
    assert not any(n.sick for n in mesh.nodes[3].router.nodes())  # a drain is not the sick flag
    act(mesh, 0, r0.lift_command, "drain", nid(mesh, hop), ifname=ifname)
    mesh.run_for(1.5)
    assert r0.commands_in_force() == ()


def test_a_drain_by_one_end_moves_the_far_ends_routes_too():
    """A lossy link drained by one end only: the far end's SPF takes its own link from its live
    neighbour table, and before the drain was read both ways it kept sending over the link at its own
    cost (on the bench, the replies of a ping across a drained lossy link still crossed it until the
    far end's own loop acted). Now every node reads a drain as the link's, both directions, and every
    node's forwarding agrees (no loops), with nothing re-advertised by the far end."""
    mesh = SimMesh(12, seed=3)
    grid(mesh, 4, 3)
    assert mesh.run_until_converged(10.0) is not None
    mesh.run_for(5.0)
    a, b = 6, 7
    assert mesh.mesh_route(a, b) == [a, b] and mesh.mesh_route(b, a) == [b, a]
    mesh.link_between(a, b).loss = 0.2
    mesh.run_for(3.0)
    ra, rb = mesh.nodes[a].router, mesh.nodes[b].router
    assert act(mesh, a, ra.drain_link, nid(mesh, b), 60.0).changed
    mesh.run_for(1.5)
    assert mesh.mesh_route(a, b) not in (None, [a, b])
    assert mesh.mesh_route(b, a) not in (None, [b, a])  # the far end, which issued nothing
    assert rb.commands_in_force() == ()
    lsa_b = mesh.nodes[0].router.lsdb.get(nid(mesh, b)).lsa
    assert next(ln.cost for ln in lsa_b.links if ln.node_id == nid(mesh, a)) < LINK_COST_MAX_USABLE
    for s in range(12):  # transit across the link avoids it too, from everywhere, without loops
        for d in range(12):
            if s != d:
                path = mesh.mesh_route(s, d)
                assert path is not None
                assert not any({x, y} == {a, b} for x, y in zip(path, path[1:], strict=False)), (s, d, path)
    # lifted by the end that drained it: gone both ways (the far end never latched it)
    act(mesh, a, ra.lift_command, "drain", nid(mesh, b))
    mesh.link_between(a, b).loss = 0.0
    mesh.run_for(5.0)
    assert mesh.mesh_route(a, b) == [a, b] and mesh.mesh_route(b, a) == [b, a]


def test_steer_around_a_transit_node_keeps_it_reachable_and_is_local():
    mesh = square()
    r0 = mesh.nodes[0].router
    path = mesh.mesh_route(0, 3)
    bad = path[1]
    seq_before = mesh.nodes[3].router.lsdb.get(nid(mesh, 0)).seq
    res = act(mesh, 0, r0.steer_around, nid(mesh, bad), 30.0)
    assert res.ok and res.changed
    assert mesh.mesh_route(0, 3) == [0, 3 - bad, 3]  # SPF ran at once
    assert mesh.mesh_route(0, bad) == [0, bad]
    mesh.run_for(1.0)
    assert mesh.nodes[3].router.lsdb.get(nid(mesh, 0)).seq == seq_before  # nothing advertised
    assert [(c.kind, c.target) for c in r0.commands_in_force()] == [("steer", nid(mesh, bad).hex())]
    assert not act(mesh, 0, r0.steer_around, nid(mesh, bad), 30.0).changed
    act(mesh, 0, r0.lift_command, "steer", nid(mesh, bad).hex())
    assert mesh.mesh_route(0, 3) == path


def test_steer_without_a_loop_free_alternate_leaves_the_route_and_counts_it():
    mesh = SimMesh(3, seed=5)
    mesh.connect(0, 1)
    mesh.connect(1, 2)
    assert mesh.run_until_converged(5.0) is not None
    r0 = mesh.nodes[0].router
    act(mesh, 0, r0.steer_around, nid(mesh, 1), 30.0)
    assert mesh.mesh_route(0, 2) == [0, 1, 2]
    assert r0.out.counters["steer_no_alternate"] >= 1


def test_steering_never_loops_even_when_many_nodes_steer_around_different_nodes():
    """Each steering node picks only alternates whose own shortest path is strictly closer to the
    destination (or as close, from a lower node id), so the forwarding path's (distance, id) falls at
    every hop whoever steers around what: no loop, no black hole."""
    moved = 0
    for seed in range(12):
        rng = random.Random(seed)
        mesh = SimMesh(9, seed=seed + 10)
        random_connected(mesh, 9, 6, rng)
        assert mesh.run_until_converged(10.0) is not None
        mesh.run_for(2.0)
        before = {(a, b): mesh.mesh_route(a, b) for a in range(9) for b in range(9) if a != b}
        for _ in range(6):
            a = rng.randrange(9)
            nbrs = sorted({n.node_id for n in mesh.nodes[a].router.neighbours()})
            avoid = bytes.fromhex(rng.choice(nbrs))
            act(mesh, a, mesh.nodes[a].router.steer_around, avoid, 60.0)
        mesh.run_for(0.5)
        assert mesh.broken_pairs() == [], f"seed {seed}: steering made a loop or a black hole"
        moved += sum(1 for k, p in before.items() if mesh.mesh_route(*k) != p)
    assert moved > 0  # the steering did move routes


def test_sick_flag_keeps_the_node_reachable_but_not_transit_and_is_wire_compatible():
    mesh = square()
    path = mesh.mesh_route(0, 3)
    sick = path[1]
    rs = mesh.nodes[sick].router
    assert act(mesh, sick, rs.set_sick, 20.0).changed
    mesh.run_for(1.5)
    assert mesh.mesh_route(0, 3) == [0, 3 - sick, 3]
    assert mesh.mesh_route(3, 0) == [3, 3 - sick, 0]
    assert mesh.mesh_route(0, sick) == [0, sick]  # still reachable as a destination
    for i in range(4):
        flags = {n.node_id: n.sick for n in mesh.nodes[i].router.nodes()}
        assert flags == {nid(mesh, j).hex(): j == sick for j in range(4)}
    raw = mesh.nodes[0].router.lsdb.get(nid(mesh, sick)).raw
    lsa = m.decode(raw)  # the same LSA format: any decoder of this wire version reads it
    assert isinstance(lsa, m.Lsa) and is_sick(lsa) and {ln.cost for ln in lsa.links} == {SICK_LINK_COST}
    assert [c.kind for c in rs.commands_in_force()] == ["sick"]
    mesh.run_for(20.0)  # expires
    assert rs.commands_in_force() == ()
    mesh.run_for(1.5)
    assert not any(n.sick for n in mesh.nodes[0].router.nodes())
    assert mesh.mesh_route(0, 3) == path


def test_ordinary_lsas_never_read_as_sick():
    mesh = square()
    for i in range(4):
        for e in mesh.nodes[i].router.lsdb.entries():
            assert e.lsa is not None and not is_sick(e.lsa)
            assert all(ln.cost <= LINK_COST_MAX_USABLE for ln in e.lsa.links)


def test_bad_commands_are_refused_counted_and_change_nothing():
    mesh = square()
    r0 = mesh.nodes[0].router
    peer = nid(mesh, 1)
    bad = [
        (r0.penalise_link, (peer, 4.0, 0.0), {}),  # ttl
        (r0.penalise_link, (peer, 4.0, 1e9), {}),
        (r0.penalise_link, (peer, 0.5, 10.0), {}),  # factor
        (r0.penalise_link, (peer, float("nan"), 10.0), {}),
        (r0.penalise_link, (peer, True, 10.0), {}),
        (r0.penalise_link, (b"\x01" * 3, 4.0, 10.0), {}),  # id
        (r0.penalise_link, ("zz", 4.0, 10.0), {}),
        (r0.penalise_link, (r0.me, 4.0, 10.0), {}),  # ourselves
        (r0.drain_link, (peer, 10.0), {"ifname": "nope"}),  # not our interface
        (r0.steer_around, (r0.me, 10.0), {}),
        (r0.steer_around, (peer, 10.0), {"factor": 1e6}),
    ]
    for fn, args, kw in bad:
        res = act(mesh, 0, fn, *args, **kw)
        assert not res.ok and not res.changed and res.detail
    assert r0.out.counters["commands_refused"] == len(bad)
    assert r0.commands_in_force() == ()
    assert not act(mesh, 0, r0.lift_command, "steer", "not hex").ok
    # bounded: steers beyond MAX_STEERS are refused
    for k in range(MAX_STEERS):
        assert act(mesh, 0, r0.steer_around, bytes([k + 1]) * 16, 10.0).ok
    assert not act(mesh, 0, r0.steer_around, b"\xee" * 16, 10.0).ok
    assert len(r0.commands_in_force()) == MAX_STEERS


def test_commands_show_in_the_views_json():
    import dataclasses
    import json

    mesh = square()
    r0 = mesh.nodes[0].router
    act(mesh, 0, r0.penalise_link, nid(mesh, 1), 2.0, 10.0)
    act(mesh, 0, r0.set_sick, 10.0)
    mesh.run_for(1.0)
    doc = json.loads(json.dumps([dataclasses.asdict(c) for c in r0.commands_in_force()]))
    assert {d["kind"] for d in doc} == {"penalty", "sick"}
    me = next(n for n in r0.nodes() if n.self)
    assert me.sick
