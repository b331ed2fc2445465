"""Monitor: observations -> indicators (how abnormal each measured thing is) -> symptoms with hysteresis.

Rules and invariants:
- An `Indicator` is one measurement turned into a degree in [0, 1] (0 normal, 1 clearly abnormal) by
  the pinned thresholds below: a link down (a neighbour seen up in the last LINK_DOWN_MEMORY_S is
  gone: the core forgets a dead neighbour at once, so the monitor remembers it), link loss (the hello loss, or the one-way loss the link probes show when
  that is higher: they see a new loss within seconds, the hello EWMA within ~10 s), link RTT against its own baseline (the minimum over
  RTT_BASELINE_WINDOW_S, as the routing core does), flaps in FLAP_WINDOW_S and the share of the link's
  downs in that window that were hello timeouts with the carrier up (NeighbourObs.timeouts: lost hellos,
  not a link that went down; while the neighbour is gone, the share last measured and, for
  RTT_MEMORY_S, its last hello RTT reading: a queue that timed it out was slow first, a random loss
  was not), data-plane probe loss in
  excess of what the first link's own loss explains (the loss's Wilson lower bound, so that a couple of
  unlucky probes in a small window count for little), a neighbour's forwarding loss (its loop probes'
  loss beyond its link probes', so no guess of a return path enters it), probe RTT against its baseline, node
  reachability, node CPU / memory / forwarding ratio, anomaly verdicts, service health, silent
  interfaces, blocked uplinks. Each indicator keeps its onset: when its degree last rose to
  ABNORMAL_DEGREE (analysis uses onsets for temporal ordering).
- A `Symptom` is a rule over indicators of one element with two-level hysteresis: it is raised when
  the element's degree stays >= `enter` for `raise_after_s`, and cleared when it stays <= `exit` for
  `clear_after_s`. Between the two levels nothing changes, so a measurement hovering near one
  threshold cannot make a symptom flap.
- The monitor remembers every link it saw in the last TOPOLOGY_MEMORY_S (`MonitorOutput.adjacency`):
  when a node dies its links leave the routing view at once, but analysis needs them to place it.
- State is bounded: histories are pruned by age and by count; elements unseen for FORGET_AFTER_S are
  forgotten; at most MAX_TRACKED keys of each kind are kept (new keys beyond that are ignored and
  counted in `overflow`).
- A neighbour the routing core forgot (it does so at once when it goes down) went down once more
  than its transitions when last seen up: its flap count includes that down while it is gone, so a
  flapping link is seen at its second down, not when it is back. While it is gone its downs' cause
  (the HELLO_TIMEOUT share) is the one last measured, so a carrier flap and a lossy link's timeouts
  stay apart. A link with no transition for FLAP_QUIET_S has stopped flapping: its flap indicator is
  0 (and no timeout share) however many flaps the FLAP_WINDOW_S count still holds, so flaps that are
  over make no candidate for other symptoms on that link.
- `settle(keys, now)` clears symptoms the engine judged over (their evidence clean for a lifted
  mitigation's hold); they rise again only through their `raise_after_s`, and a settled link flap
  (its count over FLAP_WINDOW_S still lit) only after a new transition (`link_quiet_s`).
- Sans-I/O: `observe(snapshot)` takes the snapshot's `now`; no clock or randomness.
"""

from __future__ import annotations

import collections
import enum
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from x0node.healing.observation import ProbeObs, RoutingObs, Snapshot

# --- thresholds (degree = 0 at the first value, 1 at the second, linear between) -------------------
LOSS_NORMAL, LOSS_BAD = 0.03, 0.15  # hello loss; the core's FAIR class ends at 3 %
HELLO_INTERVAL_S = 0.1  # the routing core's hello interval (x0node/proto/protocol.py)
LOSS_EWMA_KEEP = 1.0 - 1.0 / 128  # the core's loss EWMA: LOSS_EWMA_PACKETS = 128
LOSS_MIN_HELLOS = 20.0  # a session's loss EWMA is corrected for its start after this many hellos
LOSS_MEMORY_S = 30.0  # a younger session reads the link's last corrected loss this long
RTT_RATIO_NORMAL, RTT_RATIO_BAD = 2.0, 5.0  # RTT / baseline
RTT_EXCESS_MIN_MS = 15.0  # below this much extra delay a ratio means nothing (sub-ms veth RTTs)
RTT_FLOOR_MS = 0.5  # baselines below this are measurement noise
FLAPS_NORMAL, FLAPS_BAD = 1.0, 4.0  # up/down transitions in FLAP_WINDOW_S
FLAP_WINDOW_S = 120.0
FLAP_QUIET_S = 10.0  # a link with no up/down transition for this long has stopped flapping (link_quiet_s)
PROBE_EXCESS_NORMAL, PROBE_EXCESS_BAD = 0.03, 0.15  # probe loss (Wilson lower bound) beyond the first link's
WILSON_Z = 1.96
PROBE_MIN_SAMPLES = 6  # fewer answered-or-lost probes say nothing
RECENT_OUTCOMES = (8, 12, 16)  # tails of a probe window judged on their own (loss_bound)
CPU_NORMAL, CPU_BAD = 0.85, 0.97
MEM_NORMAL, MEM_BAD = 0.90, 0.98
FWD_NORMAL, FWD_BAD = 0.95, 0.70  # forwarding ratio (falls when a node drops transit traffic)
VERDICT_DEGREE_OBSERVED = 0.3  # a verdict the detector does not trust yet (its observe mode) is weak evidence
IFACE_SILENT_S = 10.0  # an up interface with neighbours before and none for this long is silent
ABNORMAL_DEGREE = 0.5  # indicator onset level

RTT_BASELINE_WINDOW_S = 300.0
DRAINED_COST = 65534  # a drained link's advertised cost: the routing core's LINK_COST_MAX_USABLE (proto/commands.py)
RTT_MEMORY_S = 10.0  # a neighbour gone this recently keeps its last hello RTT reading (evidence of how it went)
LINK_DOWN_MEMORY_S = 60.0  # a neighbour gone this recently is a link down (the core forgets it at once)
TOPOLOGY_MEMORY_S = 300.0  # links seen this recently still count for analysis (a dead node's links vanish)
HISTORY_MAX_SAMPLES = 128  # per tracked key
FORGET_AFTER_S = 600.0
MAX_TRACKED = 4096


class ElementKind(enum.StrEnum):
    NODE = "node"
    LINK = "link"
    INTERFACE = "interface"
    SERVICE = "service"
    UPLINK = "uplink"


@dataclass(frozen=True, order=True)
class Element:
    kind: ElementKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


def link_id(a: str, b: str) -> str:
    return f"{a}~{b}" if a < b else f"{b}~{a}"


def link_element(a: str, b: str) -> Element:
    return Element(ElementKind.LINK, link_id(a, b))


def node_element(node_id: str) -> Element:
    return Element(ElementKind.NODE, node_id)


def link_ends(element: Element) -> tuple[str, str]:
    a, _, b = element.id.partition("~")
    return a, b


class Signal(enum.StrEnum):
    HELLO_LOSS = "hello_loss"
    HELLO_RTT = "hello_rtt"
    FLAP = "flap"
    HELLO_TIMEOUT = "hello_timeout"  # share of a link's recent downs that were hello timeouts, not carrier losses
    LINK_DOWN = "link_down"  # a neighbour that was up is gone (its node may still be reachable)
    PROBE_LOSS = "probe_loss"  # one path: us -> via -> dest
    PROBE_VIA = "probe_via"  # one neighbour's forwarding: its loop probes (else all its paths, pooled)
    PROBE_RTT = "probe_rtt"
    UNREACHABLE = "unreachable"
    CPU = "cpu"
    MEMORY = "memory"
    FORWARDING = "forwarding"
    VERDICT = "verdict"
    SERVICE = "service"
    IFACE_SILENT = "iface_silent"
    UPLINK = "uplink"
    SICK = "sick"  # another node says in its LSA that it knows it is sick (evidence only, no symptom)


@dataclass(frozen=True)
class Indicator:
    signal: Signal
    element: Element  # where it was measured (a link, a node, a service, ...)
    path: tuple[str, ...]  # node ids the measured traffic crossed: probe (self, via, dest), link (a, b), node (x,)
    degree: float
    value: float
    onset_s: float | None  # when the degree last rose to ABNORMAL_DEGREE (None while normal)
    detail: str = ""  # e.g. the interface of a link
    back: tuple[str, ...] = ()  # probes: the nodes the answer crosses on its way back (dest's path to us)

    @property
    def key(self) -> tuple[Signal, Element, tuple[str, ...]]:
        return self.signal, self.element, self.path


class SymptomKind(enum.StrEnum):
    LINK_LOSS = "link_loss"
    LINK_DELAY = "link_delay"
    LINK_FLAP = "link_flap"
    LINK_DOWN = "link_down"  # our link to a neighbour went down
    FORWARDING_LOSS = "forwarding_loss"  # data-plane probes through a neighbour get lost
    NODE_UNREACHABLE = "node_unreachable"
    OVERLOAD = "overload"  # this node's CPU
    MEMORY_PRESSURE = "memory_pressure"  # this node's memory
    SELF_FORWARDING = "self_forwarding"  # this node drops transit traffic (own counters)
    SERVICE_UNHEALTHY = "service_unhealthy"
    INTERFACE_SILENT = "interface_silent"
    UPLINK_BLOCKED = "uplink_blocked"
    ANOMALY = "anomaly"  # the anomaly detector flags a node and may act


@dataclass(frozen=True)
class SymptomRule:
    signal: Signal
    enter: float
    exit: float
    raise_after_s: float
    clear_after_s: float
    self_only: bool = False  # only indicators on this node itself
    actionable_only: bool = False  # only verdicts the detector lets act


# The symptom table: which indicator raises which symptom, with its hysteresis.
RULES: dict[SymptomKind, SymptomRule] = {
    SymptomKind.LINK_LOSS: SymptomRule(Signal.HELLO_LOSS, 0.5, 0.2, 0.5, 10.0),
    SymptomKind.LINK_DELAY: SymptomRule(Signal.HELLO_RTT, 0.5, 0.2, 2.0, 10.0),
    SymptomKind.LINK_FLAP: SymptomRule(Signal.FLAP, 0.5, 0.2, 0.0, 60.0),
    # longer than a flapping link's down phase, so a flap is not first taken for a link down
    SymptomKind.LINK_DOWN: SymptomRule(Signal.LINK_DOWN, 0.5, 0.2, 2.5, 5.0),
    # raised by the pooled loss through the neighbour (fast) or by one path (a link beyond it);
    # analysis decides node vs. link
    SymptomKind.FORWARDING_LOSS: SymptomRule(Signal.PROBE_LOSS, 0.5, 0.2, 0.5, 10.0),
    SymptomKind.NODE_UNREACHABLE: SymptomRule(Signal.UNREACHABLE, 0.5, 0.2, 0.0, 0.0),
    # 1 s: a node's own cgroup pressure (cpu_io.py) is exact — throttled in every period or not
    SymptomKind.OVERLOAD: SymptomRule(Signal.CPU, 0.5, 0.2, 1.0, 30.0, self_only=True),
    SymptomKind.MEMORY_PRESSURE: SymptomRule(Signal.MEMORY, 0.5, 0.2, 10.0, 30.0, self_only=True),
    SymptomKind.SELF_FORWARDING: SymptomRule(Signal.FORWARDING, 0.5, 0.2, 5.0, 30.0, self_only=True),
    SymptomKind.SERVICE_UNHEALTHY: SymptomRule(Signal.SERVICE, 0.5, 0.2, 3.0, 10.0),
    SymptomKind.INTERFACE_SILENT: SymptomRule(Signal.IFACE_SILENT, 0.5, 0.2, 0.0, 5.0),
    SymptomKind.UPLINK_BLOCKED: SymptomRule(Signal.UPLINK, 0.5, 0.2, 10.0, 30.0),
    SymptomKind.ANOMALY: SymptomRule(Signal.VERDICT, 0.9, 0.2, 0.0, 30.0, actionable_only=True),
}


@dataclass(frozen=True)
class Symptom:
    kind: SymptomKind
    element: Element
    since_s: float  # when it was raised
    degree: float  # the element's current degree
    detail: str = ""  # e.g. the interface of a link symptom

    @property
    def key(self) -> tuple[SymptomKind, Element]:
        return self.kind, self.element

    def __str__(self) -> str:
        return f"{self.kind.value}@{self.element}"


@dataclass(frozen=True)
class MonitorOutput:
    now: float
    indicators: tuple[Indicator, ...]
    active: tuple[Symptom, ...]
    raised: tuple[Symptom, ...]
    cleared: tuple[Symptom, ...]
    adjacency: Mapping[str, frozenset[str]] = field(default_factory=dict)  # current and remembered links


def return_paths(routing: RoutingObs, dests: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """dest -> the nodes between dest and us on dest's own route back, as the routing core picks it:
    shortest by the LSDB's costs (each direction its own, a drained link drained both ways), equal costs
    going to the path whose first hop has the smallest id (x0node/proto/spf.py)."""
    me = routing.self_id
    adj: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for e in routing.edges:
        both = e.costs()
        drained = any(c == DRAINED_COST for _, _, c in both)  # a drain holds both ways (proto/routes.py)
        for u, v, c in both:
            adj[u].append((v, max(c, DRAINED_COST) if drained else c))
    out: dict[str, tuple[str, ...]] = {}
    for dest in dests:
        best: dict[str, tuple[int, str]] = {dest: (0, "")}  # node -> (distance, first hop from dest)
        parent: dict[str, str] = {}
        heap: list[tuple[int, str, str]] = [(0, "", dest)]
        done: set[str] = set()
        while heap:
            d, fh, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u == me:
                break
            for v, c in adj.get(u, ()):
                key = (d + c, fh or v)
                if v not in done and (v not in best or key < best[v]):
                    best[v], parent[v] = key, u
                    heapq.heappush(heap, (key[0], key[1], v))
        if me not in parent:
            continue
        hops: list[str] = []
        u = parent[me]
        while u != dest and len(hops) <= len(parent):
            hops.append(u)
            u = parent[u]
        out[dest] = tuple(reversed(hops))
    return out


def wilson_lower(k: int, n: int, z: float = WILSON_Z) -> float:
    """Lower bound of the Wilson score interval for k successes in n trials (E. B. Wilson, 1927): a loss
    rate we are ~97.5 % sure is exceeded, so a few unlucky probes out of a handful raise nothing."""
    if n <= 0:
        return 0.0
    p = k / n
    den = 1.0 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return max(0.0, (centre - spread) / den)


def loss_bound(p: ProbeObs) -> float:
    """A probe window's loss we are sure of: the largest Wilson lower bound over the whole window and
    its last RECENT_OUTCOMES (each a nested tail), so a loss that began a few probes ago shows before
    it fills the window, and a handful of unlucky probes still count for little."""
    best = wilson_lower(p.lost, p.sent)
    flags = p.lost_flags
    for n in RECENT_OUTCOMES:
        if n < len(flags):
            best = max(best, wilson_lower(sum(flags[-n:]), n))
    return best


def recent_loss(p: ProbeObs) -> float:
    """A probe window's loss as it is now: the largest raw loss over the whole window and its last
    RECENT_OUTCOMES. Subtracted from a loop probe's `loss_bound` as the first link's share, it must be
    as recent as that bound: a loss that began a few probes ago, diluted in the link probes' whole window
    but not in the loop probes' tail, read as the neighbour's forwarding loss (a lossy link named a black
    hole at its far end)."""
    best = p.loss
    flags = p.lost_flags
    for n in RECENT_OUTCOMES:
        if n < len(flags):
            best = max(best, sum(flags[-n:]) / n)
    return best


def ramp(value: float, normal: float, bad: float) -> float:
    """0 at `normal`, 1 at `bad` (either direction), linear and clipped between."""
    if bad == normal:
        return 1.0 if value >= bad else 0.0
    return min(1.0, max(0.0, (value - normal) / (bad - normal)))


@dataclass
class _Hysteresis:
    active: bool = False
    since_s: float = 0.0
    bad_since: float | None = None
    good_since: float | None = None
    seen_s: float = 0.0
    detail: str = ""
    settled: bool = False  # cleared by `settle`; a flap count still lit raises it again only on a new flap


class _History:
    """Bounded (time, value) samples of one key."""

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=HISTORY_MAX_SAMPLES)
        self.seen_s = 0.0

    def add(self, t: float, v: float, keep_s: float) -> None:
        self.samples.append((t, v))
        self.seen_s = t
        while self.samples and self.samples[0][0] < t - keep_s:
            self.samples.popleft()

    def minimum(self) -> float | None:
        return min((v for _, v in self.samples), default=None)

    def unchanged_for(self, now: float) -> float:
        """Seconds the last value has held, as far as the samples reach (0 without samples)."""
        if not self.samples:
            return 0.0
        last = self.samples[-1][1]
        since = self.samples[-1][0]
        for t, v in reversed(self.samples):
            if v != last:
                break
            since = t
        return now - since


class Monitor:
    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self._rtt: dict[tuple[str, ...], _History] = {}  # link (ifname, nbr) or probe path -> RTT samples
        self._flaps: dict[tuple[str, str], _History] = {}  # (ifname, nbr) -> transition counts
        self._timeouts: dict[tuple[str, str], _History] = {}  # (ifname, nbr) -> downs by hello timeout, counts
        self._timeout_share: dict[tuple[str, str], float] = {}  # (ifname, nbr) -> its last timeout share
        self._loss_memory: dict[tuple[str, str], tuple[float, float]] = {}  # (ifname, nbr) -> (loss, at)
        self._rtt_memory: dict[tuple[str, str], tuple[float, float, float]] = {}  # (ifname, nbr) -> (degree, ratio, at)
        self._iface_heard: dict[str, float] = {}  # interface -> last time it had an up neighbour
        self._nbr_up: dict[str, tuple[str, float]] = {}  # neighbour -> (interface, last seen up)
        self._up_transitions: dict[tuple[str, str], int] = {}  # (ifname, nbr) -> its transitions when last seen up
        self._onsets: dict[tuple[Signal, Element, tuple[str, ...]], float] = {}
        self._onset_seen: dict[tuple[Signal, Element, tuple[str, ...]], float] = {}
        self._states: dict[tuple[SymptomKind, Element], _Hysteresis] = {}
        self._links: dict[tuple[str, str], float] = {}  # (a, b) with a < b -> last seen
        self._back: dict[str, tuple[str, ...]] = {}
        self._back_key: object = None
        self._back_paths: dict[str, tuple[str, ...]] = {}
        self.overflow = 0

    # ---- bounded maps
    def _room(self, table: dict, key: object) -> bool:
        if key in table or len(table) < MAX_TRACKED:
            return True
        self.overflow += 1
        return False

    def _forget(self, now: float) -> None:
        for table in (self._rtt, self._flaps, self._timeouts):
            for k in [k for k, h in table.items() if now - h.seen_s > FORGET_AFTER_S]:
                del table[k]
        for k in [k for k in self._up_transitions if k not in self._flaps]:
            del self._up_transitions[k]
        for k in [k for k in self._timeout_share if k not in self._flaps]:
            del self._timeout_share[k]
        for k in [k for k, (_, t) in self._loss_memory.items() if now - t > LOSS_MEMORY_S]:
            del self._loss_memory[k]
        for k in [k for k, (_, _, t) in self._rtt_memory.items() if now - t > RTT_MEMORY_S]:
            del self._rtt_memory[k]
        for k in [k for k, t in self._onset_seen.items() if now - t > FORGET_AFTER_S]:
            self._onset_seen.pop(k, None)
            self._onsets.pop(k, None)
        for k in [k for k, st in self._states.items() if not st.active and now - st.seen_s > FORGET_AFTER_S]:
            del self._states[k]
        for k in [k for k, t in self._links.items() if now - t > TOPOLOGY_MEMORY_S]:
            del self._links[k]
        for k in [k for k, (_, t) in self._nbr_up.items() if now - t > LINK_DOWN_MEMORY_S]:
            del self._nbr_up[k]

    def _remember_links(self, snap: Snapshot) -> None:
        for a, bs in snap.routing.adjacency().items():
            for b in bs:
                key = (a, b) if a < b else (b, a)
                if self._room(self._links, key):
                    self._links[key] = snap.now

    def _adjacency(self) -> dict[str, frozenset[str]]:
        adj: dict[str, set[str]] = collections.defaultdict(set)
        for a, b in self._links:
            adj[a].add(b)
            adj[b].add(a)
        return {k: frozenset(v) for k, v in adj.items()}

    def _return_paths(self, routing: RoutingObs, dests: set[str]) -> dict[str, tuple[str, ...]]:
        """return_paths, recomputed only when the LSDB view or the probed destinations change."""
        key = (routing.edges, frozenset(dests))
        if self._back_key != key:
            self._back_key, self._back_paths = key, return_paths(routing, sorted(dests)) if dests else {}
        return self._back_paths

    # ---- indicators
    def _rtt_degree(self, key: tuple[str, ...], rtt_ms: float | None, now: float) -> tuple[float, float]:
        """(degree, ratio) of an RTT against its key's baseline; the sample joins the history."""
        if rtt_ms is None or not self._room(self._rtt, key):
            return 0.0, 0.0
        hist = self._rtt.setdefault(key, _History())
        base = hist.minimum()
        hist.add(now, rtt_ms, RTT_BASELINE_WINDOW_S)
        if base is None:
            return 0.0, 1.0
        base = max(base, RTT_FLOOR_MS)
        ratio = rtt_ms / base
        if rtt_ms - base < RTT_EXCESS_MIN_MS:
            return 0.0, ratio
        return ramp(ratio, RTT_RATIO_NORMAL, RTT_RATIO_BAD), ratio

    def _sustained_loss(self, key: tuple[str, str], ewma: float, up_for_s: float | None, now: float) -> float:
        """The link's hello loss across the neighbour's sessions. The core forgets a dead neighbour and
        starts a new session's loss EWMA at 0, so on a link lossy enough to time its neighbour out every
        few seconds the EWMA never warms up. With the session's age known, the EWMA is corrected for its
        start from 0 (divided by 1 - keep^k after k hellos, the usual bias correction of an
        exponential average); a session too young for that (fewer than LOSS_MIN_HELLOS) reads the
        last corrected value of the link within LOSS_MEMORY_S instead. Without an age: the EWMA."""
        if up_for_s is None:
            return ewma
        hellos = up_for_s / HELLO_INTERVAL_S
        if hellos >= LOSS_MIN_HELLOS:
            est = min(1.0, ewma / (1.0 - LOSS_EWMA_KEEP**hellos))
            if self._room(self._loss_memory, key):
                self._loss_memory[key] = (est, now)
            return est
        last = self._loss_memory.get(key)
        if last is not None and now - last[1] <= LOSS_MEMORY_S:
            return max(ewma, last[0])
        return ewma

    def _indicators(self, snap: Snapshot) -> list[tuple[Signal, object, tuple[str, ...], float, float, str]]:
        now, me, r = snap.now, self.self_id, snap.routing
        out: list[tuple[Signal, object, tuple[str, ...], float, float, str]] = []
        self._back = self._return_paths(r, {p.dest for p in snap.probes if p.dest not in (me, p.via)})
        hello_loss: dict[str, float] = {}
        for n in r.neighbours:
            link = link_element(me, n.node_id)
            key = (n.ifname, n.node_id)
            if self._room(self._flaps, key):
                fh = self._flaps.setdefault(key, _History())
                fh.add(now, float(n.transitions), FLAP_WINDOW_S)
                flaps = fh.samples[-1][1] - fh.samples[0][1]
                quiet = fh.unchanged_for(now) >= FLAP_QUIET_S  # flaps that are over: counted, not abnormal
                degree = 0.0 if quiet else ramp(flaps, FLAPS_NORMAL, FLAPS_BAD)
                out.append((Signal.FLAP, link, (me, n.node_id), degree, flaps, n.ifname))
                if n.timeouts is not None and self._room(self._timeouts, key):
                    th = self._timeouts.setdefault(key, _History())
                    th.add(now, float(n.timeouts), FLAP_WINDOW_S)
                    if flaps > 0 and not quiet:  # of its downs in the window (every other transition), the timeouts
                        share = min(1.0, (th.samples[-1][1] - th.samples[0][1]) / max(1.0, (flaps + 1) // 2))
                        self._timeout_share[key] = share
                        out.append((Signal.HELLO_TIMEOUT, link, (me, n.node_id), share, share, n.ifname))
                    else:
                        self._timeout_share.pop(key, None)
            if not n.up:
                continue
            if self._room(self._nbr_up, n.node_id):
                self._nbr_up[n.node_id] = (n.ifname, now)
                self._up_transitions[key] = n.transitions
            loss = self._sustained_loss(key, n.loss, n.up_for_s, now)
            hello_loss[n.node_id] = max(hello_loss.get(n.node_id, 0.0), loss)
            out.append((Signal.HELLO_LOSS, link, (me, n.node_id), ramp(loss, LOSS_NORMAL, LOSS_BAD), loss, n.ifname))
            deg, ratio = self._rtt_degree(("link", n.ifname, n.node_id), n.rtt_ms, now)
            out.append((Signal.HELLO_RTT, link, (me, n.node_id), deg, ratio, n.ifname))
        listed = {(n.ifname, n.node_id) for n in r.neighbours}
        for nb, (ifname, seen) in sorted(self._nbr_up.items()):  # gone from the view: it went down once more
            key = (ifname, nb)
            fh = self._flaps.get(key)
            if key in listed or now - seen > LINK_DOWN_MEMORY_S or fh is None or key not in self._up_transitions:
                continue
            fh.add(now, max(fh.samples[-1][1], float(self._up_transitions[key] + 1)), FLAP_WINDOW_S)
            flaps = fh.samples[-1][1] - fh.samples[0][1]
            out.append((Signal.FLAP, link_element(me, nb), (me, nb), ramp(flaps, FLAPS_NORMAL, FLAPS_BAD), flaps,
                        ifname))
            share = self._timeout_share.get(key)
            if share is not None:  # its downs' cause as last seen: the view has no count while it is gone
                out.append((Signal.HELLO_TIMEOUT, link_element(me, nb), (me, nb), share, share, ifname))
        up_now = {n.node_id for n in r.neighbours if n.up}
        for nb, (ifname, seen) in sorted(self._nbr_up.items()):  # up now: 0 (clears); gone lately: down
            if now - seen > LINK_DOWN_MEMORY_S:
                continue
            down = 0.0 if nb in up_now else 1.0
            out.append((Signal.LINK_DOWN, link_element(me, nb), (me, nb), down, down, ifname))
            rtt = self._rtt_memory.get((ifname, nb))
            if down and rtt is not None and now - rtt[2] <= RTT_MEMORY_S:  # how slow it was when last heard
                out.append((Signal.HELLO_RTT, link_element(me, nb), (me, nb), rtt[0], rtt[1], ifname))
        link_probe = {p.via: p for p in snap.probes if p.dest == p.via}
        loop_probe = {p.via: p for p in snap.probes if p.dest == me}
        path_probes = [p for p in snap.probes if p.dest not in (me, p.via)]
        for via, p in sorted(link_probe.items()):  # the link's loss, both ways, at the probe rate
            if via in hello_loss and p.sent >= PROBE_MIN_SAMPLES:
                one_way = 1.0 - (1.0 - loss_bound(p)) ** 0.5
                if one_way > hello_loss[via]:
                    hello_loss[via] = one_way
                    for i, ind in enumerate(out):
                        if ind[0] is Signal.HELLO_LOSS and ind[2] == (me, via):
                            out[i] = (Signal.HELLO_LOSS, ind[1], ind[2], ramp(one_way, LOSS_NORMAL, LOSS_BAD),
                                      one_way, ind[5])
            if via in hello_loss and p.recent_rtt_ms is not None:  # the link's queue, seen within a second
                deg, ratio = self._rtt_degree(("link_probe", via), p.recent_rtt_ms, now)
                for i, ind in enumerate(out):
                    if ind[0] is Signal.HELLO_RTT and ind[2] == (me, via) and deg > ind[3]:
                        out[i] = (Signal.HELLO_RTT, ind[1], ind[2], deg, ratio, ind[5])
        first_loss: dict[str, float] = {}  # via -> loss the first link explains, both ways
        for via, h in hello_loss.items():
            lp = link_probe.get(via)
            first_loss[via] = max(1.0 - (1.0 - h) ** 2, recent_loss(lp) if lp is not None and lp.sent >= PROBE_MIN_SAMPLES
                                  else 0.0)
        pooled: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for p in path_probes:
            pooled[p.via][0] += p.lost
            pooled[p.via][1] += p.sent
        for via in sorted(set(pooled) | set(loop_probe)):
            lp = loop_probe.get(via)
            if lp is not None and lp.sent >= PROBE_MIN_SAMPLES:  # the neighbour's own forwarding, no guesswork
                excess, value = max(0.0, loss_bound(lp) - first_loss.get(via, 0.0)), lp.loss
            elif lp is None and pooled[via][1] >= PROBE_MIN_SAMPLES:  # no loop probes: all its paths, pooled
                lost, sent = pooled[via]
                excess, value = max(0.0, wilson_lower(lost, sent) - first_loss.get(via, 0.0)), lost / sent
            else:
                continue
            out.append((Signal.PROBE_VIA, node_element(via), (me, via),
                        ramp(excess, PROBE_EXCESS_NORMAL, PROBE_EXCESS_BAD), value, ""))
        for p in path_probes:
            if p.sent < PROBE_MIN_SAMPLES:
                continue
            excess = max(0.0, loss_bound(p) - first_loss.get(p.via, 0.0))
            path = (me, p.via, p.dest)
            el = link_element(p.via, p.dest)
            out.append((Signal.PROBE_LOSS, el, path, ramp(excess, PROBE_EXCESS_NORMAL, PROBE_EXCESS_BAD), p.loss, ""))
            deg, ratio = self._rtt_degree(("probe", p.via, p.dest), p.rtt_ms, now)
            out.append((Signal.PROBE_RTT, el, path, deg, ratio, ""))
        for node in r.nodes:
            if node.node_id != me:
                out.append((Signal.UNREACHABLE, node_element(node.node_id), (node.node_id,),
                            0.0 if node.reachable else 1.0, 0.0 if node.reachable else 1.0, ""))
                if node.sick:
                    out.append((Signal.SICK, node_element(node.node_id), (node.node_id,), 1.0, 1.0, ""))
        for m in snap.metrics:
            el, path = node_element(m.node_id), (m.node_id,)
            if m.cpu_util is not None:
                out.append((Signal.CPU, el, path, ramp(m.cpu_util, CPU_NORMAL, CPU_BAD), m.cpu_util, ""))
            if m.mem_util is not None:
                out.append((Signal.MEMORY, el, path, ramp(m.mem_util, MEM_NORMAL, MEM_BAD), m.mem_util, ""))
            if m.fwd_ratio is not None:
                out.append((Signal.FORWARDING, el, path, ramp(m.fwd_ratio, FWD_NORMAL, FWD_BAD), m.fwd_ratio, ""))
        for v in snap.verdicts:
            deg = 1.0 if v.actionable else VERDICT_DEGREE_OBSERVED
            out.append((Signal.VERDICT, node_element(v.node_id), (v.node_id,), deg, v.score,
                        "actionable" if v.actionable else ""))
        for s in snap.services:
            out.append((Signal.SERVICE, Element(ElementKind.SERVICE, s.name), (me,), 0.0 if s.healthy else 1.0,
                        0.0 if s.healthy else 1.0, s.detail))
        up_ifaces: dict[str, bool] = {i.name: i.up for i in r.interfaces}
        heard: set[str] = {n.ifname for n in r.neighbours if n.up}
        for name, up in sorted(up_ifaces.items()):
            if name in heard or name not in self._iface_heard:
                if name in heard and self._room(self._iface_heard, name):
                    self._iface_heard[name] = now
                continue
            silent_s = now - self._iface_heard[name]
            deg = 1.0 if up and silent_s >= IFACE_SILENT_S else 0.0
            last = tuple(sorted(nb for nb, (ifn, _) in self._nbr_up.items() if ifn == name))  # who it last heard
            out.append((Signal.IFACE_SILENT, Element(ElementKind.INTERFACE, name), (me, *last), deg, silent_s, name))
        for u in snap.uplinks:
            blocked = (not u.reachable) and u.network_ok
            out.append((Signal.UPLINK, Element(ElementKind.UPLINK, u.name), (me,), 1.0 if blocked else 0.0,
                        1.0 if blocked else 0.0, u.transport))
        for sig, _, path, degree, value, ifname in out:
            if sig is Signal.HELLO_RTT and path[1] in up_now and self._room(self._rtt_memory, (ifname, path[1])):
                self._rtt_memory[(ifname, path[1])] = (degree, value, now)
        return out

    # ---- the step
    def observe(self, snap: Snapshot) -> MonitorOutput:
        now = snap.now
        indicators: list[Indicator] = []
        for signal, element, path, degree, value, detail in self._indicators(snap):
            assert isinstance(element, Element)
            key = (signal, element, path)
            onset = self._onsets.get(key)
            if degree >= ABNORMAL_DEGREE:
                if onset is None and self._room(self._onsets, key):
                    onset = self._onsets[key] = now
                self._onset_seen[key] = now
            elif onset is not None:
                del self._onsets[key]
                onset = None
            back = self._back.get(path[2], ()) if len(path) == 3 else ()
            indicators.append(Indicator(signal, element, path, degree, value, onset, detail, back))
        raised, cleared = self._symptoms(indicators, now)
        self._remember_links(snap)
        self._forget(now)
        adjacency = self._adjacency()
        active = tuple(
            Symptom(kind, el, st.since_s, self._degree_of(kind, el, indicators), st.detail)
            for (kind, el), st in sorted(self._states.items()) if st.active
        )
        return MonitorOutput(now, tuple(indicators), active, tuple(raised), tuple(cleared), adjacency)

    def next_raise_s(self) -> float | None:
        """When the earliest symptom now pending (above its `enter` level, not raised yet) would be
        raised if it stays: the loop may look again then instead of a whole interval later."""
        times = [st.bad_since + RULES[key[0]].raise_after_s for key, st in self._states.items()
                 if not st.active and st.bad_since is not None]
        return min(times, default=None)

    def _elements(self, kind: SymptomKind, indicators: Iterable[Indicator]) -> dict[Element, tuple[float, str]]:
        """Element -> (degree, detail) for one symptom kind (max over the element's indicators)."""
        rule = RULES[kind]
        out: dict[Element, tuple[float, str]] = {}
        for ind in indicators:
            if ind.signal is not rule.signal and not (kind is SymptomKind.FORWARDING_LOSS and ind.signal is Signal.PROBE_VIA):
                continue
            if rule.self_only and ind.element != node_element(self.self_id):
                continue
            if rule.actionable_only and ind.detail != "actionable":
                continue
            el = ind.element
            if kind is SymptomKind.FORWARDING_LOSS:  # attributed to the neighbour the probes went through
                el = node_element(ind.path[1])  # (pooled over its paths, or one path enough to localise)
            if ind.degree >= out.get(el, (-1.0, ""))[0]:
                out[el] = (ind.degree, ind.detail)
        return out

    def _degree_of(self, kind: SymptomKind, element: Element, indicators: Iterable[Indicator]) -> float:
        return self._elements(kind, indicators).get(element, (0.0, ""))[0]

    def degree(self, kind: SymptomKind, element: Element, indicators: Iterable[Indicator]) -> float:
        """The degree a symptom's element measures in `indicators` (0 when nothing measures it)."""
        return self._degree_of(kind, element, indicators)

    def link_quiet_s(self, element: Element, now: float) -> float:
        """Seconds since our link `element` last went down or up (its transition count last changed), as
        far as the flap history reaches; 0 when the link is unknown. The flap indicator counts over
        FLAP_WINDOW_S, so it stays lit for two minutes after the last flap: this says whether the link
        has stopped flapping now."""
        quiet = 0.0
        for (_, nbr), hist in self._flaps.items():
            if link_element(self.self_id, nbr) != element or not hist.samples:
                continue
            recent = hist.samples[-1][0] >= now - FLAP_QUIET_S
            quiet = max(quiet, hist.unchanged_for(now) if recent else 0.0)
        return quiet

    def settle(self, keys: Iterable[tuple[SymptomKind, Element]], now: float) -> None:
        """Clear these symptoms now (their evidence was judged clean elsewhere: a lifted mitigation).
        A fault that persists or comes back raises them again after their `raise_after_s`."""
        for key in keys:
            st = self._states.get(key)
            if st is not None and st.active:
                st.active, st.bad_since, st.good_since, st.settled = False, None, now, True

    def _symptoms(self, indicators: list[Indicator], now: float) -> tuple[list[Symptom], list[Symptom]]:
        raised: list[Symptom] = []
        cleared: list[Symptom] = []
        for kind, rule in RULES.items():
            current = self._elements(kind, indicators)
            keys = {k for k in self._states if k[0] is kind} | {(kind, el) for el in current}
            for key in sorted(keys):
                degree, detail = current.get(key[1], (0.0, ""))
                if key not in self._states:
                    if degree < rule.enter or not self._room(self._states, key):
                        continue
                    self._states[key] = _Hysteresis()
                st = self._states[key]
                st.seen_s = now
                if st.settled and degree >= rule.enter and kind is SymptomKind.LINK_FLAP \
                        and self.link_quiet_s(key[1], now) >= FLAP_QUIET_S:
                    continue  # the two-minute count of flaps that are over: no new flap, no new symptom
                if degree >= rule.enter:
                    st.good_since = None
                    st.bad_since = now if st.bad_since is None else st.bad_since
                    st.detail = detail or st.detail
                    if not st.active and now - st.bad_since >= rule.raise_after_s:
                        st.settled = False
                        st.active, st.since_s = True, now
                        raised.append(Symptom(kind, key[1], now, degree, st.detail))
                elif degree <= rule.exit:
                    st.settled = False
                    st.bad_since = None
                    st.good_since = now if st.good_since is None else st.good_since
                    if st.active and now - st.good_since >= rule.clear_after_s:
                        st.active = False
                        cleared.append(Symptom(kind, key[1], st.since_s, degree, st.detail))
                else:  # between the levels: the state holds; both timers start again
                    st.bad_since = None if not st.active else st.bad_since
                    st.good_since = None
        return raised, cleared
