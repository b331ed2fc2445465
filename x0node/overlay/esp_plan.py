"""Kernel ESP for end-to-end sessions: which xfrm states, policies and routes to have, when to tell the
peer, when to rekey. Pure: it reads `Channels` (channel.py), takes `now`, and returns actions that the
adapter (xfrm.py) carries out and reports back with `done()`.

The handshake stays in userspace (channel.py, over the overlay's UDP socket); once a session is up, its
keys (through handshake.esp_key, never the userspace keys themselves) program transport-mode ESP
(RFC 4303) with the same AEAD: `rfc4106(gcm(aes))` (RFC 4106) or `rfc7539esp(chacha20,poly1305)`
(RFC 7634). The SPIs are the handshake's indices: our inbound state's SPI is our index of the session,
the outbound state's SPI is the peer's index.

Rules and invariants:
- A direction goes to the kernel only when both ends hold its state: we install the inbound state of a
  session first and only then send the peer an OFFER (a sealed, authenticated control payload on that
  session naming the SPI); we install an outbound state only for a session whose peer sent us its OFFER.
  A peer without ESP never offers, so its sessions stay on the userspace path; mixed meshes work.
- Per peer, at most one outbound state: the newest session (current, else previous) the peer offered.
  Inbound states: the current and the previous session (the previous keeps receiving until it
  expires, as in channel.py). Every state carries a hard lifetime ending when its session would be
  refused (REJECT_AFTER_S), so the kernel drops it even if the daemon dies.
- Make before break: actions come in the order add inbound states, add outbound states, add policies,
  add routes, then remove routes, policies, states. A rekey therefore installs the new session's states
  before it removes the old one's; the out policy (per peer, not per session) picks the newest state.
- An outbound state goes with an out policy (our address to the peer's, template ESP transport) and a
  `throw` route for the peer's address in the overlay table, so locally originated packets skip the TUN
  and use the mesh routes, encrypted by the kernel. Removing the route first sends traffic back to the
  userspace path, which starts a handshake when needed: no packet ever meets a policy without a state.
- Rekey: the kernel's traffic is invisible to channel.py, so the adapter reports each peer's state byte
  counters (`note_traffic`); a peer whose out session is due for rekey and that carried traffic since
  that session began gets a new handshake (`rekeys`). An idle peer's session expires and its states go.
- Revocation or peer loss: channel.py closes or expires the session, so the next plan removes its states.
- A failed kernel call is counted (`failures`) and that session stays on the userspace path.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable
from dataclasses import dataclass, field

from x0node.overlay import handshake as hs
from x0node.overlay.channel import REJECT_AFTER_S, Channels, Session

OFFER_MAGIC = b"\x00x0esp1"
"""First byte 0: no IPv6 packet starts so (version 6), so an offer can never be taken for traffic."""
OFFER = struct.Struct(f"!{len(OFFER_MAGIC)}sIB")  # magic, SPI of the sender's inbound state, cipher
POLICY_PRIORITY_BYPASS = 0x6B00
"""Out policies that let the overlay's own UDP datagrams (handshakes) through unencrypted."""
POLICY_PRIORITY_PEER = 0x6B01
REQID = 0x6B14
"""Marks our states and policy templates (on start and stop exactly these are removed)."""
LIFETIME_MARGIN_S = 2


@dataclass(frozen=True)
class StateSpec:
    inbound: bool
    src: bytes
    dst: bytes
    spi: int
    algorithm: str
    key: bytes = field(repr=False)
    hard_expires_s: int


@dataclass(frozen=True)
class PolicySpec:
    src: bytes
    dst: bytes


@dataclass(frozen=True)
class RouteSpec:
    dst: bytes


@dataclass(frozen=True)
class Action:
    op: str  # "add" | "del"
    item: StateSpec | PolicySpec | RouteSpec


def encode_offer(spi: int, cipher: int) -> bytes:
    return OFFER.pack(OFFER_MAGIC, spi, cipher)


def decode_offer(payload: bytes | memoryview) -> tuple[int, int] | None:
    if len(payload) != OFFER.size:
        return None
    magic, spi, cipher = OFFER.unpack(bytes(payload))
    return (spi, cipher) if magic == OFFER_MAGIC else None


def is_control(payload: bytes | memoryview) -> bool:
    return len(payload) > 0 and payload[0] == 0


def _state_key(s: StateSpec) -> tuple[bool, bytes, int]:
    return s.inbound, s.dst, s.spi


@dataclass
class _Traffic:
    total: int = 0
    changed_s: float = -math.inf


class EspPlanner:
    def __init__(self, my_addr: bytes, ciphers: set[int]) -> None:
        self.my_addr = my_addr
        self.ciphers = set(ciphers)  # the kernel has ESP with these AEADs
        self.states: dict[tuple[bool, bytes, int], StateSpec] = {}
        self.policies: set[PolicySpec] = set()
        self.routes: set[RouteSpec] = set()
        self.offered: set[int] = set()  # our indices of sessions we offered
        self.peer_offered: set[int] = set()  # our indices of sessions the peer offered
        self.failed: set[int] = set()  # our indices of sessions whose kernel state could not be added
        self.traffic: dict[Hashable, _Traffic] = {}
        self._out_spis: dict[int, int] = {}  # our index -> peer's index of sessions with an outbound state
        self.counters: dict[str, int] = {"offers_sent": 0, "offers_received": 0, "offers_refused": 0,
                                         "failures": 0, "rekeys": 0}

    # --- facts from the peer and the adapter -------------------------------------------------------------

    def on_offer(self, channels: Channels, key: Hashable, payload: bytes | memoryview) -> bool:
        """An authenticated control payload from `key` (channels.receive verified it). True if taken."""
        got = decode_offer(payload)
        peer = channels.peers.get(key)
        if got is None or peer is None:
            self.counters["offers_refused"] += 1
            return False
        spi, cipher = got
        for s in (peer.current, peer.previous, peer.next):
            if s is not None and s.peer_index == spi and s.cipher == cipher:
                self.peer_offered.add(s.my_index)
                self.counters["offers_received"] += 1
                return True
        self.counters["offers_refused"] += 1
        return False

    def done(self, action: Action, ok: bool) -> None:
        """The adapter's report on one action; the plan never claims what the kernel refused."""
        item = action.item
        if not ok:
            self.counters["failures"] += 1
            if isinstance(item, StateSpec) and action.op == "add":
                self.failed.update(self._indices_of(item))
            if action.op == "add":
                return
        if isinstance(item, StateSpec):
            if action.op == "add":
                self.states[_state_key(item)] = item
            else:
                self.states.pop(_state_key(item), None)
        elif isinstance(item, PolicySpec):
            (self.policies.add if action.op == "add" else self.policies.discard)(item)
        else:
            (self.routes.add if action.op == "add" else self.routes.discard)(item)

    def _indices_of(self, st: StateSpec) -> set[int]:
        return {st.spi} if st.inbound else {i for i, spi in self._out_spis.items() if spi == st.spi}

    def note_traffic(self, key: Hashable, total_bytes: int, now: float) -> None:
        """The byte counters of the peer's states, summed (they only grow while a state exists)."""
        t = self.traffic.setdefault(key, _Traffic())
        if total_bytes != t.total:
            t.total, t.changed_s = total_bytes, now

    # --- the plan ------------------------------------------------------------------------------------------

    def _usable(self, s: Session | None, now: float) -> bool:
        return (s is not None and s.confirmed and now < s.created_s + REJECT_AFTER_S and s.cipher in self.ciphers
                and s.my_index not in self.failed)

    def _expires(self, s: Session, now: float) -> int:
        return max(1, math.ceil(s.created_s + REJECT_AFTER_S - now) + LIFETIME_MARGIN_S)

    def desired(self, channels: Channels, now: float) -> tuple[dict, set[PolicySpec], set[RouteSpec]]:
        states: dict[tuple[bool, bytes, int], StateSpec] = {}
        policies: set[PolicySpec] = set()
        routes: set[RouteSpec] = set()
        self._out_spis: dict[int, int] = {}
        me = self.my_addr
        for key, peer in channels.peers.items():
            if not isinstance(key, bytes) or len(key) != 16:
                continue
            usable = [s for s in (peer.current, peer.previous) if self._usable(s, now)]
            for s in usable:
                alg = hs.ESP_ALGORITHMS[s.cipher]
                st = StateSpec(True, key, me, s.my_index, alg, s.esp_recv, self._expires(s, now))
                states[_state_key(st)] = st
            out = next((s for s in usable if s.my_index in self.peer_offered), None)
            if out is not None:
                st = StateSpec(False, me, key, out.peer_index, hs.ESP_ALGORITHMS[out.cipher], out.esp_send,
                               self._expires(out, now))
                states[_state_key(st)] = st
                self._out_spis[out.my_index] = out.peer_index
                policies.add(PolicySpec(me, key))
                routes.add(RouteSpec(key))
        return states, policies, routes

    def plan(self, channels: Channels, now: float) -> list[Action]:
        """What to change in the kernel now, in make-before-break order."""
        want_states, want_pol, want_routes = self.desired(channels, now)
        adds = [s for k, s in want_states.items() if k not in self.states]
        adds.sort(key=lambda s: not s.inbound)  # inbound first: a peer may start sending at once
        dels = [s for k, s in self.states.items() if k not in want_states]
        dels.sort(key=lambda s: s.inbound)  # outbound first
        out = [Action("add", s) for s in adds]
        out += [Action("add", p) for p in want_pol - self.policies]
        out += [Action("add", r) for r in want_routes - self.routes]
        out += [Action("del", r) for r in self.routes - want_routes]
        out += [Action("del", p) for p in self.policies - want_pol]
        out += [Action("del", s) for s in dels]
        live = {s.my_index for peer in channels.peers.values() for s in peer.sessions()}
        self.offered &= live
        self.peer_offered &= live
        self.failed &= live
        for key in [k for k in self.traffic if k not in channels.peers]:
            del self.traffic[key]
        return out

    def offers(self, channels: Channels, now: float) -> list[tuple[Hashable, bytes]]:
        """OFFERs to send (sealed on the current session): one per session whose inbound state is in."""
        out = []
        for key, peer in channels.peers.items():
            s = peer.current
            if (self._usable(s, now) and s.my_index not in self.offered
                    and (True, self.my_addr, s.my_index) in self.states):
                self.offered.add(s.my_index)
                self.counters["offers_sent"] += 1
                out.append((key, encode_offer(s.my_index, s.cipher)))
        return out

    def rekeys(self, channels: Channels, now: float) -> list[Hashable]:
        """Peers to start a handshake with now: their out state's session is due and carried traffic."""
        out = []
        for key, peer in channels.peers.items():
            s = peer.current
            if s is None or peer.pending is not None or now < s.rekey_s:
                continue
            if (False, key, s.peer_index) not in self.states:
                continue
            t = self.traffic.get(key)
            if t is not None and t.changed_s >= s.created_s:
                self.counters["rekeys"] += 1
                out.append(key)
        return out

    def path_of(self, key: Hashable) -> str:
        """"esp" when the peer's outbound traffic is in the kernel, else "userspace"."""
        return "esp" if RouteSpec(key) in self.routes else "userspace"  # type: ignore[arg-type]

    def removal(self) -> list[Action]:
        """Everything we installed, in the order that never leaves a policy without a state."""
        out = [Action("del", r) for r in self.routes]
        out += [Action("del", p) for p in self.policies]
        out += [Action("del", s) for s in sorted(self.states.values(), key=lambda s: s.inbound)]
        return out
