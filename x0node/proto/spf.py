"""Shortest path first: heap Dijkstra over integer node indices and adjacency lists.

Rules:
- Nodes are integers 0..n-1; the caller numbers them in ascending node-id order so that every tie
  below is a tie-break by node id and the result never depends on LSDB insertion order.
- Edge costs are positive integers. Unreachable nodes have distance INF and first hop -1.
- Equal-cost paths: the path whose first hop has the lower index wins (deterministic). A node's first
  hop is final when it is popped: every predecessor on a shortest path has a strictly smaller distance
  (costs are positive), so it was popped, and relaxed the node, before.
- The heap key of a node is one small integer, distance << bits | node, so the heap compares plain
  ints and an edge relaxation is one addition: key(u) - u + (cost << bits | v). Edges are stored
  pre-packed in `SpfGraph` (built once per LSDB change).
- `build_graph` uses only two-way links: u->v counts only if v's LSA also lists u. Each node lists a
  neighbour at most once (the LSA decoder rejects duplicates).
- Pure: this is the hot path measured by bench/spf.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush

INF = float("inf")
_UNREACHED = 1 << 62


@dataclass(frozen=True)
class SpfGraph:
    """Adjacency in packed form: edges[u] = ((v, cost << bits | v), ...)."""

    bits: int
    edges: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def from_adjacency(cls, adj: list[list[tuple[int, int]]]) -> SpfGraph:
        bits = max(1, (len(adj) - 1).bit_length())
        for lst in adj:
            for _, c in lst:
                if not (isinstance(c, int) and c > 0):
                    raise ValueError("edge costs must be positive integers")
        return cls(bits, tuple(tuple((v, (c << bits) | v) for v, c in lst) for lst in adj))

    def __len__(self) -> int:
        return len(self.edges)


def shortest_paths(graph: SpfGraph, src: int) -> tuple[list[float], list[int]]:
    """Distances and first hops (node indices) from `src`; the first hop of `src` is `src`."""
    edges = graph.edges
    n = len(edges)
    bits = graph.bits
    mask = (1 << bits) - 1
    key = [_UNREACHED] * n
    first = [-1] * n
    key[src] = src
    first[src] = src
    heap: list[int] = []
    push, pop = heappush, heappop
    for v, e in edges[src]:
        kv = key[v]
        if e < kv:
            key[v] = e
            first[v] = v  # a direct neighbour is its own first hop
            push(heap, e)
        elif e == kv and v < first[v]:
            first[v] = v
    while heap:
        k_u = pop(heap)
        u = k_u & mask
        if k_u != key[u]:
            continue  # stale entry
        base = k_u - u
        fu = first[u]
        for v, e in edges[u]:
            k = base + e
            kv = key[v]
            if k > kv:
                continue
            if k < kv:
                key[v] = k
                first[v] = fu
                push(heap, k)
            elif fu < first[v]:
                first[v] = fu  # equal distance through a lower first hop
    dist = [INF if k == _UNREACHED else k >> bits for k in key]
    return dist, first


def dijkstra(adj: list[list[tuple[int, int]]], src: int) -> tuple[list[float], list[int]]:
    """Convenience: `shortest_paths` on a plain adjacency list adj[u] = [(v, cost), ...]."""
    return shortest_paths(SpfGraph.from_adjacency(adj), src)


def build_graph(
    links: dict[bytes, list[tuple[bytes, int]]],
) -> tuple[list[bytes], dict[bytes, int], SpfGraph]:
    """From {node: [(neighbour, cost), ...]} to (ids sorted, index, two-way packed graph)."""
    ids = sorted(links)
    index = {nid: i for i, nid in enumerate(ids)}
    listed = {u: {v for v, _ in lst} for u, lst in links.items()}
    bits = max(1, (len(ids) - 1).bit_length())
    rows: list[tuple[tuple[int, int], ...]] = [()] * len(ids)
    get = index.get
    for u, lst in links.items():
        iu = index[u]
        row = []
        for v, c in lst:
            iv = get(v)
            if iv is not None and iv != iu and u in listed[v]:
                if c <= 0:
                    raise ValueError("edge costs must be positive integers")
                row.append((iv, (c << bits) | iv))
        row.sort()
        rows[iu] = tuple(row)
    return ids, index, SpfGraph(bits, tuple(rows))
