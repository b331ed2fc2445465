"""The kernel seam: where the routing core's route changes land, and what comes back.

The core hands out `RouteChange`s (x0node/proto/rib.py) and takes back one `RouteResult` per change;
only routes a table confirmed count as installed. Two tables implement the seam: the kernel's
(`x0node/io/kernel_routes.py`, raw rtnetlink) and `MemoryRouteTable` here, an in-memory table for
simulations and unit tests that behaves the same way at the seam.

Rules every route table keeps:
- `apply` takes the changes in order and returns one result per change, in the same order. Each change
  stands on its own: one that cannot be applied (an IPv4 or malformed destination, a missing
  interface, a kernel refusal) gets an error result and the others are still applied. `apply` never
  raises because of one change.
- Error reasons are short stable labels: "unsupported_family", "bad_destination", "bad_next_hop",
  "no_interface", or the kernel's errno name in lower case ("enetunreach").
- Deleting a route that is not there is done (nothing to do). A "metric" change (same next hop, new
  metric) may be a no-op for a table that keeps one priority for all our routes.
- `ours()` lists the destinations of our own routes the table holds now; we never touch others'.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Protocol

from x0node.proto.rib import RouteChange, RouteResult


class RouteTable(Protocol):
    def apply(self, changes: Sequence[RouteChange]) -> list[RouteResult]: ...

    async def ours(self) -> list[str]: ...


def check_change(ch: RouteChange) -> str | None:
    """The reason a change can never be applied to an IPv6 table, or None."""
    try:
        net = ipaddress.ip_network(ch.dest, strict=True)
    except ValueError:
        return "bad_destination"
    if net.version != 6:
        return "unsupported_family"
    if ch.op in ("add", "replace") and ch.via:
        try:
            ipaddress.IPv6Address(ch.via.split("%", 1)[0])
        except ValueError:
            return "bad_next_hop"
    return None


async def flush(table: RouteTable) -> int:
    """Delete every route of ours the table holds (stale ones at start, all at exit). Returns how many."""
    dests = await table.ours()
    results = table.apply([RouteChange("del", d, "", "", 0) for d in dests])
    return sum(1 for r in results if r.error is None)


class MemoryRouteTable:
    """An in-memory IPv6 route table with the kernel's behaviour at the seam.

    `interfaces`: when given, a route through any other interface is refused ("no_interface").
    `refuse`: a hook returning a reason to refuse a change (a kernel refusal), or None.
    `foreign`: routes that are not ours; never touched, never listed by `ours()`.
    """

    def __init__(self, interfaces: set[str] | None = None,
                 refuse: Callable[[RouteChange], str | None] | None = None) -> None:
        self.routes: dict[str, tuple[str, str, int]] = {}  # dest -> (ifname, via, metric)
        self.foreign: dict[str, tuple[str, str, int]] = {}
        self.interfaces = interfaces
        self.refuse = refuse
        self.applied = 0
        self.errors = 0

    def _apply_one(self, ch: RouteChange) -> str | None:
        reason = check_change(ch)
        if reason is not None:
            return reason
        if ch.op == "del":
            self.routes.pop(ch.dest, None)
            return None
        if self.interfaces is not None and ch.ifname not in self.interfaces:
            return "no_interface"
        reason = self.refuse(ch) if self.refuse is not None else None
        if reason is not None:
            return reason
        self.routes[ch.dest] = (ch.ifname, ch.via, ch.metric)
        return None

    def apply(self, changes: Sequence[RouteChange]) -> list[RouteResult]:
        out = []
        for ch in changes:
            reason = self._apply_one(ch)
            if reason is None:
                self.applied += 1
            else:
                self.errors += 1
            out.append(RouteResult(ch, reason))
        return out

    async def ours(self) -> list[str]:
        return sorted(self.routes)
