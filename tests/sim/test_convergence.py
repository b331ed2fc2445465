"""Convergence of the routing core on line, ring, grid and random meshes (simulated time)."""

import random

import networkx as nx
import pytest

from tests.sim.mesh import SimMesh, grid, line, random_connected, ring


def _check_metrics_consistent(mesh: SimMesh) -> None:
    # a route's metric equals the sum of advertised costs along the walked path
    for a in range(0, len(mesh.nodes), max(1, len(mesh.nodes) // 10)):
        for b in range(len(mesh.nodes)):
            if a == b:
                continue
            path = mesh.mesh_route(a, b)
            assert path is not None
            dest = f"{mesh.nodes[b].router.identity.mesh_address}/128"
            assert mesh.nodes[a].routes[dest][2] >= 100 * (len(path) - 1)


@pytest.mark.parametrize(
    ("name", "build", "n", "limit_s"),
    [
        ("line10", lambda s: line(s, 10), 10, 1.0),
        ("ring12", lambda s: ring(s, 12), 12, 1.0),
        ("grid8x8", lambda s: grid(s, 8, 8), 64, 1.0),
    ],
)
def test_small_topologies_converge_within_a_second(name, build, n, limit_s):
    mesh = SimMesh(n, seed=7)
    build(mesh)
    took = mesh.run_until_converged(limit_s, step_s=0.01)
    assert took is not None, f"{name} did not converge: {mesh.broken_pairs()[:5]}"
    _check_metrics_consistent(mesh)
    # stays converged, and no datagram was refused in a clean mesh
    mesh.run_for(2.0)
    assert mesh.all_pairs_ok()
    for node in mesh.nodes:
        bad = {
            k: v
            for k, v in node.router.out.drops.items()
            if v and k not in ("not_for_us", "unknown_sender", "stale")
        }
        assert bad == {}, bad


def test_ring_takes_the_shorter_way_round():
    mesh = SimMesh(8, seed=3)
    ring(mesh, 8)
    assert mesh.run_until_converged(1.0) is not None
    assert mesh.mesh_route(0, 2) == [0, 1, 2]
    assert mesh.mesh_route(0, 6) == [0, 7, 6]


def test_prefers_good_links_over_lossy_ones():
    # 0-1-3 over clean links vs 0-2-3 where 0-2 loses 20 % of packets: traffic avoids the lossy link
    mesh = SimMesh(4, seed=5)
    mesh.connect(0, 1)
    mesh.connect(1, 3)
    mesh.connect(0, 2, loss=0.2)
    mesh.connect(2, 3)
    assert mesh.run_until_converged(2.0) is not None
    mesh.run_for(10.0)
    assert mesh.mesh_route(0, 3) == [0, 1, 3]


def test_random_200_nodes_converge_on_lossy_links():
    rng = random.Random(11)
    mesh = SimMesh(200, seed=11)
    random_connected(mesh, 200, 100, rng, loss=0.01)
    took = mesh.run_until_converged(5.0, step_s=0.1)
    assert took is not None, mesh.broken_pairs()[:5]
    stats = mesh.nodes[0].router.stats()
    assert stats.lsdb_size == 200 and stats.mesh.reachable == 199
    assert stats.mesh.links == 299
    # cut a link that is not a bridge: both ends reach everyone again within detection + flooding
    g = nx.Graph([(ln.a, ln.b) for ln in mesh.links])
    bridges = {frozenset(e) for e in nx.bridges(g)}
    link = next(
        ln
        for ln in mesh.links
        if frozenset((ln.a, ln.b)) not in bridges and mesh.mesh_route(ln.a, ln.b) == [ln.a, ln.b]
    )
    link.up = False
    mesh.run_for(0.4)
    for end in (link.a, link.b):
        assert all(mesh.mesh_route(end, j) is not None for j in range(200) if j != end)


def test_random_mesh_survives_link_churn():
    rng = random.Random(17)
    mesh = SimMesh(30, seed=17)
    random_connected(mesh, 30, 25, rng, loss=0.02)
    assert mesh.run_until_converged(2.0) is not None
    for _ in range(25):  # links fail and come back at random moments
        ln = rng.choice(mesh.links)
        ln.up = not ln.up
        mesh.run_for(rng.uniform(0.05, 0.6))
    for ln in mesh.links:
        ln.up = True
    took = mesh.run_until_converged(3.0)
    assert took is not None, mesh.broken_pairs()[:5]
    for node in mesh.nodes:
        assert node.router.stats().retransmit_queue < 50


def test_shared_segment_with_several_neighbours():
    # nodes 0..3 share one broadcast link; 3 also has a point-to-point link to 4
    mesh = SimMesh(5, seed=13)
    seg = mesh.connect_segment([0, 1, 2, 3], loss=0.01)
    mesh.connect(3, 4)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(3.0)
    r0 = mesh.nodes[0].router
    assert r0.stats().neighbours_up == 3  # three neighbours on one interface
    assert mesh.mesh_route(0, 4) == [0, 3, 4]
    # one member vanishes silently: the others notice it within the dead interval
    mesh.kill(2)
    mesh.run_for(0.3)
    assert r0.stats().neighbours_up == 2
    assert mesh.all_pairs_ok([0, 1, 3, 4])
    assert seg.up
