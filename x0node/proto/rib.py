"""Routing information base: the routes we want versus the routes we told the daemon to install.

Rules:
- A route is (dest "addr/len", ifname, via link-local, metric). For every destination there is at most
  one route (the best one; ties broken by the announcing node's id).
- `diff` turns the desired set into "add" / "replace" / "del" changes against the installed set and
  then records the desired set as installed; applying the changes in order yields the desired set.
- Changes are emitted deletes first (destination order), then adds/replaces, so output is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    dest: str
    ifname: str
    via: str
    metric: int
    origin: str = ""  # node id (hex) the destination belongs to


@dataclass(frozen=True)
class RouteChange:
    op: str  # "add" | "replace" | "del"
    dest: str
    ifname: str
    via: str
    metric: int


class Rib:
    def __init__(self) -> None:
        self.installed: dict[str, Route] = {}
        self.refusals: dict[str, int] = {}  # route changes the kernel refused, by reason

    def diff(self, desired: dict[str, Route]) -> list[RouteChange]:
        out: list[RouteChange] = []
        for dest in sorted(set(self.installed) - set(desired)):
            r = self.installed[dest]
            out.append(RouteChange("del", dest, r.ifname, r.via, r.metric))
        for dest in sorted(desired):
            r = desired[dest]
            cur = self.installed.get(dest)
            if cur is None:
                out.append(RouteChange("add", dest, r.ifname, r.via, r.metric))
            elif (cur.ifname, cur.via, cur.metric) != (r.ifname, r.via, r.metric):
                out.append(RouteChange("replace", dest, r.ifname, r.via, r.metric))
        self.installed = dict(desired)
        return out

    def withdraw_all(self) -> list[RouteChange]:
        return self.diff({})
