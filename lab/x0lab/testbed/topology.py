"""Testbed topologies: which nodes exist and which pairs share a link.

Rules:
- Nodes are numbered 1..N; a link is an unordered pair (a, b) with a < b, listed once, no self-links.
- Every topology produced here is connected (a random one is built from a random spanning tree).
- Specs: `ring:N`, `line:N`, `star:N` (node 1 linked to each of 2..N), `grid:RxC`, `ladder:N` (two rows of N),
  `random:N[:SEED[:DEGREE]]`
  (mean degree, default 3), `file:PATH` (JSON `{"nodes": N, "links": [[a, b], ...]}` or lines
  `a b`). N is bounded by MAX_NODES, a node's degree by MAX_DEGREE.
- Pure: `random` only through a seeded `random.Random` created from the spec's seed.
"""

from __future__ import annotations

import json
import pathlib
import random
from dataclasses import dataclass

MAX_NODES = 200
MAX_DEGREE = 16
DEFAULT_RANDOM_DEGREE = 3.0
MAX_TOPOLOGY_FILE_BYTES = 1 << 20


class TopologyError(ValueError):
    """The topology spec or file is invalid."""


@dataclass(frozen=True)
class Topology:
    spec: str
    nodes: int
    links: tuple[tuple[int, int], ...]

    def neighbours(self, node: int) -> list[int]:
        return sorted({b for a, b in self.links if a == node} | {a for a, b in self.links if b == node})

    def has_link(self, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in set(self.links)

    def is_connected(self) -> bool:
        if self.nodes == 0:
            return False
        seen = {1}
        todo = [1]
        while todo:
            n = todo.pop()
            for m in self.neighbours(n):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return len(seen) == self.nodes

    def hops(self, src: int) -> dict[int, int]:
        """Shortest hop counts from src (breadth-first)."""
        dist = {src: 0}
        frontier = [src]
        while frontier:
            nxt = []
            for n in frontier:
                for m in self.neighbours(n):
                    if m not in dist:
                        dist[m] = dist[n] + 1
                        nxt.append(m)
            frontier = nxt
        return dist


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TopologyError(f"{what} must be an integer, got {text!r}") from None
    if not lo <= value <= hi:
        raise TopologyError(f"{what} must be between {lo} and {hi}, got {value}")
    return value


def _make(spec: str, nodes: int, pairs: list[tuple[int, int]]) -> Topology:
    links: set[tuple[int, int]] = set()
    for a, b in pairs:
        if a == b:
            raise TopologyError(f"link {a}-{a} joins a node to itself")
        if not (1 <= a <= nodes and 1 <= b <= nodes):
            raise TopologyError(f"link {a}-{b} names a node outside 1..{nodes}")
        links.add((min(a, b), max(a, b)))
    topo = Topology(spec, nodes, tuple(sorted(links)))
    for n in range(1, nodes + 1):
        if len(topo.neighbours(n)) > MAX_DEGREE:
            raise TopologyError(f"node {n} has more than {MAX_DEGREE} links")
    if not topo.is_connected():
        raise TopologyError("topology is not connected")
    return topo


def ring(n: int) -> Topology:
    return _make(f"ring:{n}", n, [(i, i % n + 1) for i in range(1, n + 1)])


def line(n: int) -> Topology:
    return _make(f"line:{n}", n, [(i, i + 1) for i in range(1, n)])


def star(n: int) -> Topology:
    return _make(f"star:{n}", n, [(1, i) for i in range(2, n + 1)])


def grid(rows: int, cols: int) -> Topology:
    def idx(r: int, c: int) -> int:
        return r * cols + c + 1

    pairs = []
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                pairs.append((idx(r, c), idx(r, c + 1)))
            if r + 1 < rows:
                pairs.append((idx(r, c), idx(r + 1, c)))
    return _make(f"grid:{rows}x{cols}", rows * cols, pairs)


def ladder(n: int) -> Topology:
    topo = grid(2, n)
    return Topology(f"ladder:{n}", topo.nodes, topo.links)


def random_mesh(n: int, seed: int, degree: float = DEFAULT_RANDOM_DEGREE) -> Topology:
    rng = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    order = list(range(1, n + 1))
    rng.shuffle(order)
    for i in range(1, n):  # random spanning tree: attach each node to an earlier one
        a, b = order[i], order[rng.randrange(i)]
        pairs.add((min(a, b), max(a, b)))
    target = min(int(round(n * degree / 2)), n * (n - 1) // 2)
    deg = {k: 0 for k in range(1, n + 1)}
    for a, b in pairs:
        deg[a] += 1
        deg[b] += 1
    attempts = 0
    while len(pairs) < target and attempts < 100 * n:
        attempts += 1
        a, b = rng.sample(range(1, n + 1), 2)
        key = (min(a, b), max(a, b))
        if key in pairs or deg[a] >= MAX_DEGREE or deg[b] >= MAX_DEGREE:
            continue
        pairs.add(key)
        deg[a] += 1
        deg[b] += 1
    return _make(f"random:{n}:{seed}:{degree:g}", n, sorted(pairs))


def from_file(path: pathlib.Path) -> Topology:
    try:
        if path.stat().st_size > MAX_TOPOLOGY_FILE_BYTES:
            raise TopologyError(f"{path}: larger than {MAX_TOPOLOGY_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read {path}: {exc.strerror}") from None
    pairs: list[tuple[int, int]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TopologyError(f"{path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("links"), list):
            raise TopologyError(f'{path}: expected {{"nodes": N, "links": [[a, b], ...]}}')
        for item in doc["links"]:
            if not (isinstance(item, list) and len(item) == 2 and all(type(x) is int for x in item)):
                raise TopologyError(f"{path}: bad link {item!r}")
            pairs.append((item[0], item[1]))
        nodes = doc.get("nodes", max((max(p) for p in pairs), default=0))
        if type(nodes) is not int:
            raise TopologyError(f"{path}: nodes must be an integer")
    else:
        for lineno, raw in enumerate(text.splitlines(), 1):
            body = raw.split("#", 1)[0].split()
            if not body:
                continue
            if len(body) != 2:
                raise TopologyError(f"{path}:{lineno}: expected 'a b'")
            pairs.append((_int(body[0], f"{path}:{lineno}", 1, MAX_NODES), _int(body[1], f"{path}:{lineno}", 1, MAX_NODES)))
        nodes = max((max(p) for p in pairs), default=0)
    if not 2 <= nodes <= MAX_NODES:
        raise TopologyError(f"{path}: between 2 and {MAX_NODES} nodes, got {nodes}")
    return _make(f"file:{path}", nodes, pairs)


def parse(spec: str) -> Topology:
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    if kind == "ring":
        return ring(_int(args[0] if args else "", "ring size", 3, MAX_NODES))
    if kind == "line":
        return line(_int(args[0] if args else "", "line length", 2, MAX_NODES))
    if kind == "star":
        return star(_int(args[0] if args else "", "star size", 2, MAX_DEGREE + 1))
    if kind == "ladder":
        return ladder(_int(args[0] if args else "", "ladder length", 2, MAX_NODES // 2))
    if kind == "grid":
        r, sep, c = (args[0] if args else "").partition("x")
        if not sep:
            raise TopologyError("grid needs RxC, e.g. grid:3x3")
        rows, cols = _int(r, "grid rows", 1, MAX_NODES), _int(c, "grid columns", 1, MAX_NODES)
        if rows * cols < 2 or rows * cols > MAX_NODES:
            raise TopologyError(f"grid must have between 2 and {MAX_NODES} nodes")
        return grid(rows, cols)
    if kind == "random":
        if not args:
            raise TopologyError("random needs a size: random:N[:SEED[:DEGREE]]")
        n = _int(args[0], "random size", 2, MAX_NODES)
        seed = _int(args[1], "random seed", 0, 2**63) if len(args) > 1 else 1
        degree = DEFAULT_RANDOM_DEGREE
        if len(args) > 2:
            try:
                degree = float(args[2])
            except ValueError:
                raise TopologyError(f"random degree must be a number, got {args[2]!r}") from None
            if not 1.0 <= degree <= MAX_DEGREE:
                raise TopologyError(f"random degree must be between 1 and {MAX_DEGREE}")
        return random_mesh(n, seed, degree)
    if kind == "file":
        return from_file(pathlib.Path(rest))
    raise TopologyError(f"unknown topology {kind!r}: use ring, line, star, grid, ladder, random or file")
