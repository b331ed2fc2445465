"""SPF benchmark: our heap Dijkstra (x0node.proto.spf) against networkx on the same random meshes.

For 100, 1000 and 5000 nodes: a random connected mesh (random spanning tree plus extra links, mean
degree ~6, integer costs 100..400, fixed seed). Both sides get their graph prepared beforehand (ours:
`SpfGraph`, built once per LSDB change in the router; networkx: `nx.Graph`); the time to build ours
from LSDB-shaped input is reported separately.

- x0node: `shortest_paths(graph, src)` -> distance and first hop for every node (a routing table).
- networkx (the `ratio_N` peer): the faster of `single_source_dijkstra` (distances and paths) and
  `dijkstra_predecessor_and_distance` (distances and predecessors), i.e. the networkx calls that give
  enough to route.
- networkx distances only (`ratio_dist_only_N`): `single_source_dijkstra_path_length`, which computes
  less than we do; reported for transparency.

Each figure is the median over 5 sources of the median of several runs. Results are checked equal to
networkx's distances. The last line is one JSON object.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time

import networkx as nx

from x0node.proto.spf import SpfGraph, build_graph, shortest_paths

SIZES = (100, 1000, 5000)
MEAN_DEGREE = 6
SEED = 20261124


def random_mesh(n: int, rng: random.Random) -> list[tuple[int, int, int]]:
    edges: dict[tuple[int, int], int] = {}
    order = list(range(n))
    rng.shuffle(order)
    for k in range(1, n):
        a, b = order[k], order[rng.randrange(k)]
        edges[(min(a, b), max(a, b))] = rng.randint(100, 400)
    target = n * MEAN_DEGREE // 2
    while len(edges) < target:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            edges.setdefault((min(a, b), max(a, b)), rng.randint(100, 400))
    return [(a, b, c) for (a, b), c in edges.items()]


def timed(fn, reps: int) -> float:
    """Median wall time of fn() in ms."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(out)


def main() -> int:
    rng = random.Random(SEED)
    rows = []
    result: dict[str, object] = {"bench": "spf"}
    for n in SIZES:
        edges = random_mesh(n, rng)
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        g = nx.Graph()
        g.add_nodes_from(range(n))
        for a, b, c in edges:
            adj[a].append((b, c))
            adj[b].append((a, c))
            g.add_edge(a, b, weight=c)
        for lst in adj:
            lst.sort()
        graph = SpfGraph.from_adjacency(adj)
        sources = [rng.randrange(n) for _ in range(5)]
        reps = 20 if n <= 1000 else 6
        ours, nx_ssd, nx_pred, nx_len = [], [], [], []
        for s in sources:
            dist, _first = shortest_paths(graph, s)
            ref = nx.single_source_dijkstra_path_length(g, s, weight="weight")
            if any(dist[v] != ref[v] for v in range(n)):
                print(f"MISMATCH with networkx at n={n} source={s}", file=sys.stderr)
                return 1
            ours.append(timed(lambda s=s, graph=graph: shortest_paths(graph, s), reps))
            nx_ssd.append(timed(lambda s=s, g=g: nx.single_source_dijkstra(g, s, weight="weight"), reps))
            nx_pred.append(
                timed(lambda s=s, g=g: nx.dijkstra_predecessor_and_distance(g, s, weight="weight"), reps)
            )
            nx_len.append(
                timed(lambda s=s, g=g: nx.single_source_dijkstra_path_length(g, s, weight="weight"), reps)
            )
        ids = [i.to_bytes(16, "big") for i in range(n)]
        links = {ids[u]: [(ids[v], c) for v, c in adj[u]] for u in range(n)}
        build_ms = timed(lambda links=links: build_graph(links), 5 if n <= 1000 else 3)
        o = statistics.median(ours)
        ssd, pred, dl = statistics.median(nx_ssd), statistics.median(nx_pred), statistics.median(nx_len)
        peer = min(ssd, pred)
        rows.append((n, len(edges), o, ssd, pred, dl, peer / o, dl / o, build_ms))
        result[f"x0node_ms_{n}"] = round(o, 3)
        result[f"networkx_ms_{n}"] = round(peer, 3)
        result[f"ratio_{n}"] = round(peer / o, 2)
        result[f"networkx_dist_only_ms_{n}"] = round(dl, 3)
        result[f"ratio_dist_only_{n}"] = round(dl / o, 2)
        result[f"build_graph_ms_{n}"] = round(build_ms, 3)
    print(
        f"{'nodes':>6} {'links':>7} {'x0node ms':>10} {'nx ssd ms':>10} {'nx pred ms':>11} {'nx dist ms':>11}"
        f" {'ratio':>6} {'ratio dist-only':>16} {'build ms':>9}"
    )
    for n, e, o, ssd, pred, dl, ratio, rdl, b in rows:
        print(
            f"{n:>6} {e:>7} {o:>10.3f} {ssd:>10.3f} {pred:>11.3f} {dl:>11.3f} {ratio:>6.2f} {rdl:>16.2f} {b:>9.3f}"
        )
    print("ratio = min(nx ssd, nx pred) / x0node; ratio dist-only = nx distances-only / x0node;")
    print("build = LSDB-shaped dict -> two-way packed graph (once per LSDB change; in neither ratio)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
