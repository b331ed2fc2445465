"""Shortest path first: heap Dijkstra over integer node indices and adjacency lists.

Rules:
- Nodes are integers 0..n-1; the caller numbers them in ascending node-id order so that every tie
  below is a tie-break by node id and the result never depends on LSDB insertion order.
- Edge costs are positive integers. Unreachable nodes have distance INF and first hop -1.
- Equal-cost paths: the path whose first hop has the lower index wins (deterministic).
- The heap key of a node is one integer, (distance, first hop, node) packed into bit fields, so that
  (a) integer comparison orders by distance, then first hop, which *is* the tie-break, and
  (b) relaxing an edge is one addition: key(u) - u + (cost << S2 | v). Edges are stored pre-packed in
  `SpfGraph` (built once per LSDB change), which keeps the inner loop to an add, a compare and a push.
- `build_graph` uses only two-way links: u->v counts only if v's LSA also lists u. Each node lists a
  neighbour at most once (the LSA decoder rejects duplicates).
- Pure: this is the hot path measured by bench/spf.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush

INF = float("inf")
_UNREACHED = 1 << 256


@dataclass(frozen=True)
class SpfGraph:
    """Adjacency in packed form: edges[u] = ((v, cost << 2*bits | v), ...)."""

    bits: int
    edges: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def from_adjacency(cls, adj: list[list[tuple[int, int]]]) -> SpfGraph:
        bits = max(1, (len(adj) - 1).bit_length())
        s2 = 2 * bits
        for lst in adj:
            for _, c in lst:
                if not (isinstance(c, int) and c > 0):
                    raise ValueError("edge costs must be positive integers")
        return cls(bits, tuple(tuple((v, (c << s2) | v) for v, c in lst) for lst in adj))

    def __len__(self) -> int:
        return len(self.edges)


def shortest_paths(graph: SpfGraph, src: int) -> tuple[list[float], list[int]]:
    """Distances and first hops (node indices) from `src`; first hop of `src` is `src`."""
    edges = graph.edges
    n = len(edges)
    s1 = graph.bits
    s2 = 2 * s1
    mask = (1 << s1) - 1
    key = [_UNREACHED] * n
    key[src] = (src << s1) | src
    heap: list[int] = []
    push, pop = heappush, heappop
    for v, e in edges[src]:
        k = e | (v << s1)  # first hop of a direct neighbour is itself
        if k < key[v]:
            key[v] = k
            push(heap, k)
    while heap:
        k_u = pop(heap)
        u = k_u & mask
        if k_u != key[u]:
            continue  # stale entry
        base = k_u - u
        for v, e in edges[u]:
            k = base + e
            if k < key[v]:
                key[v] = k
                push(heap, k)
    dist = [INF if k == _UNREACHED else k >> s2 for k in key]
    first = [-1 if k == _UNREACHED else (k >> s1) & mask for k in key]
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
    s2 = 2 * bits
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
                row.append((iv, (c << s2) | iv))
        row.sort()
        rows[iu] = tuple(row)
    return ids, index, SpfGraph(bits, tuple(rows))
