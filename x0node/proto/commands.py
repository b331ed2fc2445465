"""The routing core's command API: link penalties and drains, steering around a transit node, and the
sick flag in our own LSA. The healing loop (x0node/healing/) is its only writer; views.py shows it.

Rules:
- A command states an end state with an expiry, never a delta: issuing it again with the same value
  only moves its expiry (idempotent, `changed` False); `lift` takes it back (lifting what is not in
  force is a no-op that says so). Every command expires: its TTL lies in (0, MAX_COMMAND_TTL_S], so
  nothing stays in force when the loop that set it stops renewing it. Expiry is a core timer (`due`,
  on the shared Wakeup): `tick(now)` at the expiry lifts it exactly as `lift` would.
- Bounded and validated: at most MAX_LINK_COMMANDS link commands and MAX_STEERS steers; node ids are
  NODE_ID_BYTES, factors lie in [1, MAX_PENALTY_FACTOR], an interface name is ours. A command that does
  not fit is refused with a reason (a `CommandResult`, never an exception) and counted
  (`commands_refused`); a refused command changes nothing.
- penalise / drain a link (our link to a neighbour node, on one interface or, with ifname "", on all):
  the link's cost becomes min(LINK_COST_MAX_USABLE, ceil(measured cost x factor)); a drain makes it
  LINK_COST_MAX_USABLE, so only what has no other path uses it. The cost is used by our SPF and
  advertised in our LSA like any measured cost: every node's SPF then agrees (a purely local change of
  a link every node routes over would make hop-by-hop forwarding disagree, i.e. loop). A drain holds
  for both directions of the link (routes.drained_both_ways): the far end stops sending over it as soon
  as our LSA reaches it, without a command of its own.
- steer around node N (not ourselves): local only, our LSA is unchanged. For each destination D != N
  one of whose shortest paths from us passes through N, the first hop becomes the neighbour M != N of
  lowest cost(us, M) + dist(M, D) among those that are downstream, dist(M, D) < dist(us, D) or equal
  with M's node id below ours, and node-protecting for every steered node X, dist(M, D) < dist(M, X) +
  dist(X, D) (RFC 5286 sections 3.2 and 3.3; distances are the mesh's, from the LSDB, which every
  node shares): M's own shortest path avoids N, and along any forwarding path (distance to D, node id)
  falls at every hop, whether a node forwards on its shortest path or on such an alternate, so
  however many nodes steer around whatever nodes, no packet loops and no other node has to know. A
  downstream alternate is also loop-free (RFC 5286 inequality 1); the weaker loop-free condition alone
  is not enough once two nodes steer around different nodes (each may send back through the other).
  It is used only when it costs less than `factor` x the path through N. Where no such neighbour
  exists the route stays (counted `steer_no_alternate` per SPF run and destination); the healing
  ladder then drains our link to N, which is advertised and so consistent everywhere.
  N itself stays reachable (only transit through it is avoided).
- sick flag (ourselves): our LSA advertises every link at SICK_LINK_COST (COST_MAX, the maximum link
  metric of RFC 6987 stub routers): every node's SPF avoids us as transit wherever another path
  exists, still reaches us and our prefixes, and the LSA format is unchanged, so nodes of older
  versions honour it too. A node reads as sick (`is_sick`) when its LSA lists at least one link and
  every link at SICK_LINK_COST; measured costs in an LSA are clamped to LINK_COST_MAX_USABLE so the
  flag is never read into an ordinary LSA of this version.
- A command that changes an advertised cost or the flag schedules our origination (good news: the
  origination rate limit applies); one that changes only our SPF schedules SPF at once. Nothing else.
- Pure: no clock, no I/O; `now` is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from x0node.proto.basis import Basis, Part
from x0node.proto.messages import Lsa
from x0node.proto.neighbour import Neighbour
from x0node.proto.protocol import COST_MAX, NODE_ID_BYTES
from x0node.proto.spf import INF, SpfGraph, shortest_paths
from x0node.proto.timers import Deadline

MAX_COMMAND_TTL_S = 3600.0
"""The longest a command stays in force without being issued again."""
MAX_LINK_COMMANDS = 64
"""Most link penalties and drains in force at once."""
MAX_STEERS = 8
"""Most nodes steered around at once (each costs one more SPF per neighbour while in force)."""
MAX_PENALTY_FACTOR = 1024.0
SICK_LINK_COST = COST_MAX
"""Every link of a sick node's LSA carries this cost (RFC 6987's MaxLinkMetric)."""
LINK_COST_MAX_USABLE = COST_MAX - 1
"""The highest cost an ordinary link is advertised with (a drained link's)."""

PENALTY = "penalty"
DRAIN = "drain"
STEER = "steer"
SICK = "sick"
KINDS = (PENALTY, DRAIN, STEER, SICK)


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    changed: bool  # did the core's state (not only an expiry) change
    detail: str


@dataclass
class _Cmd:
    kind: str
    target: bytes  # neighbour (link commands), steered node, or our own id (sick)
    ifname: str  # link commands: one interface, or "" for all
    factor: float
    expires_s: float


def is_sick(lsa: Lsa) -> bool:
    """Does this LSA carry the sick flag (every one of its links, at least one, at SICK_LINK_COST)?"""
    return bool(lsa.links) and all(ln.cost == SICK_LINK_COST for ln in lsa.links)


class Commands(Part):
    def __init__(self, basis: Basis, interface_names: Iterable[str] | None = None) -> None:
        super().__init__(basis)
        self._cmds: dict[tuple[str, bytes, str], _Cmd] = {}
        self.due = Deadline(basis.wake)
        self.interface_names = interface_names  # a live view of the core's interfaces (validation)
        # set by the router: what to do when our advertised costs or only our SPF changed
        self.on_advertised = lambda now: None
        self.on_spf = lambda now: None

    # ------------------------------------------------------------------------------ queries
    @property
    def sick(self) -> bool:
        return (SICK, self.me, "") in self._cmds

    def steers(self) -> dict[bytes, float]:
        """Steered node -> factor."""
        return {c.target: c.factor for c in self._cmds.values() if c.kind == STEER}

    def link_cost(self, n: Neighbour) -> int:
        """The cost of our link to `n` after penalties and drains (its measured cost without)."""
        cost = n.adv_cost or 1
        out = cost
        for key in ((PENALTY, n.node_id, n.ifname), (PENALTY, n.node_id, ""), (DRAIN, n.node_id, n.ifname),
                    (DRAIN, n.node_id, "")):
            c = self._cmds.get(key)
            if c is None:
                continue
            out = max(out, LINK_COST_MAX_USABLE if c.kind == DRAIN else math.ceil(cost * c.factor))
        return min(out, max(cost, LINK_COST_MAX_USABLE))

    def advertised_cost(self, n: Neighbour) -> int:
        """What our LSA says about our link to `n`."""
        if self.sick:
            return SICK_LINK_COST
        return min(self.link_cost(n), LINK_COST_MAX_USABLE)

    def in_force(self) -> list[tuple[str, bytes, str, float, float]]:
        """(kind, target, ifname, factor, expires_s) of every command, in a stable order."""
        return sorted((c.kind, c.target, c.ifname, c.factor, c.expires_s) for c in self._cmds.values())

    # ------------------------------------------------------------------------------ commands
    def _refuse(self, why: str) -> CommandResult:
        self.out.counters["commands_refused"] += 1
        return CommandResult(False, False, why)

    def _check(self, kind: str, target: bytes, ifname: str, factor: float, ttl_s: float) -> str | None:
        if not isinstance(target, bytes) or len(target) != NODE_ID_BYTES:
            return f"a node id is {NODE_ID_BYTES} bytes"
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0.0 < ttl_s <= MAX_COMMAND_TTL_S:
            return f"ttl_s must lie in (0, {MAX_COMMAND_TTL_S:g}]"
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1.0 <= factor <= MAX_PENALTY_FACTOR:
            return f"factor must lie in [1, {MAX_PENALTY_FACTOR:g}]"
        if kind in (PENALTY, DRAIN, STEER) and target == self.me:
            return "not a command on ourselves (the sick flag is)"
        if ifname and (kind not in (PENALTY, DRAIN) or self.interface_names is None
                       or ifname not in self.interface_names):
            return f"{ifname!r} is not a mesh interface of ours"
        key = (kind, target, ifname)
        if key not in self._cmds:
            links = sum(1 for c in self._cmds.values() if c.kind in (PENALTY, DRAIN))
            if kind in (PENALTY, DRAIN) and links >= MAX_LINK_COMMANDS:
                return f"at most {MAX_LINK_COMMANDS} link commands in force"
            if kind == STEER and len(self.steers()) >= MAX_STEERS:
                return f"at most {MAX_STEERS} nodes steered around"
        return None

    def issue(self, kind: str, target: bytes, ifname: str, factor: float, ttl_s: float, now: float) -> CommandResult:
        if kind not in KINDS:
            return self._refuse(f"unknown command {kind!r}")
        if kind in (DRAIN, SICK):
            factor = 1.0
        why = self._check(kind, target, ifname, factor, ttl_s)
        if why is not None:
            return self._refuse(why)
        key = (kind, target, ifname)
        old = self._cmds.get(key)
        factor = float(factor)
        self._cmds[key] = _Cmd(kind, target, ifname, factor, now + float(ttl_s))
        self.due.arm(now + float(ttl_s))
        if old is not None and old.factor == factor:
            self.out.counters["commands_renewed"] += 1
            return CommandResult(True, False, f"{kind} in force; expires in {ttl_s:g} s")
        self.out.counters["commands_applied"] += 1
        self._changed(kind, now)
        return CommandResult(True, True, f"{kind} applied; expires in {ttl_s:g} s")

    def lift(self, kind: str, target: bytes, ifname: str, now: float) -> CommandResult:
        if self._cmds.pop((kind, target, ifname), None) is None:
            return CommandResult(True, False, f"no {kind} in force")
        self.out.counters["commands_lifted"] += 1
        self._changed(kind, now)
        return CommandResult(True, True, f"{kind} lifted")

    def _changed(self, kind: str, now: float) -> None:
        if kind == STEER:
            self.on_spf(now)
        else:
            self.on_advertised(now)

    def expire(self, now: float) -> None:
        """Lift every command whose TTL ran out (the `due` timer)."""
        if not self.due.take(now):
            return
        for key, c in list(self._cmds.items()):
            if c.expires_s <= now:
                del self._cmds[key]
                self.out.counters["commands_expired"] += 1
                self._changed(c.kind, now)
        nxt = min((c.expires_s for c in self._cmds.values()), default=None)
        if nxt is not None:
            self.due.set(nxt)

    def forget_interface(self, ifname: str, now: float) -> None:
        """An interface of ours was removed: its link commands go with it."""
        for key in [k for k in self._cmds if k[2] == ifname]:
            self.lift(key[0], key[1], key[2], now)


def steer_first_hops(
    graph: SpfGraph,
    src: int,
    dist: list[float],
    first: list[int],
    steered: dict[int, float],
) -> tuple[dict[int, tuple[int, int]], int]:
    """Steering (rules above) over one SPF result: {destination: (new first hop, metric)} and how many
    destinations had a path through a steered node but no acceptable alternate. Pure."""
    if not steered:
        return {}, 0
    bits = graph.bits
    nbr_cost: dict[int, int] = {}
    for v, packed in graph.edges[src]:
        nbr_cost[v] = packed >> bits
    from_node = {x: shortest_paths(graph, x)[0] for x in set(steered) | set(nbr_cost)}
    out: dict[int, tuple[int, int]] = {}
    missing = 0
    for d in range(len(graph)):
        if d == src or d in steered or dist[d] == INF:
            continue
        through = [x for x in steered if dist[x] != INF and dist[x] + from_node[x][d] == dist[d]]
        if not through:
            continue
        best: tuple[float, int] | None = None
        for m, c in nbr_cost.items():
            if m in steered:
                continue
            dm = from_node[m]
            if dm[d] == INF or dm[d] > dist[d] or (dm[d] == dist[d] and m > src):
                continue  # not downstream: (distance, id) must fall, or paths may loop
            if any(not dm[d] < dm[x] + from_node[x][d] for x in steered if x != d):
                continue  # not node-protecting: its path to d goes through a steered node
            cand = (c + dm[d], m)
            if best is None or cand < best:
                best = cand
        factor = max(steered[x] for x in through)
        if best is None or not best[0] < dist[d] * factor:
            missing += 1
            continue
        if best[1] != first[d] or best[0] != dist[d]:
            out[d] = (best[1], int(best[0]))
    return out, missing
