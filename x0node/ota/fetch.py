"""Which chunk to fetch from whom, and how fast to send (sans-I/O).

A bundle travels as content-addressed chunks (their SHA-256 in the signed manifest). A node fetches
the chunks it lacks from neighbours that announce them, verifies each against the manifest before it
keeps or serves it, and fetches the whole bundle again only chunk by chunk: an interrupted transfer
resumes with the chunks still missing (at most the chunk in flight per source is re-sent).

Rules and invariants:
- No peer is trusted: a chunk whose hash differs from the manifest is discarded and counts a strike
  against the peer that sent it; after STRIKES_MAX strikes the peer is not asked again for BAN_S.
  A transport failure or a timeout backs the peer off (BACKOFF_MIN_S doubling to BACKOFF_MAX_S).
- At most `per_peer` requests in flight to one peer and `total` overall; a chunk is in flight to one
  peer at a time. Choice: rarest first among what the peer has (ties broken by the seeded rng), so
  chunks spread through the mesh and every node soon has something to offer its other neighbours.
- Peers have a tier: 0 a neighbour, 1 a node further away, 2 the uplink (the path out of the mesh). A
  peer is asked only for chunks no peer of a lower tier offers, so chunks flow neighbour to neighbour
  and one node downloads from the uplink while the mesh relays it (`uplink_node` elects that node).
- TokenBucket bounds the bytes a node sends per second for OTA (the bandwidth share), so routing and
  user traffic never starve; it returns how long to wait, never sleeps.
- Entry points take `now`; outputs are pulled (`next_requests`, `next_timer`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

STRIKES_MAX = 3
BAN_S = 600.0
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
REQUEST_TIMEOUT_S = 60.0
"""A chunk request not answered in this time is given up (1 MiB at 150 kbit/s fits)."""
PEERS_MAX = 64
TIER_NEIGHBOUR, TIER_FAR, TIER_UPLINK = 0, 1, 2


@dataclass(frozen=True)
class Request:
    peer: str
    index: int
    deadline: float


@dataclass
class Peer:
    have: frozenset[int] | None  # None: every chunk
    tier: int = 0
    inflight: set[int] = field(default_factory=set)
    strikes: int = 0
    not_before: float = 0.0
    backoff_s: float = 0.0
    received: int = 0

    def offers(self, index: int) -> bool:
        return self.have is None or index in self.have


class Fetcher:
    def __init__(self, n_chunks: int, have: set[int], rng: random.Random, *, per_peer: int = 1,
                 total: int = 4, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.n = n_chunks
        self.have = set(have)
        self.rng = rng
        self.per_peer = per_peer
        self.total = total
        self.timeout_s = timeout_s
        self.peers: dict[str, Peer] = {}
        self.inflight: dict[int, Request] = {}
        self.counters = {"chunks_ok": 0, "chunks_bad": 0, "failures": 0, "timeouts": 0, "uplink_chunks": 0,
                         "peers_banned": 0}

    @property
    def done(self) -> bool:
        return len(self.have) == self.n

    @property
    def missing(self) -> int:
        return self.n - len(self.have)

    def set_peer(self, peer: str, have: frozenset[int] | None, *, tier: int = TIER_NEIGHBOUR) -> None:
        """Add a peer or update what it offers."""
        p = self.peers.get(peer)
        if p is None:
            if len(self.peers) >= PEERS_MAX:
                return
            self.peers[peer] = Peer(have, tier)
        else:
            p.have, p.tier = have, tier

    def drop_peer(self, peer: str) -> None:
        p = self.peers.pop(peer, None)
        if p is not None:
            for i in p.inflight:
                self.inflight.pop(i, None)

    def _closer_offers(self, index: int, tier: int, now: float) -> bool:
        return any(p.tier < tier and p.offers(index) and p.strikes < STRIKES_MAX and now >= p.not_before
                   for p in self.peers.values())

    def next_requests(self, now: float) -> list[Request]:
        """New requests to send now (each chunk to one peer)."""
        out: list[Request] = []
        wanted = [i for i in range(self.n) if i not in self.have and i not in self.inflight]
        if not wanted:
            return out
        rarity = {i: sum(1 for p in self.peers.values() if p.offers(i)) for i in wanted}
        order = list(self.peers.items())
        self.rng.shuffle(order)
        order.sort(key=lambda kv: kv[1].tier)  # neighbours first
        for name, p in order:
            while len(self.inflight) < self.total and len(p.inflight) < self.per_peer:
                if now < p.not_before or p.strikes >= STRIKES_MAX:
                    break
                cands = [i for i in wanted if i not in self.inflight and p.offers(i)
                         and not (p.tier and self._closer_offers(i, p.tier, now))]
                if not cands:
                    break
                low = min(rarity[i] for i in cands)
                pick = self.rng.choice([i for i in cands if rarity[i] == low])
                req = Request(name, pick, now + self.timeout_s)
                self.inflight[pick] = req
                p.inflight.add(pick)
                out.append(req)
        return out

    def _finish(self, peer: str, index: int) -> Peer | None:
        req = self.inflight.get(index)
        if req is not None and req.peer == peer:
            del self.inflight[index]
        p = self.peers.get(peer)
        if p is not None:
            p.inflight.discard(index)
        return p

    def completed(self, peer: str, index: int, ok: bool, now: float) -> None:
        """A chunk arrived from `peer`; `ok` is whether its hash matched the manifest (checked by the caller)."""
        p = self._finish(peer, index)
        if ok:
            self.have.add(index)
            self.counters["chunks_ok"] += 1
            if p is not None:
                p.received += 1
                p.backoff_s = 0.0
                if p.tier == TIER_UPLINK:
                    self.counters["uplink_chunks"] += 1
            return
        self.counters["chunks_bad"] += 1
        if p is not None:
            p.strikes += 1
            if p.strikes >= STRIKES_MAX:
                self.counters["peers_banned"] += 1
                p.not_before = now + BAN_S

    def failed(self, peer: str, index: int, now: float) -> None:
        """The request to `peer` failed (connection, HTTP error, short body)."""
        p = self._finish(peer, index)
        self.counters["failures"] += 1
        if p is not None:
            p.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, p.backoff_s * 2))
            p.not_before = now + p.backoff_s * self.rng.uniform(0.75, 1.25)

    def tick(self, now: float) -> list[Request]:
        """Expire requests past their deadline; returns them (the adapter cancels them)."""
        gone = [r for r in self.inflight.values() if r.deadline <= now]
        for r in gone:
            self.counters["timeouts"] += 1
            self.failed(r.peer, r.index, now)
            self.counters["failures"] -= 1
        return gone

    def next_timer(self) -> float | None:
        times = [r.deadline for r in self.inflight.values()]
        times += [p.not_before for p in self.peers.values() if p.not_before and not p.inflight]
        return min(times) if times else None


def uplink_node(candidates: list[str]) -> str | None:
    """The one node of the mesh that downloads a bundle from outside: the smallest node id among those
    that can (same answer on every node that sees the same announcements)."""
    return min(candidates) if candidates else None


class TokenBucket:
    """Bytes per second with a burst; `delay(n, now)` reserves n bytes and says how long to wait first."""

    def __init__(self, rate_bytes_s: float, burst_bytes: float, now: float) -> None:
        if rate_bytes_s <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate_bytes_s
        self.burst = burst_bytes
        self.tokens = burst_bytes
        self.t = now

    def delay(self, n: int, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
