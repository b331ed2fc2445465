"""Analyze: rank root-cause hypotheses (element, fault kind) against the monitor's indicators.

Method (a fault-signature match over metrics and topology, in the spirit of BARO's ranking of metric
changes, with the topology deciding which observations a fault can reach):
- Candidates are the elements the abnormal ("lit", degree >= LIT_DEGREE) indicators touch: the
  measured element, every node on a measured path (and on its answer's way back), our own link on the
  answer's way back (we measure it: a lossy link of ours loses the answers of probes sent out through
  another neighbour, often before its own loss estimate shows) and every link between consecutive path nodes,
  restricted to MAX_RCA_HOPS hops from this node. Each element kind has its fault kinds (FAULTS).
- A hypothesis predicts, for each indicator, "abnormal" (with a weight), "normal" (with a weight), or
  nothing (`_role`). Example: a partial black hole at neighbour N predicts loss on every probe path
  through N, normal hello loss on our link to N, a low forwarding ratio and a verdict at N; a lossy
  link N~D predicts loss on the probe path S-N-D only and normal loss on the other paths through N.
  Flaps of our neighbour N come from a flapping link (normal hello loss between flaps) or from a lossy
  one (hellos lost back to back time N out): with sustained hello loss on the link, `link_lossy`
  explains both and wins; its flap is not counted as an effect seen before the cause (the loss estimate
  needs many hellos, a flap shows at once). How the link went down tells them apart at the first flaps,
  before any loss estimate: a lossy link's downs are hello timeouts with the carrier up
  (`hello_timeout`), a flapping link's are its carrier going (the core's `link_down`).
- A neighbour whose hellos stop with the carrier up (HELLO_TIMEOUT) may be a lossy link, a congested
  one (its queue drops hellos back to back) or the neighbour itself starved of CPU (its daemon sends
  late, in bursts): `link_congested` and `node_overload` predict the timeouts, and the flaps and downs
  of a link whose downs were timeouts, as weak evidence (a carrier flap contradicts both); a starved
  node may also drop out of the mesh for a moment (`unreachable`, evidence for it, no contradiction).
  The hello RTT last read before the neighbour went (monitor.py keeps it) tells them apart: a queue or
  a starved daemon was slow first, a random loss was not. So a starved transit node is ranked among
  its link's faults (top-k), and a congested link that times out its neighbour stays congested.
- A neighbour's own forwarding is read from its loop probes (`probe_via`, monitor.py), which need no
  guess of a return path; a path probe's answer's way back is a guess from the LSDB (local steering is
  not in it), so it weighs little — except a probe to our own neighbour, which answers over our link
  to it (`on_back`): a fault of that link explains those answers too.
- A link that went down while its far end stays reachable is `link_down`; `node_down` explains every
  link to the node going down, and the silence of the interface it was the last neighbour heard on
  (`interface_stuck` predicts the nodes that interface last heard still reachable through others).
  Both are left to routing (policy.ROUTING_REPAIRS).
- consistency = weighted mean agreement over the indicators the hypothesis speaks about (degree where
  it predicts abnormal, 1 - degree where it predicts normal). coverage = the share of lit degree in
  scope that the hypothesis explains. Temporal lag: a cause is seen no later than its effects, so a
  hypothesis whose own element turned abnormal after the effects (more than LAG_TOLERANCE_S) loses up
  to half its score, one with no direct measurement of its element gets NO_DIRECT_EVIDENCE_FACTOR.
  Distance decays the score per hop beyond the first (faults near us explain our observations more
  directly; the routing core repairs far ones itself). score = consistency * sqrt(coverage) * lag *
  decay * prior, times up to MAGNITUDE_TIEBREAK more for loss hypotheses by the mean loss on the paths
  they explain first-hand: where an answer's way back is uncertain (equal-cost paths), two neighbours
  can explain the same lossy paths alike, and the one whose own paths lose most is the better guess.
- A hypothesis that explains none of the symptoms (only side evidence in scope, such as a neighbour's
  sick flag that `node_memory` explains as well as `node_overload`) is not ranked: ranked first, it left
  the cover no group for the symptom, and the incident opened with no candidate at all.
- confidence = score^2 / (sum of the ranked scores^2 + UNEXPLAINED_MASS): a share of belief, low when
  several hypotheses fit equally or none fits well (squared, so a clear winner is not diluted by
  weak alternatives). The top TOP_K are returned.
- `cover` explains many symptoms with few causes: it takes the best candidate, removes the symptoms
  it explains and ranks again (greedy set cover), so simultaneous independent faults each get their own
  diagnosis.
Pure functions of the monitor output and the routing view; deterministic (ties broken by element).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from x0node.healing.monitor import (
    RULES,
    Element,
    ElementKind,
    Indicator,
    Signal,
    Symptom,
    SymptomKind,
    link_element,
    link_ends,
    node_element,
)
from x0node.healing.observation import RoutingObs

MAX_RCA_HOPS = 3
LIT_DEGREE = 0.5
TOP_K = 3
LAG_TOLERANCE_S = 2.0  # one or two monitor cycles: onsets within this are simultaneous
LAG_SCALE_S = 20.0  # a cause this much later than its effects keeps only half its score
NO_DIRECT_EVIDENCE_FACTOR = 0.9
HOP_DECAY = 0.9  # per hop beyond the first
UNEXPLAINED_MASS = 0.1
CONFIDENCE_POWER = 2.0  # confidence from squared scores: a clear winner is not diluted by weak alternatives
CONTRA_WEIGHT = 2.0  # weight of an observation a hypothesis says must be normal
PRIMARY_WEIGHT = 1.5  # evidence the hypothesis explains first-hand (its own paths, not answers' way back)
MAGNITUDE_TIEBREAK = 0.1  # up to 10 % more score for the hypothesis whose own paths lose most
LOSSY_FLAP_WEIGHT = 1.5  # a lossy link predicts flaps of its neighbour, less surely than its hello loss
STARVED_WEIGHT = 1.0  # an overloaded neighbour predicts timeouts and flaps on its links, as weakly as its slowness
QUEUE_TIMEOUT_WEIGHT = 1.0  # a congested link predicts timeouts of its neighbour, less surely than its delay
MIN_SCORE = 0.05
MAX_CANDIDATES = 512


class FaultKind(enum.StrEnum):
    LINK_LOSSY = "link_lossy"
    LINK_CONGESTED = "link_congested"
    LINK_FLAPPING = "link_flapping"
    LINK_DOWN = "link_down"  # silent or cut: routing goes around it
    NODE_BLACKHOLE = "node_blackhole"  # drops (part of) the traffic it forwards
    NODE_OVERLOAD = "node_overload"  # CPU exhausted
    NODE_MEMORY = "node_memory"
    NODE_DOWN = "node_down"
    NODE_ANOMALOUS = "node_anomalous"  # only the anomaly detector says so
    INTERFACE_STUCK = "interface_stuck"
    SERVICE_HUNG = "service_hung"
    UPLINK_BLOCKED = "uplink_blocked"


FAULTS: dict[ElementKind, tuple[FaultKind, ...]] = {
    ElementKind.LINK: (FaultKind.LINK_LOSSY, FaultKind.LINK_CONGESTED, FaultKind.LINK_FLAPPING, FaultKind.LINK_DOWN),
    ElementKind.NODE: (FaultKind.NODE_BLACKHOLE, FaultKind.NODE_OVERLOAD, FaultKind.NODE_MEMORY,
                       FaultKind.NODE_DOWN, FaultKind.NODE_ANOMALOUS),
    ElementKind.INTERFACE: (FaultKind.INTERFACE_STUCK,),
    ElementKind.SERVICE: (FaultKind.SERVICE_HUNG,),
    ElementKind.UPLINK: (FaultKind.UPLINK_BLOCKED,),
}
PRIOR: dict[FaultKind, float] = {FaultKind.NODE_ANOMALOUS: 0.5}  # others 1.0
# A neighbour's overload seen only through slow links, without its CPU, verdict or sick flag, is what a
# congested link to it looks like from here too: the link, which we measure, is the likelier cause.
NO_DIRECT_EVIDENCE: dict[FaultKind, float] = {FaultKind.NODE_OVERLOAD: 0.75}  # others NO_DIRECT_EVIDENCE_FACTOR

# Which indicators are direct measurements of an element (causes), per fault kind.
_DIRECT: dict[FaultKind, frozenset[Signal]] = {
    FaultKind.LINK_LOSSY: frozenset({Signal.HELLO_LOSS, Signal.HELLO_TIMEOUT}),
    FaultKind.LINK_CONGESTED: frozenset({Signal.HELLO_RTT}),
    FaultKind.LINK_FLAPPING: frozenset({Signal.FLAP}),
    FaultKind.LINK_DOWN: frozenset({Signal.LINK_DOWN}),
    FaultKind.NODE_BLACKHOLE: frozenset({Signal.FORWARDING, Signal.VERDICT}),
    FaultKind.NODE_OVERLOAD: frozenset({Signal.CPU, Signal.VERDICT, Signal.SICK}),
    FaultKind.NODE_MEMORY: frozenset({Signal.MEMORY, Signal.VERDICT, Signal.SICK}),
    FaultKind.NODE_DOWN: frozenset({Signal.UNREACHABLE}),
    FaultKind.NODE_ANOMALOUS: frozenset({Signal.VERDICT}),
    FaultKind.INTERFACE_STUCK: frozenset({Signal.IFACE_SILENT}),
    FaultKind.SERVICE_HUNG: frozenset({Signal.SERVICE}),
    FaultKind.UPLINK_BLOCKED: frozenset({Signal.UPLINK}),
}


@dataclass(frozen=True)
class Candidate:
    element: Element
    fault: FaultKind
    confidence: float
    score: float
    consistency: float
    coverage: float
    lag: float
    hops: int
    explains: tuple[str, ...]  # the symptoms it explains ("kind@element")
    evidence: tuple[str, ...]  # the indicators it explains ("signal@element[path]=degree")

    def __str__(self) -> str:
        return f"{self.fault.value}@{self.element} ({self.confidence:.2f})"


@dataclass(frozen=True)
class Diagnosis:
    at_s: float
    candidates: tuple[Candidate, ...]
    symptoms: tuple[str, ...]

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def hop_distances(self_id: str, adjacency: Mapping[str, Iterable[str]], limit: int = MAX_RCA_HOPS + 1) -> dict[str, int]:
    dist = {self_id: 0}
    frontier = [self_id]
    for d in range(1, limit + 1):
        nxt = []
        for u in frontier:
            for v in sorted(adjacency.get(u, ())):
                if v not in dist:
                    dist[v] = d
                    nxt.append(v)
        frontier = nxt
    return dist


def _hops(element: Element, self_id: str, dist: dict[str, int]) -> int | None:
    if element.kind is ElementKind.NODE:
        return dist.get(element.id)
    if element.kind is ElementKind.LINK:
        a, b = link_ends(element)
        ds = [dist[x] for x in (a, b) if x in dist]
        return min(ds) if ds else None
    return 0  # our own interfaces, services and uplinks


def _path_links(path: Sequence[str]) -> list[Element]:
    return [link_element(a, b) for a, b in zip(path, path[1:], strict=False) if a != b]


class _Graph:
    """Adjacency (current and remembered links) with the partitions a dead node would cause, cached."""

    def __init__(self, self_id: str, adjacency: Mapping[str, Iterable[str]],
                 indicators: Iterable[Indicator] = ()) -> None:
        self.me = self_id
        self.adj = {k: frozenset(v) for k, v in adjacency.items()}
        self._cut: dict[str, frozenset[str]] = {}
        self._heard = {i.element: frozenset(i.path[1:]) for i in indicators if i.signal is Signal.IFACE_SILENT}
        # links whose neighbour went by hello timeouts with the carrier up: their flaps are lost hellos
        self.timed_out = frozenset(i.element for i in indicators
                                   if i.signal is Signal.HELLO_TIMEOUT and i.degree >= LIT_DEGREE)

    def last_heard(self, interface: Element) -> frozenset[str]:
        """The neighbours an interface of ours last heard (its silence indicator's path)."""
        return self._heard.get(interface, frozenset())

    def cut_by(self, x: str) -> frozenset[str]:
        """Nodes we could reach only through x."""
        if x not in self._cut:
            reach = {self.me}
            frontier = [self.me]
            while frontier:
                nxt = []
                for u in frontier:
                    for v in self.adj.get(u, ()):
                        if v != x and v not in reach:
                            reach.add(v)
                            nxt.append(v)
                frontier = nxt
            self._cut[x] = frozenset(set(self.adj) - reach - {x})
        return self._cut[x]


def _role(fault: FaultKind, el: Element, ind: Indicator, g: _Graph) -> tuple[float, bool] | None:
    """(weight, predicted abnormal) of one indicator under hypothesis (el, fault); None = says nothing."""
    self_id = g.me
    s, path = ind.signal, ind.path
    if el.kind is ElementKind.LINK:
        a, b = link_ends(el)
        on_path = el in _path_links(path)
        first = len(path) > 1 and link_element(path[0], path[1]) == el
        # a probe to our own neighbour is answered over our link to it (its route to us): the one way
        # back that is no guess, so a fault of that link shows on probes sent out through others
        on_back = len(path) == 3 and not ind.back and el == link_element(path[2], self_id) and not on_path
        # beyond that, the answer's way back is our guess of the far end's route (the LSDB shows no
        # steering): a lost or slow answer is weak evidence for a link on it, a good one no contradiction
        guessed_back = len(path) == 3 and bool(ind.back) and not on_path and ind.degree >= LIT_DEGREE \
            and el in _path_links((path[2], *ind.back, self_id))
        if fault is FaultKind.LINK_LOSSY:
            if s is Signal.HELLO_LOSS and ind.element == el:
                return 3.0, True
            if s is Signal.HELLO_TIMEOUT and ind.element == el:
                return 3.0, True  # its downs are hello timeouts with the carrier up: hellos lost back to back
            if s is Signal.FLAP and ind.element == el:
                return LOSSY_FLAP_WEIGHT, True  # hellos lost back to back time the neighbour out
            if s is Signal.LINK_DOWN and ind.element == el:
                # ... and it is back at the next hello that passes: down is evidence, up no contradiction
                return (LOSSY_FLAP_WEIGHT, True) if ind.degree >= LIT_DEGREE else None
            if s is Signal.PROBE_LOSS and on_path and not first:  # a first link's loss is subtracted
                return 3.0, True
            if s is Signal.PROBE_LOSS and on_back:
                return 1.0, True  # the answers cross it
            if s is Signal.PROBE_LOSS and guessed_back:
                return 1.0, True  # the answers cross it, if the far end routes them as we guess
            if s is Signal.PROBE_LOSS and len(path) == 3 and not on_path and _near(path, a, b, self_id):
                return CONTRA_WEIGHT, False  # other paths through the same neighbour or to the same far end
            if s is Signal.PROBE_VIA and self_id in (a, b) and path == (self_id, b if a == self_id else a):
                return CONTRA_WEIGHT, False  # the loop probes' loss is the link's: no forwarding loss beyond it
            if s is Signal.HELLO_RTT and ind.element == el:
                return 1.0, False  # random loss adds no delay (a queue that drops does)
            return None
        if fault is FaultKind.LINK_DOWN:
            if s is Signal.LINK_DOWN and ind.element == el:
                return 3.0, True
            if s is Signal.FLAP and ind.element == el:
                return CONTRA_WEIGHT, False  # down once, not up and down
            if s is Signal.UNREACHABLE and ind.element.id in (a, b) and ind.element.id != self_id:
                return CONTRA_WEIGHT, False  # its far end is still there (else the node is down)
            return None
        if fault is FaultKind.LINK_CONGESTED:
            if s is Signal.HELLO_RTT and ind.element == el:
                return 3.0, True
            if s is Signal.HELLO_TIMEOUT and ind.element == el:
                # a queue that drops hellos back to back times the neighbour out with the carrier up
                # (a carrier that goes is not congestion), and it comes back when the queue drains
                return QUEUE_TIMEOUT_WEIGHT, True
            if s in (Signal.FLAP, Signal.LINK_DOWN) and ind.element == el and el in g.timed_out:
                return (QUEUE_TIMEOUT_WEIGHT, True) if ind.degree >= LIT_DEGREE else None
            if s is Signal.HELLO_LOSS and ind.element == el:
                # a full queue may drop hellos: evidence when it does, no contradiction when it does not
                # (tbf drops the excess; hellos that find room pass, and the link is no less congested)
                return (1.0, True) if ind.degree >= LIT_DEGREE else None
            if s is Signal.PROBE_RTT and on_path:
                return (1.0 if first else 3.0), True
            if s is Signal.PROBE_RTT and (on_back or guessed_back):
                return 1.0, True  # the answers queue behind it
            if s is Signal.PROBE_RTT and len(path) == 3 and not on_path and _near(path, a, b, self_id):
                return CONTRA_WEIGHT, False
            return None
        if fault is FaultKind.LINK_FLAPPING:
            if s is Signal.FLAP and ind.element == el:
                return 3.0, True
            if s is Signal.LINK_DOWN and ind.element == el:
                return 1.0, True  # down part of the time
            if s is Signal.HELLO_LOSS and ind.element == el:
                return CONTRA_WEIGHT, False  # between its flaps a flapping link passes its hellos
            if s is Signal.HELLO_TIMEOUT and ind.element == el:
                return CONTRA_WEIGHT, False  # the link itself goes down (its carrier), hellos are not lost
            return None
        return None
    if el.kind is ElementKind.NODE:
        x = el.id
        transit = len(path) == 3 and path[1] == x
        back = x in ind.back  # the answer comes back through x
        at_x = ind.element == el
        is_self = x == self_id
        if fault is FaultKind.NODE_BLACKHOLE:
            if s is Signal.PROBE_VIA and at_x:
                return 3.0, True  # everything through x, pooled
            if s is Signal.PROBE_LOSS and transit:
                return 1.5, True
            if s is Signal.PROBE_LOSS and back:
                return 1.0, True  # less sure: the answer's path is our guess of the far end's choice
            if s is Signal.HELLO_LOSS and ind.element == link_element(self_id, x):
                return CONTRA_WEIGHT, False
            if s is Signal.FORWARDING and at_x:
                return 3.0, True
            if s is Signal.VERDICT and at_x and not is_self:
                return 1.0, True
            if s is Signal.SICK and at_x:
                return 1.0, True  # it may have seen its own forwarding fail
            return None
        if fault is FaultKind.NODE_OVERLOAD:
            if s is Signal.CPU and at_x:
                return 3.0, True
            x_link = ind.element.kind is ElementKind.LINK and x in link_ends(ind.element) and not is_self
            if s is Signal.HELLO_TIMEOUT and x_link:
                # a starved daemon sends its hellos late, in bursts: its neighbours time it out with the
                # carrier up (a carrier that goes is no overload) ...
                return STARVED_WEIGHT, True
            if s is Signal.FLAP and x_link and ind.element in g.timed_out:
                return STARVED_WEIGHT, True  # ... and hear it again at its next burst (a cut link stays down)
            if s is Signal.LINK_DOWN and x_link and ind.element in g.timed_out:
                return (STARVED_WEIGHT, True) if ind.degree >= LIT_DEGREE else None
            if s is Signal.UNREACHABLE and at_x and not is_self:
                # every link of it at once: the mesh loses it for a moment (evidence, no contradiction)
                return (STARVED_WEIGHT, True) if ind.degree >= LIT_DEGREE else None
            if s is Signal.SICK and at_x:
                return 2.0, True  # its own CPU is not shared with us, but its LSA says it is sick
            if s is Signal.HELLO_RTT and x in path:
                return 1.0, True
            if s is Signal.PROBE_RTT and len(path) == 3 and x in path[1:]:
                return 1.0, True  # every link of an overloaded node is slow, towards it too
            if s is Signal.VERDICT and at_x:
                return 1.0, True
            return None
        if fault is FaultKind.NODE_MEMORY:
            if s is Signal.MEMORY and at_x:
                return 3.0, True
            if s is Signal.SICK and at_x:
                return 1.0, True
            if s is Signal.VERDICT and at_x:
                return 1.0, True
            return None
        if fault is FaultKind.NODE_DOWN:
            if is_self:
                return None
            if s is Signal.UNREACHABLE and at_x:
                return 3.0, True
            if s is Signal.UNREACHABLE and ind.element.id in g.cut_by(x):
                return 1.0, True  # partitioned off by x's death
            if s is Signal.PROBE_LOSS and len(path) == 3 and path[2] == x:
                return 2.0, True
            if s is Signal.HELLO_LOSS and ind.element == link_element(self_id, x):
                return 1.0, True
            if s is Signal.LINK_DOWN and x in ind.path:
                return 2.0, True  # every link to it goes down
            if s is Signal.IFACE_SILENT and x in ind.path[1:]:
                # the interface it was heard on falls silent (after IFACE_SILENT_S: no contradiction before)
                return (2.0, True) if ind.degree >= LIT_DEGREE else None
            return None
        if fault is FaultKind.NODE_ANOMALOUS:
            return (3.0, True) if s is Signal.VERDICT and at_x else None
        return None
    if fault is FaultKind.INTERFACE_STUCK and s is Signal.UNREACHABLE and ind.element.id in g.last_heard(el):
        return CONTRA_WEIGHT, False  # a stuck interface cuts our links, not the nodes behind them
    direct = _DIRECT[fault]
    return (3.0, True) if s in direct and ind.element == el else None


def _near(path: Sequence[str], a: str, b: str, self_id: str) -> bool:
    """A probe path that does not cross link a~b but would tell a fault of the link from one of its far
    end: it goes through, or to, an end of the link that is not us."""
    far = {a, b} - {self_id}
    return path[1] in far or path[2] in far


def _candidate_elements(lit: Iterable[Indicator], adjacency: Mapping[str, Iterable[str]],
                        self_id: str) -> set[Element]:
    out: set[Element] = set()
    for ind in lit:
        out.add(ind.element)
        for n in ind.path + ind.back:
            out.add(node_element(n))
        out.update(_path_links(ind.path))
        if ind.back and len(ind.path) == 3:  # our own link on the answer's way back (we measure it)
            out.update(el for el in _path_links((ind.path[2], *ind.back, ind.path[0])) if self_id in link_ends(el))
        if ind.signal is Signal.UNREACHABLE:  # a node that vanished, or the links that lead to it
            for nb in adjacency.get(ind.element.id, ()):
                out.add(link_element(ind.element.id, nb))
    return out


def _symptom_indicators(symptom: Symptom, indicators: Iterable[Indicator]) -> list[Indicator]:
    rule = RULES[symptom.kind]
    signals = {rule.signal, Signal.PROBE_VIA} if symptom.kind is SymptomKind.FORWARDING_LOSS else {rule.signal}
    out = []
    for ind in indicators:
        if ind.signal not in signals:
            continue
        if symptom.kind is SymptomKind.FORWARDING_LOSS:
            if len(ind.path) >= 2 and node_element(ind.path[1]) == symptom.element:
                out.append(ind)
        elif ind.element == symptom.element:
            out.append(ind)
    return out


def _scope(indicators: Sequence[Indicator], symptoms: Sequence[Symptom], me: str) -> dict[tuple[object, ...], Indicator]:
    """What a hypothesis must explain: the symptoms' own indicators while they are above the symptom's
    exit level, and every lit indicator about the nodes the symptoms are about (a CPU reading at the
    far end of a slow link is evidence about that link's symptom)."""
    scope: dict[tuple[object, ...], Indicator] = {}
    focus: set[str] = set()
    for sym in symptoms:
        level = RULES[sym.kind].exit
        for ind in _symptom_indicators(sym, indicators):
            if ind.degree > level:
                scope[ind.key] = ind
        if sym.element.kind is ElementKind.NODE:
            focus.add(sym.element.id)
        elif sym.element.kind is ElementKind.LINK:
            focus.update(link_ends(sym.element))
    focus.discard(me)
    for ind in indicators:
        if ind.degree < LIT_DEGREE or ind.key in scope:
            continue
        el = ind.element
        ends = {el.id} if el.kind is ElementKind.NODE else set(link_ends(el)) if el.kind is ElementKind.LINK else set()
        if ends & focus or (len(ind.path) == 3 and ind.path[1] in focus):
            scope[ind.key] = ind
    return scope


def rank(
    indicators: Sequence[Indicator],
    symptoms: Sequence[Symptom],
    routing: RoutingObs,
    now: float,
    top_k: int = TOP_K,
    adjacency: Mapping[str, Iterable[str]] | None = None,
) -> Diagnosis:
    """Rank hypotheses that explain `symptoms`, using all `indicators` as evidence. `adjacency` adds
    remembered links (MonitorOutput.adjacency) to the routing view's."""
    me = routing.self_id
    merged: dict[str, set[str]] = {k: set(v) for k, v in routing.adjacency().items()}
    for k, v in (adjacency or {}).items():
        merged.setdefault(k, set()).update(v)
    graph = _Graph(me, merged, indicators)
    dist = hop_distances(me, merged)
    scope = _scope(indicators, symptoms, me)
    lit_mass = sum(i.degree for i in scope.values())
    if not scope:
        return Diagnosis(now, (), tuple(str(s) for s in symptoms))
    elements = sorted(_candidate_elements(scope.values(), merged, me))[:MAX_CANDIDATES]
    scored: list[tuple[float, Candidate]] = []
    for el in elements:
        hops = _hops(el, me, dist)
        if hops is None or hops > MAX_RCA_HOPS:
            continue
        for fault in FAULTS[el.kind]:
            cand = _score(el, fault, hops, indicators, scope, lit_mass, symptoms, graph)
            if cand is not None:
                scored.append((cand.score, cand))
    scored.sort(key=lambda sc: (-sc[0], sc[1].element, sc[1].fault.value))
    top = scored[:top_k]
    total = sum(s**CONFIDENCE_POWER for s, _ in top) + UNEXPLAINED_MASS
    cands = tuple(
        Candidate(c.element, c.fault, round(s**CONFIDENCE_POWER / total, 4), c.score, c.consistency, c.coverage, c.lag,
                  c.hops,
                  c.explains, c.evidence)
        for s, c in top
    )
    return Diagnosis(now, cands, tuple(str(s) for s in symptoms))


def _score(
    el: Element,
    fault: FaultKind,
    hops: int,
    indicators: Sequence[Indicator],
    scope: dict[tuple[object, ...], Indicator],
    lit_mass: float,
    symptoms: Sequence[Symptom],
    graph: _Graph,
) -> Candidate | None:
    num = den = 0.0
    explained: list[Indicator] = []
    primary_loss: list[float] = []
    for ind in indicators:
        role = _role(fault, el, ind, graph)
        if role is None:
            continue
        w, abnormal = role
        den += w
        num += w * (ind.degree if abnormal else 1.0 - ind.degree)
        if abnormal and ind.key in scope:
            explained.append(ind)
            if w >= PRIMARY_WEIGHT and ind.signal in (Signal.PROBE_LOSS, Signal.PROBE_VIA):
                primary_loss.append(min(1.0, max(0.0, ind.value)))
    if den == 0.0 or not explained:
        return None
    consistency = num / den
    coverage = sum(i.degree for i in explained) / lit_mass if lit_mass else 0.0
    lag = _lag_factor(fault, el, indicators, explained)
    decay = HOP_DECAY ** max(0, hops - 1)
    score = consistency * math.sqrt(coverage) * lag * decay * PRIOR.get(fault, 1.0)
    if primary_loss:  # among hypotheses that fit alike, the one whose own paths lose most
        score *= 1.0 + MAGNITUDE_TIEBREAK * sum(primary_loss) / len(primary_loss)
    if score < MIN_SCORE:
        return None
    keys = {i.key for i in explained}
    explains = tuple(sorted(str(s) for s in symptoms
                            if any(i.key in keys for i in _symptom_indicators(s, explained))))
    if not explains:
        return None  # it explains only side evidence (a neighbour's sick flag), none of the symptoms
    evidence = tuple(f"{i.signal.value}@{i.element}{list(i.path)}={i.degree:.2f}" for i in explained[:16])
    return Candidate(el, fault, 0.0, round(score, 4), round(consistency, 4), round(coverage, 4), round(lag, 4),
                     hops, explains, evidence)


def _lag_factor(fault: FaultKind, el: Element, indicators: Sequence[Indicator],
                explained: Sequence[Indicator]) -> float:
    direct = _DIRECT[fault]
    causes = [i.onset_s for i in indicators
              if i.signal in direct and i.element == el and i.onset_s is not None]
    effects = [i.onset_s for i in explained if i.onset_s is not None and not (i.signal in direct and i.element == el)
               and not (fault is FaultKind.LINK_LOSSY and i.signal in (Signal.FLAP, Signal.LINK_DOWN)
                        and i.element == el)]
    if not causes:
        return NO_DIRECT_EVIDENCE.get(fault, NO_DIRECT_EVIDENCE_FACTOR)
    if not effects:
        return 1.0
    late = min(causes) - min(effects) - LAG_TOLERANCE_S
    if late <= 0.0:
        return 1.0
    return 1.0 - 0.5 * min(1.0, late / LAG_SCALE_S)


def cover(
    indicators: Sequence[Indicator],
    symptoms: Sequence[Symptom],
    routing: RoutingObs,
    now: float,
    top_k: int = TOP_K,
    max_groups: int = 8,
    adjacency: Mapping[str, Iterable[str]] | None = None,
) -> list[tuple[Diagnosis, tuple[Symptom, ...]]]:
    """Greedy set cover: [(diagnosis, the symptoms its top candidate explains)], best first. Symptoms no
    candidate explains end up in a last group whose diagnosis has no candidates."""
    left = list(symptoms)
    out: list[tuple[Diagnosis, tuple[Symptom, ...]]] = []
    while left and len(out) < max_groups:
        diag = rank(indicators, left, routing, now, top_k, adjacency)
        top = diag.top
        if top is None:
            break
        names = set(top.explains)
        group = tuple(s for s in left if str(s) in names)
        if not group:
            break
        out.append((diag, group))
        left = [s for s in left if str(s) not in names]
    if left:
        out.append((Diagnosis(now, (), tuple(str(s) for s in left)), tuple(left)))
    return out
