"""Action plugins, decision side: what each repair does, when it may run, what it should achieve, how it
is verified and undone. Adapters (actuator.py: the routing core's commands, local actions) carry the
requests out.

Rules and invariants:
- Every plugin is idempotent: a request states the end state ("link X has penalty 4", "interface up"),
  never a delta, so repeating it changes nothing. The executor also never re-issues a mitigation that
  is in force.
- A plugin declares: `precondition` (None or the reason it must not run now), `expected_effect`,
  `verify_s` (the deadline), `cost` (cheapest first), `cooldown_s`, `disruptive` (counts against the
  hourly budget), `needs_lease` (takes links down: neighbours must not do it at the same time) and
  whether it is a *mitigation* or a *repair*:
  - a mitigation (penalise, drain, steer, mark sick, move uplink) works around a fault that persists.
    It is verified by its own effect (`effect_observed`: our routes left the element where another
    path exists; the uplink answers) and stays in force until the fault's symptoms have been clear for
    the hold time; then it is undone (lifted). While it is in force and the fault lasts, `shortfall`
    says whether it still covers the fault: link costs move (measured RTT and loss), so a steer chosen
    because every destination through the node had a downstream alternate can later leave one on the
    node; the engine then climbs to the next rung;
  - a repair (reset, restart, reboot) removes the fault. It is verified by the incident's symptoms
    clearing before the deadline; otherwise it is undone where an undo exists and the ladder escalates.
- Targets: link actions take a link element that includes this node (`a~b`), node actions a node, ...
  A request carries everything an adapter needs in `params` (interface, neighbour, penalty, reason).
- Sans-I/O: plugins read only observations; requests are data.
"""

from __future__ import annotations

import collections
import enum
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from x0node.healing.monitor import (
    ABNORMAL_DEGREE,
    Element,
    ElementKind,
    MonitorOutput,
    Signal,
    link_element,
    link_ends,
)
from x0node.healing.observation import RoutingObs, Snapshot

PENALTY_FACTOR = 4.0  # cost multiplier of a penalised link: moves traffic to a path up to 4x as costly
DRAIN_FACTOR = 64.0  # a drained link carries only what has no other way
RESTARTABLE_SERVICES = frozenset({"telemetry", "transport", "anomaly", "state"})
REBOOT_MIN_SYMPTOM_S = 300.0  # a fault must have lasted this long before a reboot is considered
REBOOT_MIN_FAILED_RUNGS = 3  # and this many cheaper rungs must have failed (gluon: 3 consecutive failures)


class ActionKind(enum.StrEnum):
    PENALISE_LINK = "penalise_link"
    DRAIN_LINK = "drain_link"
    STEER_AROUND_NODE = "steer_around_node"
    MARK_SELF_SICK = "mark_self_sick"
    RESET_INTERFACE = "reset_interface"
    RESTART_SUBSYSTEM = "restart_subsystem"
    MOVE_UPLINK_OBFUSCATED = "move_uplink_obfuscated"
    RESTART_DAEMON = "restart_daemon"
    REBOOT = "reboot"


@dataclass(frozen=True)
class ActionRequest:
    """What an adapter is asked to do (or, with `undo`, to take back)."""

    request_id: int
    action: ActionKind
    target: Element
    params: tuple[tuple[str, Any], ...]
    undo: bool
    incident_id: int
    reason: str

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class ActionResult:
    """An adapter's answer: done, or refused with a reason (the core never assumes success)."""

    request_id: int
    ok: bool
    detail: str = ""


class ActionAdapter(Protocol):
    """Carries out action requests. Implementations: the local actuator (interfaces, services,
    reboot, watchdog) and the routing core's command API (penalties, drains, steering, sick flag)."""

    def supports(self, action: ActionKind) -> bool: ...

    async def perform(self, request: ActionRequest) -> ActionResult: ...


@dataclass(frozen=True)
class PlanContext:
    """What preconditions and effect checks may look at."""

    snapshot: Snapshot
    monitor: MonitorOutput
    symptom_age_s: float = 0.0  # how long the incident has lasted
    failed_rungs: int = 0  # rungs of this incident that failed verification
    sick_marked: bool = False  # we flag ourselves sick already

    @property
    def routing(self) -> RoutingObs:
        return self.snapshot.routing

    @property
    def self_id(self) -> str:
        return self.snapshot.routing.self_id


class NotNow(str):
    """A precondition's reason that holds for the moment only: the plan waits on this rung instead of
    going on to a costlier one (a lossy or flapping link's neighbour is down for a moment at each flap)."""


def down_for_a_moment(link: Element, ctx: PlanContext) -> bool:
    """Our link's neighbour was up less than LINK_DOWN_MEMORY_S ago (the monitor's link-down indicator)."""
    return any(i.signal is Signal.LINK_DOWN and i.element == link and i.degree >= ABNORMAL_DEGREE
               for i in ctx.monitor.indicators)


def times_out(link: Element, ctx: PlanContext) -> bool:
    """Our link's recent downs are mostly hello timeouts with the carrier up (the monitor's indicator)."""
    return any(i.signal is Signal.HELLO_TIMEOUT and i.element == link and i.degree >= ABNORMAL_DEGREE
               for i in ctx.monitor.indicators)


def up_neighbours(r: RoutingObs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for n in r.neighbours:
        if n.up:
            out[n.node_id].append(n.ifname)
    return out


def far_end(target: Element, self_id: str) -> str | None:
    if target.kind is not ElementKind.LINK:
        return None
    a, b = link_ends(target)
    if self_id == a:
        return b
    if self_id == b:
        return a
    return None


def avoidable_routes(r: RoutingObs, avoid_node: str, only_link: bool) -> tuple[int, int]:
    """(routes that go through `avoid_node` as first hop although a path around it exists, routes that
    have such a path at all). With `only_link`, only our direct link to the node is avoided (the node
    may still be used further along); otherwise the node itself."""
    adj = r.adjacency()
    me = r.self_id
    if only_link:
        adj = {k: set(v) for k, v in adj.items()}
        adj.get(me, set()).discard(avoid_node)
        adj.get(avoid_node, set()).discard(me)
    reach = {me}
    frontier = [me]
    while frontier:
        nxt = []
        for u in frontier:
            for v in adj.get(u, ()):
                if v not in reach and (only_link or v != avoid_node):
                    reach.add(v)
                    nxt.append(v)
        frontier = nxt
    via_bad = with_alt = 0
    for route in r.routes:
        if not route.origin or route.origin == avoid_node or route.origin not in reach:
            continue
        with_alt += 1
        if r.first_hop(route) == avoid_node:
            via_bad += 1
    return via_bad, with_alt


def _distances(adj: Mapping[str, Mapping[str, int]], src: str) -> dict[str, int]:
    """Shortest-path costs from src (Dijkstra over the LSDB view's link costs)."""
    dist = {src: 0}
    heap = [(0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist.get(u, d):
            continue
        for v, c in adj.get(u, {}).items():
            if d + c < dist.get(v, d + c + 1):
                dist[v] = d + c
                heapq.heappush(heap, (d + c, v))
    return dist


def steerable_routes(r: RoutingObs, avoid_node: str) -> tuple[int, int, int]:
    """(routes through `avoid_node` as first hop that a steer would move, routes a steer can move at
    all, routes whose shortest path crosses the node although a path around it exists), by the routing
    core's own rule (x0node/proto/commands.py): a destination moves to another neighbour M only if M is
    downstream, dist(M, D) < dist(us, D), and node-protecting, dist(M, D) < dist(M, X) + dist(X, D)
    (RFC 5286). Equal distances, which the core breaks by node order, count as not movable here. Where
    the second number is below the third, steering would leave some traffic on the node (a corner
    whose only way around is longer): the ladder drains the link instead, which moves it all."""
    adj: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for e in r.edges:
        for u, v, c in e.costs():
            adj[u][v] = min(c, adj[u].get(v, c))
    me = r.self_id
    nbrs = [m for m in up_neighbours(r) if m != avoid_node and m in adj.get(me, {})]
    if avoid_node not in adj.get(me, {}):
        return 0, 0, 0
    mine, from_x = _distances(adj, me), _distances(adj, avoid_node)
    around = _distances({u: {v: c for v, c in vs.items() if v != avoid_node} for u, vs in adj.items()
                         if u != avoid_node}, me)
    from_m = {m: _distances(adj, m) for m in nbrs}
    inf = 1 << 30
    moved = movable = crossing = 0
    for route in r.routes:
        d = route.origin
        if not d or d in (me, avoid_node) or d not in mine or d not in around:
            continue
        if mine.get(avoid_node, inf) + from_x.get(d, inf) != mine[d]:
            continue  # no shortest path of ours crosses the node
        crossing += 1
        if not any(from_m[m].get(d, inf) < mine[d] and from_m[m].get(d, inf) < from_m[m].get(avoid_node, inf) +
                   from_x.get(d, inf) for m in nbrs):
            continue
        movable += 1
        if r.first_hop(route) == avoid_node:
            moved += 1
    return moved, movable, crossing


class ActionPlugin:
    kind: ActionKind
    targets: frozenset[ElementKind]
    cost: float
    cooldown_s: float
    verify_s: float
    disruptive: bool = False
    needs_lease: bool = False
    mitigation: bool = False
    has_undo: bool = True
    expected_effect: str = ""

    def precondition(self, target: Element, ctx: PlanContext) -> str | None:
        """None when the action may run on `target` now, else the reason it may not."""
        if target.kind not in self.targets:
            return f"{self.kind.value} does not apply to a {target.kind.value}"
        return self.check(target, ctx)

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        """The plugin's own precondition, for a target of a kind it applies to."""
        return None

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        return {}

    def effect_observed(self, target: Element, params: Mapping[str, Any], ctx: PlanContext) -> bool | None:
        """For mitigations: is the effect visible? None = cannot be seen in the observations."""
        return None

    def shortfall(self, target: Element, ctx: PlanContext) -> str | None:
        """For a mitigation in force while its fault lasts: None while it still covers what it was chosen
        for, else why it no longer does."""
        return None


class _LinkWeight(ActionPlugin):
    targets = frozenset({ElementKind.LINK})
    mitigation = True
    verify_s = 5.0  # a cost change reaches SPF within the LSA rate limit; a few cycles suffice
    factor = PENALTY_FACTOR

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        far = far_end(target, ctx.self_id)
        if far is None:
            return "not a link of this node (its ends repair it)"
        nbrs = up_neighbours(ctx.routing)
        if far not in nbrs:
            why = "the neighbour is not up (routing already avoids it)"
            return NotNow(f"{why}; it was up a moment ago") if down_for_a_moment(target, ctx) else why
        if len(nbrs) < 2:
            return "no other neighbour to carry the traffic"
        return None

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        far = far_end(target, ctx.self_id) or ""
        ifnames = sorted(up_neighbours(ctx.routing).get(far, []))
        return {"neighbour": far, "ifnames": ",".join(ifnames), "factor": self.factor}

    def effect_observed(self, target: Element, params: Mapping[str, Any], ctx: PlanContext) -> bool | None:
        via_bad, _ = avoidable_routes(ctx.routing, str(params.get("neighbour", "")), only_link=True)
        return via_bad == 0


class PenaliseLink(_LinkWeight):
    """A penalty keeps the link usable at a higher cost. Where the neighbour times out over the link
    (its downs are hello timeouts with the carrier up: a lossy link), the link is past penalising: each
    time the neighbour comes back the core's own cost of the fresh session is low again and a ×4 penalty
    may leave traffic on it, so the rung is skipped and the ladder drains it at once."""

    kind = ActionKind.PENALISE_LINK
    cost = 1.0
    cooldown_s = 5.0
    expected_effect = f"routes with another path leave the link (its cost x{PENALTY_FACTOR:g})"

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        why = super().check(target, ctx)
        if why is None and times_out(target, ctx):
            return "its neighbour times out over it (hello timeouts, carrier up): past penalising, drain it"
        return why


class DrainLink(_LinkWeight):
    kind = ActionKind.DRAIN_LINK
    cost = 2.0
    cooldown_s = 5.0
    factor = DRAIN_FACTOR
    expected_effect = "only routes without any other path use the link"


def _left_on_node(movable: int, crossing: int) -> str | None:
    """Why a steer leaves traffic on the node (of `steerable_routes`' counts), or None when it moves
    every destination through it: the steer's precondition, and its shortfall once in force."""
    if movable >= crossing:
        return None
    return (f"{crossing - movable} of {crossing} destinations through the node have no downstream "
            "alternate: steering would leave them on it")


class SteerAroundNode(ActionPlugin):
    kind = ActionKind.STEER_AROUND_NODE
    targets = frozenset({ElementKind.NODE})
    cost = 1.5
    cooldown_s = 5.0
    verify_s = 5.0
    mitigation = True
    expected_effect = "our routes stop using the node as transit where a path around it exists"

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        if target.id == ctx.self_id:
            return "cannot steer around ourselves (mark_self_sick does that)"
        if target.id not in up_neighbours(ctx.routing):
            return "not a neighbour: its own neighbours steer around it"
        _, movable, crossing = steerable_routes(ctx.routing, target.id)
        if movable == 0:
            return "no destination has a downstream alternate around the node"
        return _left_on_node(movable, crossing)

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        return {"neighbour": target.id, "factor": DRAIN_FACTOR}

    def effect_observed(self, target: Element, params: Mapping[str, Any], ctx: PlanContext) -> bool | None:
        still, _, _ = steerable_routes(ctx.routing, target.id)
        return still == 0

    def shortfall(self, target: Element, ctx: PlanContext) -> str | None:
        if target.id not in up_neighbours(ctx.routing):
            return None  # the node is gone: nothing crosses it
        _, movable, crossing = steerable_routes(ctx.routing, target.id)
        return _left_on_node(movable, crossing)


class MarkSelfSick(ActionPlugin):
    kind = ActionKind.MARK_SELF_SICK
    targets = frozenset({ElementKind.NODE})
    cost = 1.0
    cooldown_s = 30.0
    verify_s = 10.0
    mitigation = True
    expected_effect = "our LSA carries the sick flag; other nodes stop routing transit traffic through us"

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        return None if target.id == ctx.self_id else "only a node can say it is sick itself"

    def effect_observed(self, target: Element, params: Mapping[str, Any], ctx: PlanContext) -> bool | None:
        for node in ctx.routing.nodes:
            if node.node_id == ctx.self_id:
                return node.sick  # our own LSA as the core holds it (views.NodeView.sick)
        return None


class ResetInterface(ActionPlugin):
    kind = ActionKind.RESET_INTERFACE
    targets = frozenset({ElementKind.INTERFACE, ElementKind.LINK})
    cost = 10.0
    cooldown_s = 60.0
    verify_s = 30.0  # carrier, neighbour discovery and two-way again
    disruptive = True
    needs_lease = True
    expected_effect = "the interface goes down and up; its neighbours come back"

    def _ifname(self, target: Element, ctx: PlanContext) -> str | None:
        if target.kind is ElementKind.INTERFACE:
            return target.id
        far = far_end(target, ctx.self_id)
        names = sorted({n.ifname for n in ctx.routing.neighbours if n.node_id == far})
        return names[0] if len(names) == 1 else None

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        name = self._ifname(target, ctx)
        if name is None:
            return "no single interface of ours carries the link"
        if name not in {i.name for i in ctx.routing.interfaces}:
            return f"{name} is not a mesh interface"
        bad_links = {s.element for s in ctx.monitor.active}
        healthy = [n for n in ctx.routing.neighbours
                   if n.ifname == name and n.up and link_element(ctx.self_id, n.node_id) not in bad_links]
        if healthy:
            return f"{name} still has {len(healthy)} healthy neighbour(s)"
        return None

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        return {"ifname": self._ifname(target, ctx) or ""}


class RestartSubsystem(ActionPlugin):
    kind = ActionKind.RESTART_SUBSYSTEM
    targets = frozenset({ElementKind.SERVICE, ElementKind.NODE})
    cost = 5.0
    cooldown_s = 60.0
    verify_s = 30.0
    disruptive = True
    has_undo = False
    expected_effect = "the service stops and starts; it reports healthy again"

    def _service(self, target: Element, ctx: PlanContext) -> str | None:
        if target.kind is ElementKind.SERVICE:
            return target.id
        # a node of ours short of CPU or memory: the heaviest of our own services
        running = {s.name for s in ctx.snapshot.services if s.running}
        return "anomaly" if target.id == ctx.self_id and "anomaly" in running else None

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        name = self._service(target, ctx)
        if name is None:
            return "no service of ours to restart for this element"
        if name not in RESTARTABLE_SERVICES:
            return f"service {name!r} is not restartable on its own"
        return None

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        return {"service": self._service(target, ctx) or ""}


class MoveUplinkObfuscated(ActionPlugin):
    kind = ActionKind.MOVE_UPLINK_OBFUSCATED
    targets = frozenset({ElementKind.UPLINK})
    cost = 3.0
    cooldown_s = 60.0
    verify_s = 30.0
    mitigation = True
    expected_effect = "the uplink answers over the obfuscated transport"

    def _uplink(self, target: Element, ctx: PlanContext) -> Any:
        return next((u for u in ctx.snapshot.uplinks if u.name == target.id), None)

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        u = self._uplink(target, ctx)
        if u is None:
            return "unknown uplink"
        if u.transport != "plain":
            return "already on an obfuscated transport"
        return None if u.obfuscated_available else "no obfuscated transport configured for it"

    def params(self, target: Element, ctx: PlanContext) -> dict[str, Any]:
        return {"uplink": target.id, "transport": "obfuscated"}

    def effect_observed(self, target: Element, params: Mapping[str, Any], ctx: PlanContext) -> bool | None:
        u = self._uplink(target, ctx)
        return None if u is None else (u.transport != "plain" and u.reachable)


class RestartDaemon(ActionPlugin):
    kind = ActionKind.RESTART_DAEMON
    targets = frozenset({ElementKind.NODE, ElementKind.SERVICE})
    cost = 20.0
    cooldown_s = 600.0
    verify_s = 60.0
    disruptive = True
    needs_lease = True
    has_undo = False
    expected_effect = "the daemon restarts under systemd (leaves the mesh cleanly, rejoins)"

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        if target.kind is ElementKind.NODE and target.id != ctx.self_id:
            return "only this node's daemon can be restarted"
        return None


class Reboot(ActionPlugin):
    kind = ActionKind.REBOOT
    targets = frozenset({ElementKind.NODE, ElementKind.SERVICE, ElementKind.INTERFACE})
    cost = 100.0
    cooldown_s = 6 * 3600.0
    verify_s = 300.0
    disruptive = True
    needs_lease = True
    has_undo = False
    expected_effect = "the node reboots (reason kept on /data) and comes back healthy"

    def check(self, target: Element, ctx: PlanContext) -> str | None:
        if target.kind is ElementKind.NODE and target.id != ctx.self_id:
            return "only this node can reboot itself"
        if ctx.failed_rungs < REBOOT_MIN_FAILED_RUNGS:
            return f"last rung: {ctx.failed_rungs} of {REBOOT_MIN_FAILED_RUNGS} cheaper rungs failed so far"
        if ctx.symptom_age_s < REBOOT_MIN_SYMPTOM_S:
            return f"last rung: the fault has lasted {ctx.symptom_age_s:.0f} of {REBOOT_MIN_SYMPTOM_S:.0f} s"
        return None


PLUGINS: dict[ActionKind, ActionPlugin] = {
    p.kind: p
    for p in (PenaliseLink(), DrainLink(), SteerAroundNode(), MarkSelfSick(), ResetInterface(), RestartSubsystem(),
              MoveUplinkObfuscated(), RestartDaemon(), Reboot())
}
