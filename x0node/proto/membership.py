"""Node manager: which nodes belong to the mesh, their lifecycle and health, and topology statistics.

Lifecycle of a node (by node id): unknown -> joined (first verified LSA seen; registered with its role
from the certificate) -> reachable / unreachable (from each SPF) -> left (signed WITHDRAW, revoked, aged
out, or unreachable for longer than the dead-node timeout, which prunes it).

Rules:
- Only the router feeds this, after verification; it holds at most MAX_LSAS nodes.
- `prune_due` lists nodes unreachable for at least `dead_node_timeout_s`; the router prunes them.
- Pure bookkeeping: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from x0node.proto.protocol import DEAD_NODE_TIMEOUT_S, MAX_LSAS


@dataclass
class NodeRecord:
    node_id: bytes
    role: int | None
    joined_s: float
    last_lsa_s: float
    reachable: bool = False
    unreachable_since_s: float | None = None
    metric: float | None = None
    hops: int | None = None


class Membership:
    def __init__(self, dead_node_timeout_s: float = DEAD_NODE_TIMEOUT_S, max_nodes: int = MAX_LSAS) -> None:
        self.nodes: dict[bytes, NodeRecord] = {}
        self.dead_node_timeout_s = dead_node_timeout_s
        self.max_nodes = max_nodes
        self.joins = 0
        self.leaves = 0

    def register(self, node_id: bytes, role: int | None, now: float) -> bool:
        """A verified LSA of this node was installed. Returns True if the node is new (joined)."""
        rec = self.nodes.get(node_id)
        if rec is not None:
            rec.last_lsa_s = now
            rec.role = role
            return False
        if len(self.nodes) >= self.max_nodes:
            return False
        self.nodes[node_id] = NodeRecord(node_id, role, now, now, unreachable_since_s=now)
        self.joins += 1
        return True

    def leave(self, node_id: bytes) -> bool:
        if self.nodes.pop(node_id, None) is None:
            return False
        self.leaves += 1
        return True

    def update_reachability(self, reach: dict[bytes, tuple[float, int]], now: float) -> None:
        """`reach`: node -> (metric, hops) for every node SPF reached."""
        for nid, rec in self.nodes.items():
            r = reach.get(nid)
            if r is not None:
                rec.reachable, rec.unreachable_since_s = True, None
                rec.metric, rec.hops = r
            else:
                if rec.reachable or rec.unreachable_since_s is None:
                    rec.unreachable_since_s = now
                rec.reachable, rec.metric, rec.hops = False, None, None

    def prune_due(self, now: float) -> list[bytes]:
        return [
            nid
            for nid, rec in self.nodes.items()
            if not rec.reachable
            and rec.unreachable_since_s is not None
            and now - rec.unreachable_since_s >= self.dead_node_timeout_s
        ]

    def next_prune(self) -> float | None:
        times = [
            rec.unreachable_since_s + self.dead_node_timeout_s
            for rec in self.nodes.values()
            if not rec.reachable and rec.unreachable_since_s is not None
        ]
        return min(times) if times else None

    def statistics(self, links: dict[bytes, list[tuple[bytes, int, int]]]) -> dict:
        """Topology statistics from {node: [(neighbour, cost, quality), ...]} (two-way links only)."""
        listed = {u: {v for v, _, _ in lst} for u, lst in links.items()}
        edges = 0
        quality_hist: dict[int, int] = {}
        for u, lst in links.items():
            for v, _c, q in lst:
                if u < v and u in listed.get(v, ()):
                    edges += 1
                    quality_hist[q] = quality_hist.get(q, 0) + 1
        n = len(links)
        hops = [r.hops for r in self.nodes.values() if r.hops is not None]
        return {
            "nodes": len(self.nodes),
            "reachable": sum(1 for r in self.nodes.values() if r.reachable),
            "links": edges,
            "mean_degree": round(2 * edges / n, 3) if n else 0.0,
            "max_hops": max(hops) if hops else 0,
            "quality_histogram": quality_hist,
            "joins": self.joins,
            "leaves": self.leaves,
        }
