import random

import networkx as nx

from x0node.proto.spf import INF, build_graph, dijkstra


def test_simple_paths_and_first_hops():
    # 0 -1- 1 -1- 2 ; 0 -5- 2
    adj = [[(1, 1), (2, 5)], [(0, 1), (2, 1)], [(0, 5), (1, 1)]]
    dist, first = dijkstra(adj, 0)
    assert dist == [0, 1, 2] and first[2] == 1 and first[1] == 1


def test_equal_cost_tie_break_lowest_first_hop():
    # 0 -> 1 -> 3 and 0 -> 2 -> 3, equal cost; first hop must be 1 whatever the list order
    adj = [[(2, 1), (1, 1)], [(0, 1), (3, 1)], [(0, 1), (3, 1)], [(2, 1), (1, 1)]]
    assert dijkstra(adj, 0)[1][3] == 1


def test_unreachable():
    dist, first = dijkstra([[(1, 1)], [(0, 1)], []], 0)
    assert dist[2] == INF and first[2] == -1


def test_build_graph_two_way_only_and_sorted_ids():
    a, b, c = b"\x03" * 16, b"\x01" * 16, b"\x02" * 16
    links = {a: [(b, 10), (c, 10)], b: [(a, 12)], c: []}  # c does not list a
    ids, index, adj = build_graph(links)
    assert ids == [b, c, a]
    assert adj[index[a]] == [(index[b], 10)]
    assert adj[index[b]] == [(index[a], 12)]
    assert adj[index[c]] == []


def test_matches_networkx_distances():
    rng = random.Random(4)
    g = nx.gnm_random_graph(150, 600, seed=4)
    adj = [[] for _ in range(150)]
    for u, v in g.edges:
        w = rng.randint(1, 50)
        g[u][v]["weight"] = w
        adj[u].append((v, w))
        adj[v].append((u, w))
    dist, first = dijkstra(adj, 0)
    ref = nx.single_source_dijkstra_path_length(g, 0)
    for v in range(150):
        assert (dist[v] if dist[v] != INF else None) == ref.get(v)
        if v != 0 and v in ref:
            # the first hop lies on a shortest path
            f = first[v]
            assert g[0][f]["weight"] + nx.dijkstra_path_length(g, f, v) == ref[v]
