"""Reliable flooding of LSAs and WITHDRAWs, and their acknowledgement.

Rules:
- An LSA/WITHDRAW is accepted only from a known neighbour's address, and installed only when it is
  strictly newer than the copy we hold (serial arithmetic) and its signature verifies under the
  origin's certified key (an LSA) or the key we hold for the origin (a WITHDRAW). Bytes identical to
  the copy we hold were verified before: they change nothing and are only acknowledged.
- Receive-side rate limit per origin: installing a new LSA/WITHDRAW of an origin takes a token from
  its bucket (RX_LSA_BURST, refilled at one per RX_LSA_REFILL_S); without a token the copy is dropped
  before its signature is checked ("limit_lsa_rate") and not acknowledged, so its sender retransmits
  it later. An honest origin stays far below this (its own originations are limited to about one a
  second, plus one per lost neighbour); a node that originates at line rate no longer makes every node
  of the mesh verify and re-flood at that rate. Only verified installs take tokens, so forged copies
  cannot starve a real origin.
- Only the neighbour's ACK ends a retransmission: it carries a MAC under the pairwise key of the
  current session (messages.py) and passes the session's replay window. A copy of the LSA arriving
  from the neighbour's address proves nothing (the address is not authenticated) and is only
  acknowledged.
- A new copy goes to every UP neighbour except the one it came from (multicast when several share the
  link) and is retransmitted unicast every lsa_retransmit_s (+-25 %, doubling up to
  RETRANSMIT_BACKOFF_MAX x) until acknowledged. At most MAX_RETRANSMIT_QUEUE (neighbour, origin) pairs
  wait; beyond that the copy is not queued and the drop is counted.
- ACKs to one neighbour are batched for ACK_DELAY_S, at most MAX_ACK_ENTRIES per ACK.
- A neighbour that sends an older copy (or the same seq with other content) gets ours, but only after
  its copy verified, so that unsigned junk costs no transmissions.
- A new adjacency gets the whole LSDB (database exchange).
- Our own LSA/WITHDRAW heard back with a higher seq (or the same seq with other content) is an earlier
  incarnation of us: origination jumps past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from x0node.proto import messages as m
from x0node.proto.basis import Basis, Part
from x0node.proto.hello import HelloSessions, Interface, NeighbourKey
from x0node.proto.identity import verify
from x0node.proto.lsdb import LsaEntry, Lsdb
from x0node.proto.neighbour import NeighbourState
from x0node.proto.origination import Origination
from x0node.proto.protocol import ACK_DELAY_S, MAX_ACK_ENTRIES, MAX_RETRANSMIT_QUEUE
from x0node.proto.seqno import seq_newer, seq_next
from x0node.proto.timers import Deadline, jittered
from x0node.proto.trust import Credential

RETRANSMIT_BACKOFF_MAX = 8.0
RX_LSA_BURST = 16
"""New LSAs/WITHDRAWs of one origin installed back to back before the receive-side limit applies."""
RX_LSA_REFILL_S = 0.25
"""Sustained receive-side limit: one new LSA/WITHDRAW per origin per this long (4/s)."""


@dataclass
class Pending:
    seq: int
    raw: bytes
    due_s: float
    backoff: float = 1.0


class Flooding(Part):
    def __init__(
        self,
        basis: Basis,
        lsdb: Lsdb,
        hello: HelloSessions,
        origination: Origination,
        check_credential: Callable[[Credential, str, str, bytes, float], bool],
        on_installed: Callable[[bytes, m.Lsa, float], None],
        on_withdrawn: Callable[[bytes, float], None],
    ) -> None:
        super().__init__(basis)
        self.lsdb = lsdb
        self.hello = hello
        self.own = origination
        self._check_credential = check_credential
        self._on_installed = on_installed
        self._on_withdrawn = on_withdrawn
        self.pending: dict[NeighbourKey, dict[bytes, Pending]] = {}
        self.pending_count = 0
        self._acks: dict[NeighbourKey, list[tuple[bytes, int]]] = {}
        self.ack_due = Deadline(basis.wake)
        self.retransmit_due = Deadline(basis.wake)
        self.ack_seq = 0
        self._rx_tokens: dict[bytes, tuple[float, float]] = {}  # origin -> (tokens, at); LSDB origins only

    # ------------------------------------------------------------------------------ receive
    def on_duplicate(self, iface: Interface, src: str, entry: LsaEntry, now: float) -> None:
        """An exact copy of an LSA/WITHDRAW we hold: already verified, changes nothing but acks."""
        nkey = self.hello.neighbour_at(iface.name, src)
        if nkey is None:
            self.out.drop("unknown_sender", iface.name, src, now)
            return
        self.out.counters["lsa_duplicate"] += 1
        self._queue_ack(nkey, entry.origin, entry.seq, now)

    def _flooded_from(
        self, iface: Interface, src: str, origin: bytes, seq: int, data: bytes, now: float
    ) -> NeighbourKey | None:
        """The neighbour key a flooded LSA/WITHDRAW came from, or None when there is nothing more to do:
        the sender is unknown (dropped), or the bytes are identical to the copy we hold."""
        nkey = self.hello.neighbour_at(iface.name, src)
        if nkey is None:
            self.out.drop("unknown_sender", iface.name, src, now)
            return None
        cur = self.lsdb.get(origin)
        if cur is not None and cur.raw == data:
            self.out.counters["lsa_duplicate"] += 1
            self._queue_ack(nkey, origin, seq, now)
            return None
        return nkey

    def _tokens(self, origin: bytes, now: float) -> float:
        tokens, at = self._rx_tokens.get(origin, (float(RX_LSA_BURST), now))
        return min(float(RX_LSA_BURST), tokens + (now - at) / RX_LSA_REFILL_S)

    def _rate_limited(self, origin: bytes, iface: Interface, src: str, now: float) -> bool:
        if self._tokens(origin, now) >= 1.0:
            return False
        self.out.drop("limit_lsa_rate", iface.name, src, now)
        return True

    def _take_token(self, origin: bytes, now: float) -> None:
        self._rx_tokens[origin] = (self._tokens(origin, now) - 1.0, now)

    def forget_origins(self, keep: Callable[[bytes], bool]) -> None:
        """Drop the rate-limit state of origins no longer in the database."""
        for origin in [o for o in self._rx_tokens if not keep(o)]:
            del self._rx_tokens[origin]

    def on_lsa(self, iface: Interface, src: str, msg: m.Lsa, data: bytes, now: float) -> None:
        nkey = self._flooded_from(iface, src, msg.origin, msg.seq, data, now)
        if nkey is None:
            return
        origin = msg.origin
        cur = self.lsdb.get(origin)
        if origin == self.me:
            if msg.credential.public_key == self.identity.public_key and self._check_credential(
                msg.credential, iface.name, src, data, now
            ):
                self._queue_ack(nkey, origin, msg.seq, now)
                self.own.heard_own_lsa(msg.seq, data, now)
            else:
                self.out.drop("self", iface.name, src, now)
            return
        # pruning is our own decision: the very LSA we pruned comes back when a partition heals
        revived = cur is not None and cur.lsa is None and cur.proof == data
        if cur is not None and not seq_newer(msg.seq, cur.seq) and not revived:
            # old (or same seq, different bytes): never installed. If the sender lacks our newer copy
            # and it is not already on its way, send it, but only after verifying.
            pend = self.pending.get(nkey, {}).get(origin)
            in_flight = pend is not None and pend.seq == cur.seq
            differs = seq_newer(cur.seq, msg.seq) or cur.raw != data  # same seq, other content: tell it
            # a pruned origin back from a reboot hears its old LSA from its neighbours and jumps past it
            back = cur.raw or (cur.proof if nkey[1] == origin else b"")
            if not in_flight and back and differs:
                if not self._check_credential(msg.credential, iface.name, src, data, now):
                    return
                self._queue_reliable(nkey, origin, cur.seq, back, now, send_now=True)
            self.out.drop("stale", iface.name, src, now)
            return
        if self._rate_limited(origin, iface, src, now):
            return
        if not self._check_credential(msg.credential, iface.name, src, data, now):
            return
        if cur is not None and cur.public_key != msg.credential.public_key:
            self.out.drop("bad_signature", iface.name, src, now)
            return
        if not self.lsdb.has_room_for(origin):
            self.out.drop("limit_lsdb", iface.name, src, now)
            return
        self.lsdb.install(LsaEntry(origin, msg.seq, data, msg, now, msg.credential.public_key))
        self._take_token(origin, now)
        self.out.counters["lsa_installed"] += 1
        self._on_installed(origin, msg, now)
        self._queue_ack(nkey, origin, msg.seq, now)
        self.flood(origin, msg.seq, data, now, exclude=nkey)

    def on_withdraw(self, iface: Interface, src: str, msg: m.Withdraw, data: bytes, now: float) -> None:
        nkey = self._flooded_from(iface, src, msg.origin, msg.seq, data, now)
        if nkey is None:
            return
        origin = msg.origin
        cur = self.lsdb.get(origin)
        if origin == self.me:
            payload, sig = m.signed_bytes(data)
            if verify(self.identity.public_key, payload, sig):
                self._queue_ack(nkey, origin, msg.seq, now)
                self.own.heard_own_withdraw(msg.seq, now)
            else:
                self.out.drop("self", iface.name, src, now)
            return
        if cur is None:
            self.out.drop("unknown_origin", iface.name, src, now)
            return
        if not seq_newer(msg.seq, cur.seq):
            self.out.drop("stale", iface.name, src, now)
            return
        if self._rate_limited(origin, iface, src, now):
            return
        payload, sig = m.signed_bytes(data)
        if not verify(cur.public_key, payload, sig):
            self.out.drop("bad_signature", iface.name, src, now)
            return
        self.lsdb.install(LsaEntry(origin, msg.seq, data, None, now, cur.public_key))
        self._take_token(origin, now)
        self.out.counters["lsa_installed"] += 1
        self._on_withdrawn(origin, now)
        self._queue_ack(nkey, origin, msg.seq, now)
        self.flood(origin, msg.seq, data, now, exclude=nkey)
        gone = [k for k in self.hello.nbrs if k[1] == origin]
        if gone:
            self.flush_acks()  # acknowledge before forgetting the leaving neighbour
        for key in gone:
            self.hello.neighbour_gone(key, now, "withdraw")

    def on_ack(self, iface: Interface, src: str, msg: m.Ack, data: bytes, now: float) -> None:
        n = self.hello.nbrs.get((iface.name, msg.sender))
        if n is None:
            self.out.drop("unknown_sender", iface.name, src, now)
            return
        if not m.ack_mac_ok(n.key, msg.sender, self.me, msg):
            self.out.drop("bad_mac", iface.name, src, now)  # not from its current session
            return
        if not n.ack_window.accept(msg.seq):
            self.out.drop("replay", iface.name, src, now)
            return
        for origin, seq in msg.entries:
            self._implicit_ack((iface.name, msg.sender), origin, seq)

    # ------------------------------------------------------------------------------ flooding
    def _implicit_ack(self, nkey: NeighbourKey, origin: bytes, seq: int) -> None:
        pend = self.pending.get(nkey)
        if pend is None:
            return
        p = pend.get(origin)
        if p is not None and not seq_newer(p.seq, seq):
            del pend[origin]
            self.pending_count -= 1

    def _queue_reliable(
        self, nkey: NeighbourKey, origin: bytes, seq: int, raw: bytes, now: float, send_now: bool
    ) -> None:
        pend = self.pending.setdefault(nkey, {})
        if origin not in pend:
            if self.pending_count >= MAX_RETRANSMIT_QUEUE:
                self.out.drops["limit_queue"] += 1
                return
            self.pending_count += 1
        due = now + jittered(self.config.lsa_retransmit_s, self.rng)
        pend[origin] = Pending(seq, raw, due)
        self.retransmit_due.arm(due)
        if send_now:
            n = self.hello.nbrs.get(nkey)
            if n is not None:
                self.out.send(nkey[0], n.address, raw)

    def flood(self, origin: bytes, seq: int, raw: bytes, now: float, exclude: NeighbourKey | None) -> None:
        per_if: dict[str, list[str]] = {}
        for key, n in self.hello.nbrs.items():
            if n.state is NeighbourState.UP and key != exclude:
                self._queue_reliable(key, origin, seq, raw, now, send_now=False)
                per_if.setdefault(key[0], []).append(n.address)
        for ifname, addrs in per_if.items():
            self.out.send(ifname, None if len(addrs) > 1 else addrs[0], raw)

    def database_exchange(self, nkey: NeighbourKey, now: float) -> None:
        """A new adjacency: send it everything we have, reliably."""
        for e in self.lsdb.entries():
            if e.raw and e.origin != nkey[1]:
                self._queue_reliable(nkey, e.origin, e.seq, e.raw, now, send_now=True)

    def forget(self, nkey: NeighbourKey) -> None:
        """The neighbour is gone: nothing more to send or acknowledge to it."""
        pend = self.pending.pop(nkey, None)
        if pend:
            self.pending_count -= len(pend)
        self._acks.pop(nkey, None)

    def _queue_ack(self, nkey: NeighbourKey, origin: bytes, seq: int, now: float) -> None:
        q = self._acks.setdefault(nkey, [])
        if len(q) < 4 * MAX_ACK_ENTRIES:
            q.append((origin, seq))
        if self.ack_due.at is None:
            self.ack_due.set(now + ACK_DELAY_S)

    def flush_acks(self) -> None:
        for nkey, q in self._acks.items():
            n = self.hello.nbrs.get(nkey)
            if n is None or not q:
                continue
            for i in range(0, len(q), MAX_ACK_ENTRIES):
                self.ack_seq = seq_next(self.ack_seq)
                ack = m.Ack(self.me, self.ack_seq, tuple(q[i : i + MAX_ACK_ENTRIES]))
                self.out.send(nkey[0], n.address, m.seal_ack(ack, n.key, n.node_id))
        self._acks.clear()
        self.ack_due.clear()

    def retransmit(self, now: float) -> None:
        """Resend every copy whose acknowledgement is overdue."""
        if not self.retransmit_due.due(now):
            return
        nxt: float | None = None
        for nkey, pend in self.pending.items():
            n = self.hello.nbrs.get(nkey)
            if n is None:
                continue
            for p in pend.values():
                if now >= p.due_s:
                    self.out.send(nkey[0], n.address, p.raw)
                    self.out.counters["lsa_retransmitted"] += 1
                    p.backoff = min(RETRANSMIT_BACKOFF_MAX, p.backoff * 2)
                    p.due_s = now + jittered(self.config.lsa_retransmit_s * p.backoff, self.rng)
                if nxt is None or p.due_s < nxt:
                    nxt = p.due_s
        self.retransmit_due.at = nxt

    def tick(self, now: float) -> None:
        if self.ack_due.due(now):
            self.flush_acks()
        self.retransmit(now)
