"""Events the core reports (pulled with Router.next_event()): for logs, the UI and self-healing.

Rules: frozen dataclasses, JSON-ready through `as_dict`, node ids as hex strings, times in the core's
monotonic seconds. Every event follows authenticated input or a local fact (a timer, a carrier
change, a kernel refusal); refused input is only counted (Router.drops()), never an event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Event:
    at_s: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def as_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind
        return d


@dataclass(frozen=True)
class NeighbourUp(Event):
    ifname: str
    node_id: str
    address: str


@dataclass(frozen=True)
class NeighbourDown(Event):
    ifname: str
    node_id: str
    reason: str  # "dead" | "link_down" | "interface_removed" | "lost_us" | "revoked" | "withdraw"


@dataclass(frozen=True)
class RoutesChanged(Event):
    added: int
    replaced: int
    removed: int


@dataclass(frozen=True)
class RouteRefused(Event):
    """The route table (the kernel) refused a route change; the route is not claimed as installed."""

    op: str
    dest: str
    ifname: str
    reason: str


@dataclass(frozen=True)
class NodeJoined(Event):
    node_id: str
    mesh_address: str


@dataclass(frozen=True)
class NodeLeft(Event):
    node_id: str
    reason: str  # "withdraw" | "unreachable" | "revoked" | "aged"


@dataclass(frozen=True)
class SlotChanged(Event):
    ifname: str
    slot: int
