"""Client address pools: carving one configured IPv4 and one IPv6 range into equal per-node prefixes.

Rules and invariants:
- Pool index i is the i-th subnet of the configured length in each range, in address order; the IPv4
  and IPv6 prefixes of one index are handed out together, so the number of pools is the smaller of the
  two subnet counts (capped at MAX_POOLS).
- Two different indexes never overlap (subnets of one length inside one range are disjoint), so "no two
  nodes hold overlapping pools" reduces to "no index is held by two nodes", which the replicated
  machine (machine.py) guarantees.
- Pure: no I/O. `overlapping` is the independent check the fault tests use on what nodes report.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_POOLS = 65536
"""Most pools a group hands out (bounds the replicated table)."""


@dataclass(frozen=True)
class PoolLayout:
    v4: str
    v4_len: int
    v6: str
    v6_len: int

    def __post_init__(self) -> None:
        n4, n6 = ipaddress.IPv4Network(self.v4), ipaddress.IPv6Network(self.v6)
        if not n4.prefixlen <= self.v4_len <= 30:
            raise ValueError(f"IPv4 pool prefix length must be between {n4.prefixlen} and 30")
        if not n6.prefixlen <= self.v6_len <= 64:
            raise ValueError(f"IPv6 pool prefix length must be between {n6.prefixlen} and 64")

    @property
    def count(self) -> int:
        n4 = 1 << (self.v4_len - ipaddress.IPv4Network(self.v4).prefixlen)
        n6 = 1 << (self.v6_len - ipaddress.IPv6Network(self.v6).prefixlen)
        return min(n4, n6, MAX_POOLS)

    def prefixes(self, index: int) -> tuple[str, str]:
        if not 0 <= index < self.count:
            raise ValueError("pool index out of range")
        n4, n6 = ipaddress.IPv4Network(self.v4), ipaddress.IPv6Network(self.v6)
        a4 = int(n4.network_address) + (index << (32 - self.v4_len))
        a6 = int(n6.network_address) + (index << (128 - self.v6_len))
        return (f"{ipaddress.IPv4Address(a4)}/{self.v4_len}", f"{ipaddress.IPv6Address(a6)}/{self.v6_len}")

    def as_dict(self) -> dict[str, object]:
        return {"v4": self.v4, "v4_len": self.v4_len, "v6": self.v6, "v6_len": self.v6_len}


def overlapping(held: dict[str, list[str]]) -> list[tuple[str, str, str, str]]:
    """Pairs (node a, prefix a, node b, prefix b) whose prefixes overlap, over every node's held list."""
    items = [(node, ipaddress.ip_network(p)) for node, ps in held.items() for p in ps]
    out = []
    for i, (na, pa) in enumerate(items):
        for nb, pb in items[i + 1:]:
            if na != nb and pa.version == pb.version and pa.overlaps(pb):
                out.append((na, str(pa), nb, str(pb)))
    return out
