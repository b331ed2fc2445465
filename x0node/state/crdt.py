"""State-based CRDTs (Shapiro et al., "Conflict-free replicated data types", 2011) and a hybrid
logical clock (Kulkarni et al., "Logical physical clocks", 2014).

Every type here is a join-semilattice: `merge` is commutative, associative and idempotent, so replicas
that have seen the same updates, in any order, with any duplication, hold the same value. Each type's
state is a map from an origin (a node id) to that origin's own contribution, and the contribution an
origin writes later always carries a higher version (its HLC): merging is "per origin, keep the
contribution with the highest (version, encoding)". That decomposition is what makes the types
gossipable as per-origin signed records (record.py): a record is one origin's current contribution to
one object, and the merge of records is the merge of the type.

- GCounter: origin -> its own count (only grows); value = sum.
- PNCounter: two GCounters (increments, decrements); value = P - N.
- LWWRegister: the write with the highest stamp (HLC, origin) wins; a delete is a write of None.
- LWWMap: key -> LWWRegister.
- ORSet (observed-remove, add wins): per element and origin either "added at version t" or "removed,
  having observed adds {origin: t}". An element is present iff some origin's add is not covered by any
  origin's remove (remove r covers add (o, t) iff r.observed[o] >= t). A remove observes every add it
  knows of, so a concurrent add (unseen by the remove) survives: add wins.

HLC: a 64-bit value, wall milliseconds in the top 48 bits and a logical counter in the low 16. `now`
returns a value above every value issued or observed before and at least the wall clock; a counter
overflow carries into the millisecond part, which keeps it monotonic. Pure: the caller passes the wall
clock in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HLC_LOGICAL_BITS = 16
HLC_MAX = (1 << 64) - 1


def hlc_wall_s(version: int) -> float:
    """Wall-clock seconds encoded in an HLC value."""
    return (version >> HLC_LOGICAL_BITS) / 1000.0


@dataclass
class Hlc:
    last: int = 0

    def now(self, wall_ms: int) -> int:
        self.last = min(HLC_MAX, max(self.last + 1, max(0, wall_ms) << HLC_LOGICAL_BITS))
        return self.last

    def observe(self, version: int) -> None:
        if version > self.last:
            self.last = min(HLC_MAX, version)


def _pick(a: tuple[int, Any] | None, b: tuple[int, Any] | None) -> tuple[int, Any] | None:
    """The contribution with the higher (version, repr) — a total order, so merge commutes."""
    if a is None:
        return b
    if b is None:
        return a
    return a if (a[0], repr(a[1])) >= (b[0], repr(b[1])) else b


@dataclass
class GCounter:
    counts: dict[bytes, int] = field(default_factory=dict)

    def increment(self, origin: bytes, n: int = 1) -> None:
        if n < 0:
            raise ValueError("a G-Counter only grows")
        self.counts[origin] = self.counts.get(origin, 0) + n

    def merge(self, other: GCounter) -> GCounter:
        out = dict(self.counts)
        for o, c in other.counts.items():
            out[o] = max(out.get(o, 0), c)
        return GCounter(out)

    @property
    def value(self) -> int:
        return sum(self.counts.values())


@dataclass
class PNCounter:
    p: GCounter = field(default_factory=GCounter)
    n: GCounter = field(default_factory=GCounter)

    def increment(self, origin: bytes, by: int = 1) -> None:
        if by >= 0:
            self.p.increment(origin, by)
        else:
            self.n.increment(origin, -by)

    def merge(self, other: PNCounter) -> PNCounter:
        return PNCounter(self.p.merge(other.p), self.n.merge(other.n))

    @property
    def value(self) -> int:
        return self.p.value - self.n.value


@dataclass(frozen=True)
class LWWRegister:
    """`stamp` = (hlc version, origin); value None means deleted (or never written when stamp is zero)."""

    stamp: tuple[int, bytes] = (0, b"")
    value: Any = None

    def write(self, version: int, origin: bytes, value: Any) -> LWWRegister:
        return self.merge(LWWRegister((version, origin), value))

    def merge(self, other: LWWRegister) -> LWWRegister:
        if (self.stamp, repr(self.value)) >= (other.stamp, repr(other.value)):
            return self
        return other


@dataclass
class LWWMap:
    regs: dict[str, LWWRegister] = field(default_factory=dict)

    def set(self, key: str, version: int, origin: bytes, value: Any) -> None:
        self.regs[key] = self.regs.get(key, LWWRegister()).write(version, origin, value)

    def delete(self, key: str, version: int, origin: bytes) -> None:
        self.set(key, version, origin, None)

    def merge(self, other: LWWMap) -> LWWMap:
        out = dict(self.regs)
        for k, r in other.regs.items():
            out[k] = out[k].merge(r) if k in out else r
        return LWWMap(out)

    @property
    def value(self) -> dict[str, Any]:
        return {k: r.value for k, r in sorted(self.regs.items()) if r.value is not None}


# An OR-Set contribution: (version, None) = added at `version`; (version, ((origin, tag), ...)) = removed
# having observed those adds (sorted tuple, hashable and with a stable repr).
OrContribution = tuple[int, "tuple[tuple[bytes, int], ...] | None"]


@dataclass
class ORSet:
    elems: dict[str, dict[bytes, OrContribution]] = field(default_factory=dict)

    def add(self, elem: str, origin: bytes, version: int) -> None:
        self._put(elem, origin, (version, None))

    def observed(self, elem: str) -> tuple[tuple[bytes, int], ...]:
        """Every add of `elem` this replica knows of, as a remove would record it."""
        return tuple(sorted((o, c[0]) for o, c in self.elems.get(elem, {}).items() if c[1] is None))

    def remove(self, elem: str, origin: bytes, version: int) -> None:
        self._put(elem, origin, (version, self.observed(elem)))

    def _put(self, elem: str, origin: bytes, c: OrContribution) -> None:
        per = self.elems.setdefault(elem, {})
        per[origin] = _pick(per.get(origin), c)  # type: ignore[assignment]

    def merge(self, other: ORSet) -> ORSet:
        out = ORSet({e: dict(per) for e, per in self.elems.items()})
        for e, per in other.elems.items():
            for o, c in per.items():
                out._put(e, o, c)
        return out

    def contains(self, elem: str) -> bool:
        per = self.elems.get(elem)
        if not per:
            return False
        covered: dict[bytes, int] = {}
        for _, (_, obs) in per.items():
            for o, t in obs or ():
                covered[o] = max(covered.get(o, 0), t)
        return any(obs is None and covered.get(o, 0) < v for o, (v, obs) in per.items())

    @property
    def value(self) -> frozenset[str]:
        return frozenset(e for e in self.elems if self.contains(e))
