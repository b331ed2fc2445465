import random

import networkx as nx
import pytest

from x0node.proto.spf import INF, build_graph, dijkstra, shortest_paths


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
    links = {a: [(b, 10), (c, 10), (a, 1)], b: [(a, 12)], c: []}  # c does not list a; a lists itself
    ids, index, graph = build_graph(links)
    assert ids == [b, c, a]
    assert [v for v, _ in graph.edges[index[a]]] == [index[b]]
    assert [v for v, _ in graph.edges[index[b]]] == [index[a]]
    assert graph.edges[index[c]] == ()
    dist, first = shortest_paths(graph, index[a])
    assert dist[index[b]] == 10 and first[index[b]] == index[b] and first[index[c]] == -1


def test_rejects_non_positive_costs():
    with pytest.raises(ValueError):
        dijkstra([[(1, 0)], [(0, 0)]], 0)


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


def test_tie_break_independent_of_adjacency_order():
    rng = random.Random(9)
    n = 60
    edges = set()
    while len(edges) < 200:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            edges.add((min(a, b), max(a, b)))
    adj = [[] for _ in range(n)]
    for a, b in edges:  # all costs equal: many ties
        adj[a].append((b, 1))
        adj[b].append((a, 1))
    ref = dijkstra(adj, 0)
    for _ in range(5):
        for lst in adj:
            rng.shuffle(lst)
        assert dijkstra(adj, 0) == ref
    # and the chosen first hop is the lowest-index neighbour of 0 on any shortest path
    g = nx.Graph(list(edges))
    d = nx.single_source_shortest_path_length(g, 0)
    for v in range(1, n):
        if v in d and d[v] > 0:
            cands = [f for f in g[0] if nx.shortest_path_length(g, f, v) == d[v] - 1]
            assert ref[1][v] == min(cands)
