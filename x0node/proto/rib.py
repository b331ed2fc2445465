"""Routing information base: the routes SPF wants, the routes the route table confirmed, and the
changes in between.

Rules:
- A route is (dest "addr/len", ifname, via link-local, metric, origin node). One per destination.
- `diff(desired, now)` compares the desired set with what was asked of the route table and returns the
  changes, deletes first (destination order), then "add" / "replace" (new next hop) / "metric" (same
  next hop, new metric), so output is deterministic and applying them in order yields the desired set.
- `installed` is the one table of installed routes: it holds a route only after the route table
  (the kernel, or a fake) confirmed it through `result`. Nothing claims a route the table refused.
- A refusal is counted by reason (`refusals`). The refused route is not asked for again until its next
  hop changes or ROUTE_RETRY_S have passed (`next_retry` says when); a refused delete stays installed
  (the route is still there) and is asked for again at the next diff.
- Bounded by the desired set (one route per destination SPF produced); nothing here is network-fed.
"""

from __future__ import annotations

from dataclasses import dataclass

ROUTE_RETRY_S = 10.0
"""A route the table refused is asked for again after this long (an interface may have come back)."""


@dataclass(frozen=True)
class Route:
    dest: str
    ifname: str
    via: str
    metric: int
    origin: str = ""  # node id (hex) the destination belongs to


@dataclass(frozen=True)
class RouteChange:
    op: str  # "add" | "replace" | "metric" | "del"
    dest: str
    ifname: str
    via: str
    metric: int
    origin: str = ""

    @property
    def route(self) -> Route:
        return Route(self.dest, self.ifname, self.via, self.metric, self.origin)


@dataclass(frozen=True)
class RouteResult:
    """What the route table did with one change: `error` is None when applied, else a reason label
    ("no_interface", "unsupported_family", or the kernel's errno name, lower case: "enetunreach")."""

    change: RouteChange
    error: str | None = None


def _change(op: str, r: Route) -> RouteChange:
    return RouteChange(op, r.dest, r.ifname, r.via, r.metric, r.origin)


class Rib:
    def __init__(self) -> None:
        self.installed: dict[str, Route] = {}  # confirmed by the route table
        self.asked: dict[str, Route] = {}  # what the route table was last asked to hold
        self.refused: dict[str, tuple[Route, float]] = {}  # dest -> (refused route, when)
        self.refusals: dict[str, int] = {}  # route changes refused, by reason

    def _held_back(self, r: Route, now: float) -> bool:
        ref = self.refused.get(r.dest)
        return ref is not None and (ref[0].ifname, ref[0].via) == (r.ifname, r.via) and now < ref[1] + ROUTE_RETRY_S

    def diff(self, desired: dict[str, Route], now: float = 0.0) -> list[RouteChange]:
        out: list[RouteChange] = []
        for dest in sorted(set(self.asked) - set(desired)):
            out.append(_change("del", self.asked.pop(dest)))
        for dest in sorted(desired):
            r = desired[dest]
            cur = self.asked.get(dest)
            if cur is None:
                if not self._held_back(r, now):
                    out.append(_change("add", r))
                    self.asked[dest] = r
            elif (cur.ifname, cur.via) != (r.ifname, r.via):
                if not self._held_back(r, now):
                    out.append(_change("replace", r))
                    self.asked[dest] = r
            elif (cur.metric, cur.origin) != (r.metric, r.origin):
                out.append(_change("metric", r))
                self.asked[dest] = r
        for dest in [d for d in self.refused if d not in desired]:
            del self.refused[dest]
        return out

    def withdraw_all(self) -> list[RouteChange]:
        return self.diff({})

    def result(self, res: RouteResult, now: float) -> bool:
        """Account for the route table's outcome of one change; True if it was refused."""
        ch = res.change
        if res.error is None:
            if ch.op == "del":
                self.installed.pop(ch.dest, None)
            else:
                self.installed[ch.dest] = ch.route
                self.refused.pop(ch.dest, None)
            return False
        self.refusals[res.error] = self.refusals.get(res.error, 0) + 1
        if ch.op == "del":
            kept = self.installed.get(ch.dest)
            if kept is not None:
                self.asked.setdefault(ch.dest, kept)  # still there: asked again at the next diff
            return True
        # the table's state for this destination is unknown now: claim nothing, ask again later
        self.installed.pop(ch.dest, None)
        if self.asked.get(ch.dest) == ch.route:
            del self.asked[ch.dest]
        self.refused[ch.dest] = (ch.route, now)
        return True

    def next_retry(self) -> float | None:
        """When the earliest refused route may be asked for again."""
        return min((at + ROUTE_RETRY_S for _, at in self.refused.values()), default=None)
