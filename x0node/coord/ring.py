"""Consistent hashing over node ids (Karger et al. 1997; Dynamo's preference lists, DeCandia et al. 2007).

Rules and invariants:
- Each node owns VNODES points on a 64-bit ring at BLAKE2b(node id, point index); a key hashes to
  BLAKE2b(key) and its preference list is the first `n` distinct nodes met walking clockwise.
- Sloppy quorum: an intended replica that is not alive is replaced by the next alive node on the walk
  that is not already chosen, and that stand-in is told whom it holds the write for (the hint).
- Adding or removing one node moves only the keys of the arcs it owns; the other replicas of a key
  stay where they were. Pure and deterministic: the same node set gives the same lists everywhere.
"""

from __future__ import annotations

import bisect
import hashlib

VNODES = 32


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"x0node-kv-ring").digest(), "big")


def key_hash(key: str) -> int:
    return _h(b"k" + key.encode())


class Ring:
    def __init__(self, nodes: set[bytes] | frozenset[bytes]) -> None:
        self.nodes = frozenset(nodes)
        points = sorted((_h(b"n" + n + i.to_bytes(2, "big")), n) for n in self.nodes for i in range(VNODES))
        self._hashes = [p for p, _ in points]
        self._owners = [n for _, n in points]

    def walk(self, key: str) -> list[bytes]:
        """Every node once, in ring order from the key."""
        if not self._owners:
            return []
        start = bisect.bisect_left(self._hashes, key_hash(key))
        seen: list[bytes] = []
        for i in range(len(self._owners)):
            n = self._owners[(start + i) % len(self._owners)]
            if n not in seen:
                seen.append(n)
                if len(seen) == len(self.nodes):
                    break
        return seen

    def preference(self, key: str, n: int, alive: set[bytes] | frozenset[bytes]) -> list[tuple[bytes, bytes | None]]:
        """[(replica, intended node or None)]: up to n replicas, stand-ins carrying the node they cover."""
        order = self.walk(key)
        intended = order[:n]
        spare = [x for x in order[n:] if x in alive]
        out: list[tuple[bytes, bytes | None]] = []
        for node in intended:
            if node in alive:
                out.append((node, None))
            elif spare:
                out.append((spare.pop(0), node))
        return out
