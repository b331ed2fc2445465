"""Shortest path first: heap Dijkstra over integer node indices and adjacency lists.

Rules:
- Nodes are integers 0..n-1; the caller numbers them in ascending node-id order so that every tie
  below is a tie-break by node id and the result never depends on LSDB insertion order.
- Edge costs are positive integers. Unreachable nodes have distance None and first hop -1.
- Equal-cost paths: the path whose first hop has the lower index wins (deterministic).
- `build_graph` uses only two-way links: u->v counts only if v's LSA also lists u.
- Pure and allocation-light: this is the hot path measured by bench/spf.py.
"""

from __future__ import annotations

from heapq import heappop, heappush

INF = float("inf")


def dijkstra(adj: list[list[tuple[int, int]]], src: int) -> tuple[list[float], list[int]]:
    """Distances and first hops from `src`. adj[u] = [(v, cost), ...]."""
    n = len(adj)
    dist: list[float] = [INF] * n
    first = [-1] * n
    done = [False] * n
    dist[src] = 0
    heap: list[tuple[float, int, int]] = [(0, src, src)]
    push, pop = heappush, heappop
    while heap:
        d, fh, u = pop(heap)
        if done[u]:
            continue
        done[u] = True
        first[u] = fh
        for v, c in adj[u]:
            if done[v]:
                continue
            nd = d + c
            dv = dist[v]
            if nd < dv:
                dist[v] = nd
                push(heap, (nd, v if u == src else fh, v))
            elif nd == dv:
                # same distance via another first hop: the heap orders (dist, first hop), so the
                # lower first hop is popped first; just queue the alternative
                push(heap, (nd, v if u == src else fh, v))
    return dist, first


def build_graph(
    links: dict[bytes, list[tuple[bytes, int]]],
) -> tuple[list[bytes], dict[bytes, int], list[list[tuple[int, int]]]]:
    """From {node: [(neighbour, cost), ...]} to (ids sorted, index, two-way adjacency lists)."""
    ids = sorted(links)
    index = {nid: i for i, nid in enumerate(ids)}
    listed = {u: {v for v, _ in lst} for u, lst in links.items()}
    adj: list[list[tuple[int, int]]] = [[] for _ in ids]
    for u, lst in links.items():
        iu = index[u]
        best: dict[int, int] = {}
        for v, c in lst:
            iv = index.get(v)
            if iv is None or iv == iu or u not in listed[v]:
                continue
            if c < best.get(iv, INF):
                best[iv] = c
        adj[iu] = sorted(best.items())
    return ids, index, adj
