"""Secure channels between nodes: handshake state, sessions, replay windows and rekey timing. Sans-I/O.

One `Channels` object serves one purpose (end-to-end traffic between mesh addresses, or the frames of
a NAT link). The adapter gives it packets to protect (`seal`/`send`), datagrams that arrived
(`receive`) and the time (`tick(now)` at `next_timer()`); it pulls `datagrams_to_send()` (handshake
messages and data released by a finished handshake) and `next_event()`. Peers are named by an opaque
key (a mesh address or a node id) computed from a credential by `key_of`.

Rules and invariants:
- Only a peer whose credential the trust store accepts (certified or allow-listed, not revoked, not
  expired) gets a session; every TRUST_RECHECK_S the credentials of live peers are checked again and a
  peer that fails loses its sessions at once (drop reason = the trust store's reason).
- Unauthenticated input changes no state: an INIT or RESP is decoded, its credential checked and its
  signature verified before any peer, index or stamp is stored; a DATA datagram is authenticated
  (AEAD) before its counter enters the replay window.
- Replay: a DATA counter is accepted at most once per session key (RFC 4303-style sliding window of
  REPLAY_WINDOW_PACKETS); a session is refused for receiving after REJECT_AFTER_S. An INIT whose stamp
  is not above the last one accepted from that peer within STAMP_MEMORY_S is a replay. A replayed
  INIT outside that time costs a RESP but cannot take a session over: a responder's new session is
  used for sending only after the initiator proved it holds the keys (its first DATA, possibly an
  empty keepalive), as in WireGuard.
- Rekey: a session is used for sending until REKEY_AFTER_S (jittered +-10 % per session so two peers
  rarely rekey together) or REKEY_AFTER_MESSAGES; then the next packet starts a handshake while the old
  session still carries traffic; the previous session stays valid for receiving until it expires.
- Nonces never repeat: each session has one key per direction and a send counter (an atomic
  `itertools.count`, so two adapter threads sealing at once still get distinct counters); a session
  reaching REJECT_AFTER_MESSAGES is never used again.
- Bounded: MAX_PEERS peers, MAX_HELD_PER_PEER packets waiting per peer (MAX_HELD_TOTAL in all) for at
  most HANDSHAKE_ATTEMPTS handshake tries; overflow is dropped and counted.
- `seal` is the lock-free fast path (a usable current session); everything that changes state goes
  through `send`, `receive` and `tick`, which the adapter serialises.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from x0node.overlay import handshake as hs
from x0node.proto.identity import Identity
from x0node.proto.seqno import ReplayWindow
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError

REKEY_AFTER_S = 120.0
"""Start a new handshake once a session is this old (WireGuard's REKEY_AFTER_TIME)."""
REJECT_AFTER_S = 180.0
"""A session is never used after this age, for sending or receiving."""
REKEY_JITTER_FRACTION = 0.1
REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
HANDSHAKE_RETRY_S = 1.0
"""A handshake not answered within this (+-25 %) is retried with a fresh INIT."""
HANDSHAKE_ATTEMPTS = 5
HANDSHAKE_BACKOFF_S = 5.0
"""After HANDSHAKE_ATTEMPTS unanswered INITs, packets to that peer are dropped this long."""
STAMP_MEMORY_S = 5.0
"""An INIT whose stamp is not above the last accepted one is refused for this long after it: replays
cost no work then. After it such an INIT is answered (a node that restarted with its clock set back,
e.g. a router without RTC, must not wait minutes) — safe, as a replay cannot confirm the session."""
TRUST_RECHECK_S = 5.0
PEER_IDLE_S = 600.0
"""A peer with no session, handshake or traffic for this long is forgotten."""
MAX_PEERS = 4096
MAX_HELD_PER_PEER = 32
MAX_HELD_TOTAL = 1024
REPLAY_WINDOW_PACKETS = 2048
JITTER_FRACTION = 0.25

DROP_REASONS = (
    "decode", "cipher", "self", "wrong_source", "wrong_peer", "replay", "uncertified", "revoked", "expired",
    "bad_signature", "bad_key", "limit_peers", "unknown_index", "session_expired", "bad_mac", "held_overflow",
    "handshake_timeout", "backoff", "not_allowed",
)


@dataclass(frozen=True)
class SessionUp:
    key: Hashable
    node_id: str
    cipher: str
    initiator: bool


@dataclass(frozen=True)
class SessionDown:
    key: Hashable
    node_id: str
    reason: str


class Session:
    __slots__ = ("cipher", "send", "recv", "my_index", "peer_index", "created_s", "rekey_s", "counter",
                 "window", "peer", "confirmed", "initiator", "esp_send", "esp_recv")

    def __init__(self, peer: Peer, cipher: int, send_key: bytes, recv_key: bytes, my_index: int, peer_index: int,
                 now: float, rekey_s: float, initiator: bool) -> None:
        self.peer = peer
        self.cipher = cipher
        self.send = hs.make_aead(cipher, send_key)
        self.recv = hs.make_aead(cipher, recv_key)
        self.my_index = my_index
        self.peer_index = peer_index
        self.created_s = now
        self.rekey_s = rekey_s
        self.counter = itertools.count()
        self.window = ReplayWindow(width=REPLAY_WINDOW_PACKETS, bits=64)
        self.confirmed = initiator
        self.initiator = initiator
        self.esp_send = hs.esp_key(cipher, send_key)  # for a kernel ESP state (esp_plan.py)
        self.esp_recv = hs.esp_key(cipher, recv_key)


@dataclass
class _Pending:
    index: int
    secret: bytes
    init_raw: bytes
    cipher: int
    next_retry_s: float
    attempts: int


@dataclass
class Peer:
    key: Hashable
    credential: Credential | None = None
    current: Session | None = None
    previous: Session | None = None
    next: Session | None = None  # responder side, waiting for the initiator's first DATA
    pending: _Pending | None = None
    held: deque[bytes] = field(default_factory=deque)
    last_stamp: int = -1
    last_stamp_s: float = -1e18
    backoff_until_s: float = -1e18
    active_s: float = 0.0
    handshakes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0

    @property
    def node_id(self) -> bytes | None:
        return self.credential.node_id if self.credential is not None else None

    def sessions(self) -> list[Session]:
        return [s for s in (self.current, self.previous, self.next) if s is not None]


class Channels:
    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        rng: random.Random,
        now: float,
        purpose: bytes,
        key_of: Callable[[Credential], Hashable],
        cipher: int = hs.CIPHER_CHACHA20_POLY1305,
        wall: Callable[[float], float | None] = lambda now: None,
        handshake_retry_s: float = HANDSHAKE_RETRY_S,
        handshake_attempts: int = HANDSHAKE_ATTEMPTS,
        allow: Callable[[Hashable, Credential], bool] = lambda key, cred: True,
        key_is_node_id: bool = False,
    ) -> None:
        if not hs.cipher_available(cipher):
            raise ValueError(f"cipher {hs.CIPHER_NAMES.get(cipher, cipher)} is not available on this CPU")
        self.identity = identity
        self.trust = trust
        self.rng = rng
        self.purpose = purpose
        self.key_of = key_of
        self.cipher = cipher
        self.wall = wall
        self.retry_s = handshake_retry_s
        self.attempts = handshake_attempts
        self.allow = allow
        self.key_is_node_id = key_is_node_id
        self.peers: dict[Hashable, Peer] = {}
        self.by_index: dict[int, Session] = {}
        self._pending_index: dict[int, Peer] = {}
        self._out: deque[tuple[Hashable, bytes]] = deque()
        self._events: deque[SessionUp | SessionDown] = deque(maxlen=1024)
        self._held_total = 0
        self.last_authenticated: Hashable | None = None  # peer of the last datagram that authenticated
        self._stamp = 0
        self._trust_due_s = now + TRUST_RECHECK_S
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.counters: dict[str, int] = {"handshakes_initiated": 0, "handshakes_answered": 0,
                                         "sessions_established": 0, "keepalives_rx": 0}

    # --- helpers ----------------------------------------------------------------------------------------

    def _drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def _jitter(self, base: float, fraction: float = JITTER_FRACTION) -> float:
        return base * (1.0 + self.rng.uniform(-fraction, fraction))

    def _new_index(self) -> int:
        while True:
            idx = self.rng.getrandbits(32)
            if idx >= hs.MIN_INDEX and idx not in self.by_index and idx not in self._pending_index:
                return idx

    def _next_stamp(self, now: float) -> int:
        self._stamp = hs.next_stamp(self._stamp, self.wall(now))
        return self._stamp

    def _forget_session(self, s: Session | None) -> None:
        if s is not None and self.by_index.get(s.my_index) is s:
            del self.by_index[s.my_index]

    def _usable(self, s: Session | None, now: float) -> bool:
        return s is not None and now < s.created_s + REJECT_AFTER_S

    # --- sending ----------------------------------------------------------------------------------------

    def seal(self, key: Hashable, payload: bytes, now: float, buf: bytearray | None = None) -> bytes | memoryview | None:
        """Fast path: the sealed datagram if a current session can carry it without any state change
        but its counter; None means "call `send`" (no session, or time to rekey). With `buf` the
        datagram is built in it (see handshake.seal)."""
        peer = self.peers.get(key)
        if peer is None:
            return None
        s = peer.current
        if s is None or now >= s.rekey_s and peer.pending is None or now >= s.created_s + REJECT_AFTER_S:
            return None
        ctr = next(s.counter)
        if ctr >= REKEY_AFTER_MESSAGES:
            return None
        peer.tx_packets += 1
        peer.tx_bytes += len(payload)
        return hs.seal(s.send, s.peer_index, ctr, payload, buf)

    def send(self, key: Hashable, payload: bytes, now: float) -> bytes | None:
        """Slow path: seal with the current session if there is one (starting a rekey when due), else
        hold the packet and start a handshake. Returns the sealed datagram or None (held or dropped)."""
        peer = self.peers.get(key)
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self._drop("limit_peers")
                return None
            peer = self.peers[key] = Peer(key, active_s=now)
        peer.active_s = now
        s = peer.current
        if s is not None and not self._usable(s, now):
            s = None
        if s is not None:
            ctr = next(s.counter)
            if ctr >= REJECT_AFTER_MESSAGES:
                peer.current = None
                s = None
            else:
                if (now >= s.rekey_s or ctr >= REKEY_AFTER_MESSAGES) and peer.pending is None:
                    self._initiate(peer, now)
                peer.tx_packets += 1
                peer.tx_bytes += len(payload)
                return hs.seal(s.send, s.peer_index, ctr, payload)
        if now < peer.backoff_until_s:
            self._drop("backoff")
            return None
        if len(peer.held) >= MAX_HELD_PER_PEER or self._held_total >= MAX_HELD_TOTAL:
            self._drop("held_overflow")
        else:
            peer.held.append(payload)
            self._held_total += 1
        if peer.pending is None:
            self._initiate(peer, now)
        return None

    def connect(self, key: Hashable, now: float) -> None:
        """Start a handshake with `key` now unless one is running (used for links: no packet waits)."""
        peer = self.peers.get(key)
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self._drop("limit_peers")
                return
            peer = self.peers[key] = Peer(key, active_s=now)
        peer.active_s = now
        if peer.pending is None:
            peer.backoff_until_s = -1e18
            self._initiate(peer, now)

    def _initiate(self, peer: Peer, now: float, attempts: int = 1) -> None:
        old = peer.pending
        if old is not None:
            self._pending_index.pop(old.index, None)
        secret = self.rng.randbytes(32)
        public, _ = hs.ephemeral_keypair(secret)
        index = self._new_index()
        responder_id = self._expected_id(peer)
        raw = hs.sign_init(self.identity, self.purpose, responder_id, self.cipher, index, self._next_stamp(now),
                           public)
        peer.pending = _Pending(index, secret, raw, self.cipher, now + self._jitter(self.retry_s), attempts)
        self._pending_index[index] = peer
        self.counters["handshakes_initiated"] += 1
        self._out.append((peer.key, raw))

    def _expected_id(self, peer: Peer) -> bytes:
        """The node id an INIT is addressed to: known from an earlier session, else the key itself when
        it is a node id, else 16 zero bytes (an e2e peer known only by its address: its RESP must still
        come from a credential whose key maps to that address)."""
        if peer.credential is not None:
            return peer.credential.node_id
        if isinstance(peer.key, bytes) and len(peer.key) == 16 and self.key_is_node_id:
            return peer.key
        return bytes(16)

    # --- receiving --------------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, src_key: Hashable | None = None,
                buf: bytearray | None = None) -> tuple[Hashable, bytes | memoryview] | None:
        """Handle one datagram. Returns (peer key, payload) for authenticated, non-empty DATA (with
        `buf`, a view of it valid until its next use); handshake replies and released packets go to
        `datagrams_to_send()`. Never raises on remote input."""
        self.last_authenticated = None
        if not data:
            self._drop("decode")
            return None
        kind = data[0]
        if kind == hs.T_DATA:
            return self._on_data(data, now, src_key, buf)
        data = bytes(data)  # handshakes are rare and small: stable bytes from here on
        if kind == hs.T_INIT:
            self._on_init(data, now, src_key)
        elif kind == hs.T_RESP:
            self._on_resp(data, now, src_key)
        else:
            self._drop("decode")
        return None

    def _check_cred(self, cred: Credential, now: float) -> bool:
        reason = hs.refusal(self.trust, cred, self.identity.node_id, self.wall(now))
        if reason is not None:
            self._drop(reason)
        return reason is None

    def _on_init(self, data: bytes, now: float, src_key: Hashable | None) -> None:
        try:
            msg = hs.decode_init(data)
        except DecodeError:
            self._drop("decode")
            return
        if not hs.cipher_available(msg.cipher):
            self._drop("cipher")
            return
        key = self.key_of(msg.credential)
        if src_key is not None and key != src_key:
            self._drop("wrong_source")
            return
        peer = self.peers.get(key)
        if peer is not None and msg.stamp <= peer.last_stamp and now - peer.last_stamp_s < STAMP_MEMORY_S:
            self._drop("replay")
            return
        if not self._check_cred(msg.credential, now):
            return
        if not hs.init_signature_ok(msg, data, self.purpose, self.identity.node_id) and not (
            # an e2e initiator that knew only our address signs for the all-zero id
            hs.init_signature_ok(msg, data, self.purpose, bytes(16))
        ):
            self._drop("bad_signature")
            return
        if peer is not None and peer.credential is not None and peer.credential.public_key != msg.credential.public_key:
            self._drop("wrong_peer")
            return
        if not self.allow(key, msg.credential):
            self._drop("not_allowed")
            return
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self._drop("limit_peers")
                return
            peer = self.peers[key] = Peer(key)
        peer.credential = msg.credential
        peer.last_stamp, peer.last_stamp_s = msg.stamp, now
        peer.active_s = now
        secret = self.rng.randbytes(32)
        public, _ = hs.ephemeral_keypair(secret)
        index = self._new_index()
        resp = hs.sign_resp(self.identity, self.purpose, msg.credential.node_id, data, msg.cipher, index, msg.sender,
                            public)
        keys = hs.derive_keys(self.identity, msg.credential.public_key, secret, msg.ephemeral, data, resp,
                              self.purpose)
        if keys is None:
            self._drop("bad_key")
            return
        i2r, r2i = keys
        s = Session(peer, msg.cipher, r2i, i2r, index, msg.sender, now, self._rekey_at(now), initiator=False)
        self._forget_session(peer.next)
        peer.next = s
        self.by_index[index] = s
        self.counters["handshakes_answered"] += 1
        self.last_authenticated = key
        self._out.append((key, resp))

    def _rekey_at(self, now: float) -> float:
        return now + self._jitter(REKEY_AFTER_S, REKEY_JITTER_FRACTION)

    def _on_resp(self, data: bytes, now: float, src_key: Hashable | None) -> None:
        try:
            msg = hs.decode_resp(data)
        except DecodeError:
            self._drop("decode")
            return
        peer = self._pending_index.get(msg.receiver)
        if peer is None or peer.pending is None:
            self._drop("unknown_index")
            return
        pend = peer.pending
        key = self.key_of(msg.credential)
        if key != peer.key or (src_key is not None and src_key != key) or msg.cipher != pend.cipher:
            self._drop("wrong_peer")
            return
        if not self._check_cred(msg.credential, now):
            return
        if not hs.resp_signature_ok(msg, data, self.purpose, self.identity.node_id, pend.init_raw):
            self._drop("bad_signature")
            return
        if peer.credential is not None and peer.credential.public_key != msg.credential.public_key:
            self._drop("wrong_peer")
            return
        if not self.allow(key, msg.credential):
            self._drop("not_allowed")
            return
        keys = hs.derive_keys(self.identity, msg.credential.public_key, pend.secret, msg.ephemeral, pend.init_raw,
                              data, self.purpose)
        if keys is None:
            self._drop("bad_key")
            return
        i2r, r2i = keys
        first = peer.current is None
        s = Session(peer, pend.cipher, i2r, r2i, pend.index, msg.sender, now, self._rekey_at(now), initiator=True)
        self._pending_index.pop(pend.index, None)
        peer.pending = None
        peer.credential = msg.credential
        peer.active_s = now
        peer.handshakes += 1
        self._install(peer, s, first, now)
        self.last_authenticated = key
        released = 0
        while peer.held:
            payload = peer.held.popleft()
            self._held_total -= 1
            self._out.append((key, self._seal_with(s, payload)))
            released += 1
        if not released:
            self._out.append((key, self._seal_with(s, b"")))  # confirms the session to the responder

    def _seal_with(self, s: Session, payload: bytes) -> bytes:
        s.peer.tx_packets += 1
        s.peer.tx_bytes += len(payload)
        return hs.seal(s.send, s.peer_index, next(s.counter), payload)

    def _install(self, peer: Peer, s: Session, first: bool, now: float) -> None:
        if peer.previous is not None:
            self._forget_session(peer.previous)
        peer.previous = peer.current
        peer.current = s
        self.by_index[s.my_index] = s
        self.counters["sessions_established"] += 1
        if first:
            nid = peer.node_id
            self._events.append(SessionUp(peer.key, nid.hex() if nid else "", hs.CIPHER_NAMES[s.cipher],
                                          s.initiator))

    def _on_data(self, data: bytes, now: float, src_key: Hashable | None,
                 buf: bytearray | None) -> tuple[Hashable, bytes | memoryview] | None:
        head = hs.data_header(data)
        if head is None:
            self._drop("decode")
            return None
        index, counter = head
        s = self.by_index.get(index)
        if s is None:
            self._drop("unknown_index")
            return None
        peer = s.peer
        if src_key is not None and peer.key != src_key:
            self._drop("wrong_source")
            return None
        if now >= s.created_s + REJECT_AFTER_S:
            self._drop("session_expired")
            return None
        if not s.window.check(counter):
            self._drop("replay")
            return None
        payload = hs.open_data(s.recv, data, buf)
        if payload is None:
            self._drop("bad_mac")
            return None
        s.window.accept(counter)
        self.last_authenticated = peer.key
        peer.rx_packets += 1
        peer.rx_bytes += len(payload)
        peer.active_s = now
        if not s.confirmed:
            s.confirmed = True
            peer.next = None
            peer.handshakes += 1
            self._install(peer, s, peer.current is None, now)
        if not payload:
            self.counters["keepalives_rx"] += 1
            return None
        return peer.key, payload

    # --- timers -----------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for peer in list(self.peers.values()):
            pend = peer.pending
            if pend is not None and now >= pend.next_retry_s:
                if pend.attempts >= self.attempts:
                    self._give_up(peer, now)
                else:
                    self._initiate(peer, now, pend.attempts + 1)
            for name in ("previous", "next", "current"):
                s = getattr(peer, name)
                if s is not None and now >= s.created_s + REJECT_AFTER_S:
                    self._forget_session(s)
                    setattr(peer, name, None)
                    if name == "current" and peer.pending is None:
                        self._down(peer, "expired")
            if (peer.current is None and peer.next is None and peer.pending is None and not peer.held
                    and now - peer.active_s >= PEER_IDLE_S and now >= peer.backoff_until_s):
                del self.peers[peer.key]
        if now >= self._trust_due_s:
            self._trust_due_s = now + self._jitter(TRUST_RECHECK_S)
            for peer in list(self.peers.values()):
                if peer.credential is None:
                    continue
                reason = self.trust.check(peer.credential, self.wall(now))
                if reason is not None and (peer.sessions() or peer.pending is not None):
                    self._drop(reason)
                    self.close(peer.key, reason)

    def _give_up(self, peer: Peer, now: float) -> None:
        if peer.pending is not None:
            self._pending_index.pop(peer.pending.index, None)
        peer.pending = None
        peer.backoff_until_s = now + HANDSHAKE_BACKOFF_S
        if peer.held:
            self._drop("handshake_timeout", len(peer.held))
            self._held_total -= len(peer.held)
            peer.held.clear()

    def _down(self, peer: Peer, reason: str) -> None:
        nid = peer.node_id
        self._events.append(SessionDown(peer.key, nid.hex() if nid else "", reason))

    def close(self, key: Hashable, reason: str) -> None:
        """Forget every session, handshake and held packet of `key` (e.g. its node was revoked)."""
        peer = self.peers.pop(key, None)
        if peer is None:
            return
        had = peer.current is not None
        for s in peer.sessions():
            self._forget_session(s)
        if peer.pending is not None:
            self._pending_index.pop(peer.pending.index, None)
        self._held_total -= len(peer.held)
        if had:
            self._down(peer, reason)

    def next_timer(self) -> float | None:
        times = [self._trust_due_s]
        for peer in self.peers.values():
            if peer.pending is not None:
                times.append(peer.pending.next_retry_s)
            times.extend(s.created_s + REJECT_AFTER_S for s in peer.sessions())
        return min(times)

    # --- outputs and views ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Hashable, bytes]]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> SessionUp | SessionDown | None:
        return self._events.popleft() if self._events else None

    def pending_init(self, key: Hashable) -> bytes | None:
        """The INIT of the handshake under way with `key` (a NAT link repeats it to punch)."""
        peer = self.peers.get(key)
        return peer.pending.init_raw if peer is not None and peer.pending is not None else None

    def established(self, key: Hashable, now: float) -> bool:
        peer = self.peers.get(key)
        return peer is not None and self._usable(peer.current, now)

    def view(self, now: float) -> list[dict[str, Any]]:
        out = []
        for peer in self.peers.values():
            ss = peer.sessions()
            cur = peer.current
            out.append({
                "key": peer.key.hex() if isinstance(peer.key, bytes) else str(peer.key),
                "node_id": peer.node_id.hex() if peer.node_id else None,
                "established": self._usable(cur, now),
                "cipher": hs.CIPHER_NAMES[cur.cipher] if cur else None,
                "session_age_s": round(now - cur.created_s, 3) if cur else None,
                "handshakes": peer.handshakes,
                "handshake_pending": peer.pending is not None,
                "held_packets": len(peer.held),
                "sessions": len(ss),
                "rx_packets": peer.rx_packets, "rx_bytes": peer.rx_bytes,
                "tx_packets": peer.tx_packets, "tx_bytes": peer.tx_bytes,
            })
        return out
