"""Origination of our own LSA and WITHDRAW: when, with which sequence number, and what it says.

Rules:
- Our LSA lists our UP neighbours (one link per neighbour node: the cheapest of our links to it, at
  most MAX_LSA_NEIGHBOURS, in node-id order, each with its advertised cost and class and its current
  throughput in kbit/s, 0 when unknown) and our announced prefixes (at most MAX_LSA_PREFIXES). The cost
  is the one commands.py says: penalties and drains included, never SICK_LINK_COST unless we are sick,
  then every link's.
- Two originations are at least LSA_MIN_INTERVAL_S apart. Good news (a neighbour up, a cost change, a
  refresh) also draws on a token bucket: LSA_BURST tokens, refilled at one per LSA_MAX_HOLD_S. Bad
  news (a lost neighbour) never waits for a token, so a failure is never delayed by earlier churn and
  a flapping link re-advertises its return at most about once a second.
- A class-only change of a neighbour is advertised lazily (CLASS_ADVERTISE_DELAY_S, +-25 %).
- The LSA is re-originated every lsa_refresh_s (+-25 %) so it never ages out elsewhere.
- Sequence numbers use serial arithmetic and skip 0; hearing an earlier incarnation of ourselves with
  a higher number (or the same number with other content) makes us jump past it.
- After `withdraw` (graceful leave) nothing is originated any more.
"""

from __future__ import annotations

from x0node.proto import messages as m
from x0node.proto.basis import Basis, Part
from x0node.proto.commands import Commands
from x0node.proto.hello import HelloSessions
from x0node.proto.lsdb import LsaEntry, Lsdb
from x0node.proto.neighbour import CHANGE_CLASS, CHANGE_COST
from x0node.proto.prefixes import normalise
from x0node.proto.protocol import (
    CLASS_ADVERTISE_DELAY_S,
    LSA_INITIAL_DELAY_S,
    LSA_MIN_INTERVAL_S,
    MAX_LINK_THROUGHPUT_KBPS,
    MAX_LSA_NEIGHBOURS,
    MAX_LSA_PREFIXES,
)
from x0node.proto.seqno import seq_newer, seq_next
from x0node.proto.timers import Deadline, jittered

LSA_MAX_HOLD_S = 1.0
"""Sustained rate limit of our own LSA originations: one per this long (token refill period)."""
LSA_BURST = 4
"""Originations allowed back to back (at LSA_MIN_INTERVAL_S) before the rate limit applies."""


class Origination(Part):
    def __init__(
        self,
        basis: Basis,
        lsdb: Lsdb,
        hello: HelloSessions,
        now: float,
        refresh_at_s: float,
        commands: Commands,
    ) -> None:
        super().__init__(basis)
        self.lsdb = lsdb
        self.hello = hello
        self.commands = commands
        self.prefixes: tuple[str, ...] = tuple(self.config.prefixes)
        self.seq = 0
        self.left = False
        self.due = Deadline(basis.wake, now + LSA_INITIAL_DELAY_S)
        self.refresh = Deadline(basis.wake, refresh_at_s)
        self._last_s = -1e9
        self._tokens = float(LSA_BURST)
        self._tokens_at_s = now

    # ------------------------------------------------------------------------------ scheduling
    def _tokens_at(self, now: float) -> float:
        """Origination tokens in the bucket at `now` (refilled since the last origination)."""
        return min(float(LSA_BURST), self._tokens + (now - self._tokens_at_s) / LSA_MAX_HOLD_S)

    def _token_time(self, now: float) -> float:
        """Earliest time at which a whole origination token is available."""
        tokens = self._tokens_at(now)
        return now if tokens >= 1.0 else now + (1.0 - tokens) * LSA_MAX_HOLD_S

    def schedule(self, now: float, bad_news: bool = False) -> None:
        due = max(now, self._last_s + LSA_MIN_INTERVAL_S)
        if not bad_news:
            due = max(due, self._token_time(now))
        self.due.arm(due)

    def advertise(self, change: int, now: float) -> None:
        """React to a neighbour's advertised (class, cost) change."""
        if change == CHANGE_COST:
            self.schedule(now)
        elif change == CHANGE_CLASS:
            self.due.arm(now + jittered(CLASS_ADVERTISE_DELAY_S, self.rng))

    def set_prefixes(self, prefixes: list[str] | tuple[str, ...], now: float) -> None:
        if len(prefixes) > MAX_LSA_PREFIXES:
            raise ValueError(f"at most {MAX_LSA_PREFIXES} prefixes")
        self.prefixes = tuple(normalise(p) for p in prefixes)  # ValueError for what the mesh never routes
        self.schedule(now)

    def heard_own_lsa(self, seq: int, data: bytes, now: float) -> None:
        """A verified LSA of ours came back: an earlier incarnation if it is newer or differs."""
        mine = self.lsdb.get(self.me)
        if seq_newer(seq, self.seq) or (seq == self.seq and (mine is None or mine.raw != data)):
            self.seq = seq  # jump past it
            self.schedule(now)

    def heard_own_withdraw(self, seq: int, now: float) -> None:
        if not self.left and seq_newer(seq, self.seq):
            self.seq = seq
            self.schedule(now)

    # ------------------------------------------------------------------------------ origination
    def _links(self) -> list[m.LsaLink]:
        best: dict[bytes, tuple[int, int, int]] = {}
        for n in self.hello.up_neighbours():
            kbps = 0 if n.throughput_bps is None else min(MAX_LINK_THROUGHPUT_KBPS, max(1, round(n.throughput_bps / 1000)))
            c = (self.commands.advertised_cost(n), int(n.adv_quality), kbps)
            if n.node_id not in best or c[:2] < best[n.node_id][:2]:
                best[n.node_id] = c
        links = [m.LsaLink(nid, c, q, kbps) for nid, (c, q, kbps) in sorted(best.items())]
        return links[:MAX_LSA_NEIGHBOURS]

    def tick(self, now: float) -> bytes | None:
        """Originate if due; returns the signed LSA to flood, or None."""
        if self.refresh.due(now):
            self.schedule(now)
        if not self.due.take(now):
            return None
        self._tokens = max(0.0, self._tokens_at(now) - 1.0)
        self._tokens_at_s = now
        self.seq = seq_next(self.seq)
        lsa = m.Lsa(self.credential, self.seq, tuple(self._links()), self.prefixes)
        raw = m.sign(lsa, self.identity)
        self.lsdb.install(LsaEntry(self.me, self.seq, raw, lsa, now, self.identity.public_key))
        self.out.counters["lsa_originated"] += 1
        self._last_s = now
        self.refresh.set(now + jittered(self.config.lsa_refresh_s, self.rng))
        return raw

    def withdraw(self, now: float) -> bytes | None:
        """Graceful leave: the signed WITHDRAW to flood (None if we already left)."""
        if self.left:
            return None
        self.seq = seq_next(self.seq)
        raw = m.sign(m.Withdraw(self.me, self.seq), self.identity)
        self.lsdb.install(LsaEntry(self.me, self.seq, raw, None, now, self.identity.public_key))
        self.left = True
        self.due.clear()
        return raw
