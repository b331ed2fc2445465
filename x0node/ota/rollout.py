"""Rollouts: waves over the mesh, halting on failures, and when a node installs (sans-I/O).

A rollout takes one verified manifest to a set of nodes in waves. The coordinating node (where the
rollout was started; the seam for a Raft leader lease is `Coordinator`, which only needs the node
statuses and `now`) opens wave 1, waits until every node of the open wave reached a final phase or the
wave's deadline passed, and opens the next wave — or halts the rollout mesh-wide when the wave's
failure rate exceeds the threshold (hawkBit's error threshold per group).

Rules and invariants:
- Wave order (`plan_waves`): leaves first, then the other nodes whose loss does not cut the mesh
  (farthest from the coordinator first), then articulation points (nodes that would split the mesh if
  they failed to come back), the coordinator itself last. So a bad build is caught where it harms
  least, and a node is never updated before the nodes behind it.
- A node counts as failed when it reports rolled_back, failed or refused (it cannot install), or when it is not final at the wave's
  deadline. A halted or stopped rollout never opens another wave; nodes that have not started
  installing do not start.
- Optional Gluon-style timing inside an open wave (`install_now`): at each check a node installs with
  probability 3x^2 - 2x^3 where x is the time since its wave opened over `spread_s`; at x >= 1 it
  installs. The seeded rng decides; no wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FINAL_GOOD = frozenset({"good", "installed_already"})
FINAL_BAD = frozenset({"rolled_back", "failed", "refused"})
WAVE_FRACTIONS = (0.1, 0.3, 1.0)
"""Cumulative share of the nodes updated after each wave (the last is always 1.0)."""
NODES_MAX = 1024


def articulation_points(nodes: list[str], edges: set[tuple[str, str]]) -> set[str]:
    """Nodes whose removal disconnects their component (Hopcroft-Tarjan low-link, iterative)."""
    adj: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in adj and b in adj and a != b:
            adj[a].append(b)
            adj[b].append(a)
    disc: dict[str, int] = {}
    low: dict[str, int] = {}
    out: set[str] = set()
    t = 0
    for root in sorted(nodes):
        if root in disc:
            continue
        disc[root] = low[root] = t
        t += 1
        children = 0
        stack = [(root, "", iter(sorted(adj[root])))]
        while stack:
            v, parent, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                if stack:
                    u = stack[-1][0]
                    low[u] = min(low[u], low[v])
                    if u != root and low[v] >= disc[u]:
                        out.add(u)
                continue
            if nxt == parent:
                continue
            if nxt in disc:
                low[v] = min(low[v], disc[nxt])
            else:
                disc[nxt] = low[nxt] = t
                t += 1
                if v == root:
                    children += 1
                stack.append((nxt, v, iter(sorted(adj[nxt]))))
        if children > 1:
            out.add(root)
    return out


def hops_from(origin: str, nodes: list[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    adj: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a in adj and b in adj:
            adj[a].add(b)
            adj[b].add(a)
    dist = {origin: 0} if origin in adj else {}
    frontier = list(dist)
    while frontier:
        nxt = []
        for v in frontier:
            for w in adj[v]:
                if w not in dist:
                    dist[w] = dist[v] + 1
                    nxt.append(w)
        frontier = nxt
    return dist


def plan_waves(nodes: list[str], edges: set[tuple[str, str]], origin: str,
               fractions: tuple[float, ...] = WAVE_FRACTIONS) -> list[list[str]]:
    """Split `nodes` into waves: leaves, then non-cut nodes far to near, then cut nodes, origin last."""
    nodes = sorted(set(nodes))[:NODES_MAX]
    if not nodes:
        return []
    cut = articulation_points(nodes, edges)
    dist = hops_from(origin, nodes, edges)
    degree = {n: 0 for n in nodes}
    for a, b in edges:
        if a in degree and b in degree and a != b:
            degree[a] += 1
            degree[b] += 1
    far = max(dist.values(), default=0) + 1

    def rank(n: str) -> tuple[int, int, str]:
        cls = 3 if n == origin else 2 if n in cut else 0 if degree[n] <= 1 else 1
        return (cls, -dist.get(n, far), n)

    order = sorted(nodes, key=rank)
    waves: list[list[str]] = []
    start = 0
    for i, frac in enumerate(fractions):
        end = len(order) if i == len(fractions) - 1 else max(start + 1, round(frac * len(order)))
        end = min(end, len(order))
        if origin in order[start:end] and end < len(order):
            end = order.index(origin)  # the origin only in the last wave
        if end > start:
            waves.append(order[start:end])
        start = end
    if start < len(order):
        waves.append(order[start:])
    return waves


@dataclass(frozen=True)
class Spec:
    id: str
    manifest_id: str
    version: str
    waves: tuple[tuple[str, ...], ...]
    threshold: float = 0.2
    """Halt when more than this share of a wave failed."""
    wave_timeout_s: float = 1800.0
    spread_s: float = 0.0
    """Gluon-style probabilistic start inside a wave over this many seconds; 0 = at once."""


@dataclass(frozen=True)
class Action:
    kind: str  # "open_wave" | "halt" | "done"
    wave: int = 0
    reason: str = ""


@dataclass
class Coordinator:
    spec: Spec
    started: float
    state: str = "running"  # running | halted | stopped | done
    wave: int = 0  # index of the open wave
    wave_opened: float = 0.0
    reason: str = ""
    failures: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wave_opened = self.started

    def stop(self, reason: str = "stopped by an operator") -> None:
        if self.state == "running":
            self.state, self.reason = "stopped", reason

    def wave_result(self, statuses: dict[str, str], now: float) -> tuple[list[str], list[str], list[str]]:
        """(good, failed, open) nodes of the open wave; past the deadline open nodes count as failed."""
        good, bad, waiting = [], [], []
        timed_out = now >= self.wave_opened + self.spec.wave_timeout_s
        for n in self.spec.waves[self.wave]:
            phase = statuses.get(n, "unknown")
            if phase in FINAL_GOOD:
                good.append(n)
            elif phase in FINAL_BAD or timed_out:
                bad.append(n)
            else:
                waiting.append(n)
        return good, bad, waiting

    def step(self, statuses: dict[str, str], now: float) -> list[Action]:
        if self.state != "running" or not self.spec.waves:
            return []
        _good, bad, waiting = self.wave_result(statuses, now)
        size = len(self.spec.waves[self.wave])
        if bad and len(bad) / size > self.spec.threshold:
            self.state = "halted"
            self.failures[self.wave] = bad
            self.reason = (f"wave {self.wave + 1}: {len(bad)} of {size} nodes failed "
                           f"(threshold {self.spec.threshold:.0%})")
            return [Action("halt", self.wave, self.reason)]
        if waiting:
            return []
        self.failures[self.wave] = bad
        if self.wave + 1 >= len(self.spec.waves):
            self.state = "done"
            return [Action("done", self.wave)]
        self.wave += 1
        self.wave_opened = now
        return [Action("open_wave", self.wave)]


def wave_of(spec: Spec, node: str) -> int | None:
    for i, w in enumerate(spec.waves):
        if node in w:
            return i
    return None


def gluon_probability(x: float) -> float:
    """3x^2 - 2x^3 on [0, 1] (Gluon autoupdater's staged probability), 1 past the end."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    return 3 * x * x - 2 * x * x * x


def install_now(spec: Spec, node: str, open_wave: int, opened_at: float, now: float,
                rng: random.Random) -> bool:
    """Whether `node` starts installing at this check of a running rollout."""
    mine = wave_of(spec, node)
    if mine is None or mine > open_wave:
        return False
    if spec.spread_s <= 0 or mine < open_wave:
        return True
    return rng.random() < gluon_probability((now - opened_at) / spec.spread_s)
