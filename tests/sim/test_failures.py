"""Silent link failures, partitions, dead and leaving nodes, restarts (simulated time, default timers)."""

import random

from tests.sim.mesh import SimMesh, grid, line, measure_cut, ring
from x0node.io.route_table import MemoryRouteTable
from x0node.proto.events import NodeLeft
from x0node.proto.router import Router, RouterConfig
from x0node.proto.trust import TrustStore

DEAD_S = RouterConfig().dead_interval_s  # 0.25 s at the defaults
SLOT_JITTER_S = 0.001


def test_ring_reroutes_after_silent_cut_within_detection_time():
    mesh = SimMesh(6, seed=21)
    ring(mesh, 6)
    assert mesh.run_until_converged(1.0) is not None
    rng = random.Random(21)
    detections, outages = [], []
    for _trial in range(8):
        mesh.run_for(1.0 + rng.random() * 0.1)  # a random phase relative to the keepalives
        link = mesh.link_between(0, 1)
        assert mesh.mesh_route(0, 1) == [0, 1]
        detect, outage = measure_cut(mesh, 0, 1)
        detections.append(detect)
        outages.append(outage)
        assert mesh.mesh_route(0, 1) == [0, 5, 4, 3, 2, 1]
        link.up = True  # heal, and wait until the direct link is used again
        assert mesh.run_until_converged(2.0) is not None
        mesh.run_for(1.0)
        assert mesh.mesh_route(0, 1) == [0, 1]
    # detection in [(missed - 0.5), (missed + 0.5)] x interval after the cut (+ slot jitter, 1 ms polling)
    assert all(DEAD_S - 0.1 - 0.003 <= d <= DEAD_S + SLOT_JITTER_S + 0.003 for d in detections), detections
    # every pair routes again within the detection time plus one flooding round on 6 nodes
    assert max(outages) <= DEAD_S + 0.05, outages


def test_partition_heals():
    # two 3x3 grids joined by one bridge link 8 <-> 9
    mesh = SimMesh(18, seed=4)
    grid(mesh, 3, 3)
    for y in range(3):
        for x in range(3):
            i = 9 + y * 3 + x
            if x + 1 < 3:
                mesh.connect(i, i + 1)
            if y + 1 < 3:
                mesh.connect(i, i + 3)
    bridge = mesh.connect(8, 9)
    assert mesh.run_until_converged(1.0) is not None
    bridge.up = False
    mesh.run_for(1.0)
    left, right = list(range(9)), list(range(9, 18))
    assert mesh.all_pairs_ok(left) and mesh.all_pairs_ok(right)
    dest = f"{mesh.nodes[12].router.identity.mesh_address}/128"
    assert all(dest not in mesh.nodes[i].routes for i in left)  # no stale routes across the cut
    bridge.up = True
    assert mesh.run_until_converged(1.5) is not None


def test_dead_node_is_pruned_and_leaving_node_withdraws():
    cfg = RouterConfig(dead_node_timeout_s=5.0)
    mesh = SimMesh(6, seed=8, config=cfg)
    line(mesh, 6)
    assert mesh.run_until_converged(1.0) is not None
    # node 5 loses power: its neighbour notices within the dead interval, everyone prunes it later
    mesh.kill(5)
    mesh.run_for(DEAD_S + 0.1)
    assert mesh.nodes[4].router.stats().neighbours == 1
    assert mesh.all_pairs_ok(list(range(5)))
    mesh.run_for(6.5)
    gone = mesh.nodes[5].router.me.hex()
    for i in range(5):
        left = [e for e in mesh.nodes[i].events if isinstance(e, NodeLeft) and e.node_id == gone]
        assert left and left[0].reason == "unreachable"
        assert mesh.nodes[i].router.members.nodes.get(mesh.nodes[5].router.me) is None
    # node 0 leaves gracefully: a signed WITHDRAW reaches everyone at once
    t0 = mesh.now
    mesh.nodes[0].router.leave(mesh.now)
    mesh.inject_flush(0)
    mesh.run_for(0.1)
    me0 = mesh.nodes[0].router.me.hex()
    for i in range(1, 5):
        ev = [e for e in mesh.nodes[i].events if isinstance(e, NodeLeft) and e.node_id == me0]
        assert ev and ev[0].reason == "withdraw" and ev[0].at_s - t0 < 0.05
        assert f"{mesh.nodes[0].router.identity.mesh_address}/128" not in mesh.nodes[i].routes


def _reboot(mesh: SimMesh, i: int, seed: int) -> Router:
    """Node i boots again (from a power cut or a restart): same key, a new router (new epoch, sequence
    numbers from 1), an empty kernel table, its interfaces added back."""
    new = Router(mesh.nodes[i].router.identity, TrustStore(list(mesh.trust_anchors)), mesh.config,
                 random.Random(seed), mesh.now)
    mesh.nodes[i].router = new
    mesh.nodes[i].table = MemoryRouteTable()
    mesh.nodes[i].alive = True
    for ln in mesh.links:
        if i in (ln.a, ln.b):
            new.add_interface(ln.a_if if ln.a == i else ln.b_if, mesh.now)
    mesh.inject_flush(i)
    return new


def test_restarted_node_is_taken_back_and_its_lsa_jumps_past_the_old_one():
    mesh = SimMesh(5, seed=9, grants={2: ("2001:db8:2::/48",)})
    ring(mesh, 5)
    assert mesh.run_until_converged(1.0) is not None
    mesh.nodes[2].router.set_prefixes(["2001:db8:2::/48"], mesh.now)
    mesh.run_for(2.0)
    old_seq = mesh.nodes[2].router.origination.seq
    assert old_seq >= 2 and "2001:db8:2::/48" in mesh.nodes[0].routes
    # node 2 reboots: same key, new router (new epoch, sequence numbers from 1)
    ident = mesh.nodes[2].router.identity
    new = _reboot(mesh, 2, 999)
    took = mesh.run_until_converged(2.0)
    assert took is not None
    mesh.run_for(1.0)
    assert new.origination.seq > old_seq
    for i in (0, 1, 3, 4):
        other = mesh.nodes[i].router.lsdb.get(ident.node_id)
        assert other is not None and other.raw == new.lsdb.get(ident.node_id).raw
        assert "2001:db8:2::/48" not in mesh.nodes[i].routes  # the old announcement is gone


def test_a_node_back_from_a_power_cut_long_enough_to_be_pruned_is_routed_to_again():
    # node 2 loses power until everyone has pruned it (a tombstone remembers its old sequence number);
    # it boots with sequence numbers from 1, so its neighbours must show it the old number to jump past
    cfg = RouterConfig(dead_node_timeout_s=5.0)
    mesh = SimMesh(4, seed=10, config=cfg)
    line(mesh, 4)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(3.0)
    ident = mesh.nodes[2].router.identity
    old_seq = mesh.nodes[2].router.origination.seq
    mesh.kill(2)
    mesh.run_for(12.0)
    for i in (0, 1, 3):
        e = mesh.nodes[i].router.lsdb.get(ident.node_id)
        assert e is not None and e.lsa is None and e.seq == old_seq  # pruned: a tombstone
    new = _reboot(mesh, 2, 998)
    assert mesh.run_until_converged(5.0) is not None
    assert new.origination.seq > old_seq
    assert mesh.all_pairs_ok()
    for i in (0, 1, 3):
        e = mesh.nodes[i].router.lsdb.get(ident.node_id)
        assert e is not None and e.lsa is not None and e.raw == new.lsdb.get(ident.node_id).raw


def test_new_node_joins_converged_mesh():
    mesh = SimMesh(8, seed=12)
    ring(mesh, 8)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    j = mesh.add_node()
    mesh.connect(j, 3)
    took = mesh.run_until_converged(1.0)
    assert took is not None and took < 1.0


def test_grid_reroutes_after_silent_cut_within_detection_time():
    mesh = SimMesh(36, seed=23)
    grid(mesh, 6, 6)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(2.0)
    path = mesh.mesh_route(0, 35)
    a, b = path[2], path[3]  # a link in the middle of the current path
    detect, outage = measure_cut(mesh, a, b, poll_s=0.005)
    assert detect <= DEAD_S + SLOT_JITTER_S + 0.005
    assert outage <= DEAD_S + 0.1  # detection + flooding across a 6x6 grid
    new_path = mesh.mesh_route(0, 35)
    assert new_path is not None and (a, b) not in zip(new_path, new_path[1:], strict=False)


def test_a_lost_neighbour_is_reported_with_the_time_it_was_declared_gone():
    mesh = SimMesh(3, seed=5)
    mesh.connect(0, 1, loss=0.2)  # hellos and keepalives lost on this link
    mesh.connect(1, 2)
    assert mesh.run_until_converged(2.0) is not None
    mesh.run_for(20.0)
    r1 = mesh.nodes[1].router
    by_id = {v.node_id: v for v in r1.neighbours()}
    lossy = by_id[mesh.nodes[0].router.me.hex()]
    clean = by_id[mesh.nodes[2].router.me.hex()]
    assert 0.1 < lossy.ctl_missed / (lossy.ctl_missed + lossy.ctl_received) < 0.3
    assert clean.ctl_missed == 0 and clean.ctl_received > 100
    mesh.link_between(1, 2).up = False
    t_cut = mesh.now
    mesh.run_for(2.0)
    lost = {v.node_id: v for v in r1.lost_neighbours()}[mesh.nodes[2].router.me.hex()]  # (the lossy one may bounce)
    assert lost.reason == "dead"
    gone_at = mesh.now - lost.down_for_s  # declared gone one dead interval after the cut
    assert t_cut < gone_at <= t_cut + DEAD_S + 0.1
    mesh.link_between(1, 2).up = True
    assert mesh.run_until_converged(2.0) is not None
    assert mesh.nodes[2].router.me.hex() not in {v.node_id for v in r1.lost_neighbours()}  # UP again: forgotten
