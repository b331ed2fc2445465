"""NAT traversal: rendezvous, UDP hole punching, keepalives and relay fallback for mesh links. Sans-I/O.

Sites behind NAT register with a rendezvous (any certified node with a reachable UDP endpoint). The
rendezvous tells each registered site where the others are as it sees them (their NAT's public
endpoint). Both sites then run the overlay handshake (channel.py, purpose "link") straight at each
other's public endpoint, repeating the INIT every PUNCH_INTERVAL_S: the outgoing INITs open each NAT's
mapping and, once both are open, one gets through and the link is up. A port-preserving (or any
endpoint-independent) NAT is punched this way; a symmetric NAT gives every destination another port,
so the endpoint the rendezvous saw is useless to the peer: after `punch_timeout_s` the link switches to
the relay, where the rendezvous forwards the already sealed datagrams between the two registered sites.
Frames on the link are Ethernet frames of a TAP device: the link is an ordinary mesh interface.

Messages on the NAT socket (first byte):
    1..3 INIT/RESP/DATA of the link channel (end-to-end between the two sites, also when relayed)
    16 REGISTER  site->rendezvous: stamp u64 | credential | signature
    17 INTRO     rendezvous->site: stamp u64 | credential of the rendezvous | peer node id (16)
                 | peer endpoint (family 4|6, address, port u16) | signature (covers the receiver's id)
    18 RELAY     site->rendezvous: destination node id (16) | channel datagram
    19 RELAYED   rendezvous->site: source node id (16) | channel datagram
    20 REGISTERED rendezvous->site: stamp u64 | credential of the rendezvous | the site's endpoint as
                 seen | signature (covers the receiver's id)

Rules and invariants:
- REGISTER and INTRO are signed with the node key under their own domain labels and accepted only
  from credentials the trust store accepts, with a stamp above the last one seen from that signer;
  an INTRO is accepted only from a rendezvous we registered with. Unauthenticated input changes no
  state.
- The rendezvous relays only from an endpoint that registered (the source node id of a RELAYED is the
  one bound to that endpoint, never a field the sender chose) and only to a registered node; it cannot
  read or forge what it relays (the channel seals it end to end).
- A path becomes direct only when a datagram from the peer's endpoint authenticated; a direct path
  without authenticated traffic for DIRECT_DEAD_KEEPALIVES keepalive periods is punched again.
- Keepalives (an empty sealed datagram per peer, a REGISTER per rendezvous) go out every
  `keepalive_s` (+-25 %), which holds NAT mappings (Linux conntrack keeps an idle UDP mapping 30 s
  before it is seen both ways, 120 s after) and keeps the session rekeyed.
- Bounded: MAX_REGISTRATIONS at a rendezvous, MAX_LINK_PEERS per site, MAX_MACS learned addresses;
  registrations expire after REGISTRATION_TTL_KEEPALIVES keepalive periods.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from x0node.overlay import handshake as hs
from x0node.overlay.channel import Channels
from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import SIGNATURE_BYTES
from x0node.proto.trust import Credential, TrustStore
from x0node.proto.wire import DecodeError, Reader, Writer

Endpoint = tuple[str, int]

T_REGISTER = 16
T_INTRO = 17
T_RELAY = 18
T_RELAYED = 19
T_REGISTERED = 20
REGISTER_RETRY_S = 0.5
"""Until a rendezvous acknowledged us, REGISTER is repeated this often (then every keepalive)."""
PUNCH_INTERVAL_S = 0.1
PUNCH_OPEN_TTL = 2
"""Hop limit of the first datagram to a new peer endpoint: it opens our own NAT's mapping and expires
before it reaches the peer's NAT, where it would otherwise create a conntrack entry for the unsolicited
inbound flow that makes the peer NAT's own outbound mapping to us change port (Linux netfilter)."""
PUNCH_OPEN_DELAY_S = 0.2
"""Full datagrams to a new endpoint start this long after the opener (both NATs have mapped by then)."""
DIRECT_DEAD_KEEPALIVES = 3
REGISTRATION_TTL_KEEPALIVES = 4
MAX_REGISTRATIONS = 256
MAX_INTROS_PER_REGISTER = 32
MAX_LINK_PEERS = 64
MAX_MACS = 1024
MAX_NAT_DATAGRAM_BYTES = 2048
JITTER_FRACTION = 0.25
_REGISTER_DOMAIN = b"x0node-nat-register-v1\x00"
_INTRO_DOMAIN = b"x0node-nat-intro-v1\x00"
_REGISTERED_DOMAIN = b"x0node-nat-registered-v1\x00"

DROP_REASONS = ("decode", "bad_signature", "uncertified", "revoked", "expired", "replay", "not_rendezvous",
                "not_registered", "limit_registrations", "limit_peers", "self", "no_path", "no_session")


def encode_endpoint(w: Writer, ep: Endpoint) -> Writer:
    addr = ipaddress.ip_address(ep[0])
    return w.u8(addr.version).raw(addr.packed).u16(ep[1])


def decode_endpoint(r: Reader) -> Endpoint:
    fam = r.u8()
    if fam == 4:
        addr = str(ipaddress.IPv4Address(r.raw(4)))
    elif fam == 6:
        addr = str(ipaddress.IPv6Address(r.raw(16)))
    else:
        raise DecodeError("bad address family")
    port = r.u16()
    if port == 0:
        raise DecodeError("port 0")
    return addr, port


def normalise(ep: Endpoint) -> Endpoint:
    host = ep[0].partition("%")[0]
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr), int(ep[1])


@dataclass
class _Registration:
    endpoint: Endpoint
    credential: Credential
    seen_s: float
    stamp: int


@dataclass
class LinkPeer:
    node_id: bytes
    endpoint: Endpoint | None = None  # where the rendezvous saw it (or where it last authenticated from)
    via: Endpoint | None = None  # the rendezvous that introduced it
    state: str = "punching"  # punching | direct | relay
    punch_started_s: float = 0.0
    punch_setup_s: float | None = None  # how long the last successful punch took
    direct_rx_s: float = -1e18
    next_probe_s: float = 0.0
    next_keepalive_s: float = 0.0
    punches: int = 0
    relay_fallbacks: int = 0
    reported: str = ""  # the path last announced as up


@dataclass
class NatConfig:
    rendezvous: tuple[Endpoint, ...] = ()
    serve: bool = True
    keepalive_s: float = 15.0
    punch_timeout_s: float = 3.0


class NatCore:
    """One site's (and possibly a rendezvous') NAT traversal state."""

    def __init__(self, identity: Identity, trust: TrustStore, rng: random.Random, now: float, cfg: NatConfig,
                 wall: Callable[[float], float | None] = lambda now: None) -> None:
        self.identity = identity
        self.trust = trust
        self.rng = rng
        self.cfg = cfg
        self.wall = wall
        self.me = identity.node_id
        self.channels = Channels(identity, trust, rng, now, hs.PURPOSE_LINK, lambda c: c.node_id, wall=wall,
                                 handshake_retry_s=1.0, handshake_attempts=1_000_000, key_is_node_id=True,
                                 allow=self._allow)
        self.rendezvous = tuple(normalise(e) for e in cfg.rendezvous)
        self.registrations: dict[bytes, _Registration] = {}
        self._by_endpoint: dict[Endpoint, bytes] = {}
        self.peers: dict[bytes, LinkPeer] = {}
        self.macs: OrderedDict[bytes, bytes] = OrderedDict()
        self._last_stamp: dict[bytes, int] = {}
        self._stamp = 0
        self._out: list[tuple[Endpoint, bytes]] = []
        self._out_ttl: list[tuple[Endpoint, bytes, int]] = []
        self._events: list[dict[str, Any]] = []
        self._register_due_s = now
        self.registered: dict[Endpoint, tuple[Endpoint, float]] = {}  # rendezvous -> (our endpoint seen, when)
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.counters: dict[str, int] = {"relayed": 0, "registered": 0, "intros_sent": 0, "intros_received": 0,
                                         "frames_out": 0, "frames_in": 0}

    def _allow(self, key: Any, cred: Credential) -> bool:
        # a link channel is only for peers a rendezvous introduced (or that reached us directly first
        # and are certified: then the first authenticated datagram creates the peer)
        return key in self.peers or len(self.peers) < MAX_LINK_PEERS

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _jitter(self, base: float) -> float:
        return base * (1.0 + self.rng.uniform(-JITTER_FRACTION, JITTER_FRACTION))

    def _next_stamp(self, now: float) -> int:
        self._stamp = hs.next_stamp(self._stamp, self.wall(now))
        return self._stamp

    def _trusted(self, cred: Credential, now: float) -> bool:
        reason = hs.refusal(self.trust, cred, self.me, self.wall(now))
        if reason is not None:
            self._drop(reason)
        return reason is None

    def _fresh(self, signer: bytes, stamp: int) -> bool:
        return stamp > self._last_stamp.get(signer, -1)

    # --- messages -----------------------------------------------------------------------------------------

    def _register_msg(self, now: float) -> bytes:
        cred = Credential(self.identity.public_key, self.identity.certificate)  # type: ignore[arg-type]
        body = Writer().u8(T_REGISTER).u64(self._next_stamp(now)).raw(cred.encode()).bytes()
        return body + self.identity.sign(_REGISTER_DOMAIN + body)

    def _intro_msg(self, to: bytes, peer: bytes, ep: Endpoint, now: float) -> bytes:
        cred = Credential(self.identity.public_key, self.identity.certificate)  # type: ignore[arg-type]
        w = Writer().u8(T_INTRO).u64(self._next_stamp(now)).raw(cred.encode()).raw(peer, 16)
        body = encode_endpoint(w, ep).bytes()
        return body + self.identity.sign(_INTRO_DOMAIN + to + body)

    def _registered_msg(self, to: bytes, seen: Endpoint, now: float) -> bytes:
        cred = Credential(self.identity.public_key, self.identity.certificate)  # type: ignore[arg-type]
        body = encode_endpoint(Writer().u8(T_REGISTERED).u64(self._next_stamp(now)).raw(cred.encode()), seen).bytes()
        return body + self.identity.sign(_REGISTERED_DOMAIN + to + body)

    # --- input --------------------------------------------------------------------------------------------

    def datagram_in(self, src: Endpoint, data: bytes, now: float) -> bytes | None:
        """Handle one datagram from the NAT socket; returns a frame for the TAP, if any."""
        if not data or len(data) > MAX_NAT_DATAGRAM_BYTES:
            self._drop("decode")
            return None
        src = normalise(src)
        kind = data[0]
        if kind in (hs.T_INIT, hs.T_RESP, hs.T_DATA):
            return self._channel_in(data, now, direct_from=src)
        if kind == T_REGISTER:
            self._on_register(src, data, now)
        elif kind == T_INTRO:
            self._on_intro(src, data, now)
        elif kind == T_REGISTERED:
            self._on_registered(src, data, now)
        elif kind == T_RELAY:
            self._on_relay(src, data, now)
        elif kind == T_RELAYED:
            if src not in self.rendezvous:
                self._drop("not_rendezvous")
                return None
            if len(data) < 17:
                self._drop("decode")
                return None
            return self._channel_in(data[17:], now, direct_from=None)
        else:
            self._drop("decode")
        return None

    def _channel_in(self, data: bytes, now: float, direct_from: Endpoint | None) -> bytes | None:
        got = self.channels.receive(data, now)
        key = self.channels.last_authenticated
        if key is not None:
            peer = self.peers.get(key)  # type: ignore[arg-type]
            if peer is None:
                if len(self.peers) >= MAX_LINK_PEERS:
                    self._drop("limit_peers")
                    return None
                peer = self.peers[key] = LinkPeer(key, punch_started_s=now)  # type: ignore[arg-type]
            if direct_from is not None:
                if peer.state != "direct":
                    if peer.state == "punching" or peer.punch_setup_s is None:
                        peer.punch_setup_s = now - peer.punch_started_s
                    peer.state = "direct"
                    peer.punches += 1
                peer.endpoint = direct_from
                peer.direct_rx_s = now
            self._report(peer, now)
        self._flush_channels(now)
        if got is None:
            return None
        _, frame = got
        if len(frame) >= 14:
            self._learn(frame[6:12], key)  # type: ignore[arg-type]
        self.counters["frames_in"] += 1
        return frame

    def _report(self, peer: LinkPeer, now: float) -> None:
        """Announce a link whose session is up on a new path (direct or relay), or that went down."""
        up = self.channels.established(peer.node_id, now)
        path = peer.state if up and peer.state != "punching" else ""
        if path == peer.reported:
            return
        peer.reported = path
        ev: dict[str, Any] = {"kind": "NatLinkUp" if path else "NatLinkDown", "node_id": peer.node_id.hex()}
        if path:
            ev["path"] = path
            if path == "direct" and peer.punch_setup_s is not None:
                ev["setup_s"] = round(peer.punch_setup_s, 3)
        self._events.append(ev)

    def events(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out

    def _learn(self, mac: bytes, peer: bytes) -> None:
        if mac[0] & 1:
            return
        self.macs[mac] = peer
        self.macs.move_to_end(mac)
        while len(self.macs) > MAX_MACS:
            self.macs.popitem(last=False)

    def _on_register(self, src: Endpoint, data: bytes, now: float) -> None:
        if not self.cfg.serve:
            self._drop("not_rendezvous")
            return
        try:
            r = Reader(data, MAX_NAT_DATAGRAM_BYTES)
            r.u8()
            stamp = r.u64()
            cred = Credential.decode_from(r)
            sig = r.raw(SIGNATURE_BYTES)
            r.end()
        except DecodeError:
            self._drop("decode")
            return
        nid = cred.node_id
        if not self._fresh(nid, stamp):
            self._drop("replay")
            return
        if not self._trusted(cred, now):
            return
        if not verify(cred.public_key, _REGISTER_DOMAIN + data[:-SIGNATURE_BYTES], sig):
            self._drop("bad_signature")
            return
        if nid not in self.registrations and len(self.registrations) >= MAX_REGISTRATIONS:
            self._drop("limit_registrations")
            return
        self._last_stamp[nid] = stamp
        old = self.registrations.get(nid)
        if old is not None and self._by_endpoint.get(old.endpoint) == nid:
            del self._by_endpoint[old.endpoint]
        self.registrations[nid] = _Registration(src, cred, now, stamp)
        self._by_endpoint[src] = nid
        self.counters["registered"] += 1
        self._out.append((src, self._registered_msg(nid, src, now)))
        changed = old is None or old.endpoint != src
        sent = 0
        for other, reg in list(self.registrations.items()):
            if other == nid or sent >= MAX_INTROS_PER_REGISTER:
                continue
            self._out.append((src, self._intro_msg(nid, other, reg.endpoint, now)))
            if changed:
                self._out.append((reg.endpoint, self._intro_msg(other, nid, src, now)))
                self.counters["intros_sent"] += 1
            self.counters["intros_sent"] += 1
            sent += 1

    def _signed_by_rendezvous(self, src: Endpoint, data: bytes, domain: bytes, now: float) -> Reader | None:
        """A reader positioned after the signer's credential of a rendezvous message that verified."""
        if src not in self.rendezvous:
            self._drop("not_rendezvous")
            return None
        try:
            r = Reader(data, MAX_NAT_DATAGRAM_BYTES)
            r.u8()
            stamp = r.u64()
            cred = Credential.decode_from(r)
        except DecodeError:
            self._drop("decode")
            return None
        if len(data) < SIGNATURE_BYTES or not self._fresh(cred.node_id, stamp):
            self._drop("replay")
            return None
        if not self._trusted(cred, now):
            return None
        if not verify(cred.public_key, domain + self.me + data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]):
            self._drop("bad_signature")
            return None
        self._last_stamp[cred.node_id] = stamp
        return r

    def _on_registered(self, src: Endpoint, data: bytes, now: float) -> None:
        r = self._signed_by_rendezvous(src, data, _REGISTERED_DOMAIN, now)
        if r is None:
            return
        try:
            seen = decode_endpoint(r)
            r.raw(SIGNATURE_BYTES)
            r.end()
        except DecodeError:
            self._drop("decode")
            return
        first = src not in self.registered
        self.registered[src] = (seen, now)
        if first:
            self._register_due_s = min(self._register_due_s, now + self._jitter(self.cfg.keepalive_s))

    def _on_intro(self, src: Endpoint, data: bytes, now: float) -> None:
        r = self._signed_by_rendezvous(src, data, _INTRO_DOMAIN, now)
        if r is None:
            return
        try:
            peer_id = r.raw(16)
            ep = decode_endpoint(r)
            r.raw(SIGNATURE_BYTES)
            r.end()
        except DecodeError:
            self._drop("decode")
            return
        if peer_id == self.me:
            self._drop("self")
            return
        self.counters["intros_received"] += 1
        peer = self.peers.get(peer_id)
        if peer is None:
            if len(self.peers) >= MAX_LINK_PEERS:
                self._drop("limit_peers")
                return
            peer = self.peers[peer_id] = LinkPeer(peer_id)
        peer.via = src
        if peer.state == "direct" and peer.endpoint == ep and self.channels.established(peer_id, now):
            return
        if peer.endpoint != ep or not self.channels.established(peer_id, now):
            peer.endpoint = ep
            self._start_punch(peer, now)

    def _start_punch(self, peer: LinkPeer, now: float) -> None:
        peer.state = "punching"
        peer.punch_started_s = now
        peer.next_probe_s = now + PUNCH_OPEN_DELAY_S
        self.channels.connect(peer.node_id, now)
        for key, data in self.channels.datagrams_to_send():
            if key == peer.node_id and peer.endpoint is not None:
                self._out_ttl.append((peer.endpoint, data, PUNCH_OPEN_TTL))  # the opener
            else:
                self._send_to_peer(key, data, now)  # type: ignore[arg-type]

    def _on_relay(self, src: Endpoint, data: bytes, now: float) -> None:
        sender = self._by_endpoint.get(src)
        if sender is None or not self.cfg.serve:
            self._drop("not_registered")
            return
        if len(data) < 17:
            self._drop("decode")
            return
        dest = self.registrations.get(data[1:17])
        if dest is None:
            self._drop("not_registered")
            return
        self.counters["relayed"] += 1
        self._out.append((dest.endpoint, bytes((T_RELAYED,)) + sender + data[17:]))

    # --- output -------------------------------------------------------------------------------------------

    def _send_to_peer(self, peer_id: bytes, data: bytes, now: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            self._drop("no_path")
            return
        if peer.state == "punching" and now < peer.next_probe_s and data[0] != hs.T_DATA:
            return  # not before the opener had its time; the next probe carries the newest INIT
        if peer.state == "relay" and peer.via is not None:
            self._out.append((peer.via, bytes((T_RELAY,)) + peer_id + data))
            if data[0] != hs.T_DATA and peer.endpoint is not None:
                self._out.append((peer.endpoint, data))  # handshakes still try the direct path
        elif peer.endpoint is not None:
            self._out.append((peer.endpoint, data))
        else:
            self._drop("no_path")

    def _flush_channels(self, now: float) -> None:
        for key, data in self.channels.datagrams_to_send():
            self._send_to_peer(key, data, now)  # type: ignore[arg-type]

    def frame_out(self, frame: bytes, now: float) -> None:
        """A frame read from the TAP: to the peer that owns its destination MAC, else to every peer."""
        if len(frame) < 14:
            return
        dst = frame[:6]
        owner = None if dst[0] & 1 else self.macs.get(dst)
        targets = [owner] if owner is not None else [p for p in self.peers if self.channels.established(p, now)]
        for peer_id in targets:
            data = self.channels.seal(peer_id, frame, now)
            if data is None:
                data = self.channels.send(peer_id, frame, now)
            if data is not None:
                self.counters["frames_out"] += 1
                self._send_to_peer(peer_id, data, now)
        self._flush_channels(now)

    # --- timers -------------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.rendezvous and now >= self._register_due_s:
            fresh = all(now - self.registered.get(ep, (None, -1e18))[1] < 2 * self.cfg.keepalive_s
                        for ep in self.rendezvous)
            self._register_due_s = now + self._jitter(self.cfg.keepalive_s if fresh else REGISTER_RETRY_S)
            msg = self._register_msg(now)
            for ep in self.rendezvous:
                self._out.append((ep, msg))
        ttl = REGISTRATION_TTL_KEEPALIVES * self.cfg.keepalive_s
        for nid, reg in list(self.registrations.items()):
            if now - reg.seen_s > ttl:
                del self.registrations[nid]
                if self._by_endpoint.get(reg.endpoint) == nid:
                    del self._by_endpoint[reg.endpoint]
        for peer in self.peers.values():
            established = self.channels.established(peer.node_id, now)
            if peer.state == "punching":
                if now - peer.punch_started_s >= self.cfg.punch_timeout_s and peer.via is not None:
                    peer.state = "relay"
                    peer.relay_fallbacks += 1
                    self.channels.connect(peer.node_id, now)  # a fresh handshake, now through the relay
                elif now >= peer.next_probe_s and peer.endpoint is not None:
                    peer.next_probe_s = now + PUNCH_INTERVAL_S
                    init = self.channels.pending_init(peer.node_id)
                    if init is not None:
                        self._out.append((peer.endpoint, init))
                    else:
                        self.channels.connect(peer.node_id, now)
            elif peer.state == "direct" and now - peer.direct_rx_s > DIRECT_DEAD_KEEPALIVES * self.cfg.keepalive_s:
                self._start_punch(peer, now)
            if peer.state != "punching" and now >= peer.next_keepalive_s:
                peer.next_keepalive_s = now + self._jitter(self.cfg.keepalive_s)
                if established:
                    data = self.channels.send(peer.node_id, b"", now)
                    if data is not None:
                        self._send_to_peer(peer.node_id, data, now)
                        if peer.state == "relay" and peer.endpoint is not None:
                            self._out.append((peer.endpoint, data))  # try the direct path again
            self._report(peer, now)
        self.channels.tick(now)
        self._flush_channels(now)

    def next_timer(self) -> float | None:
        times = [t for t in (self.channels.next_timer(),) if t is not None]
        if self.rendezvous:
            times.append(self._register_due_s)
        for peer in self.peers.values():
            if peer.state == "punching":
                times.append(min(peer.next_probe_s, peer.punch_started_s + self.cfg.punch_timeout_s))
            else:
                times.append(peer.next_keepalive_s)
        if self.registrations:
            times.append(min(r.seen_s for r in self.registrations.values())
                         + REGISTRATION_TTL_KEEPALIVES * self.cfg.keepalive_s)
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[Endpoint, bytes, int]]:
        """(endpoint, datagram, hop limit or 0 for the default)."""
        out = self._out_ttl + [(ep, data, 0) for ep, data in self._out]
        self._out, self._out_ttl = [], []
        return out

    def view(self, now: float) -> dict[str, Any]:
        chans = {p["node_id"]: p for p in self.channels.view(now)}
        return {
            "peers": [{
                "node_id": p.node_id.hex(), "state": p.state, "endpoint": f"{p.endpoint[0]}:{p.endpoint[1]}" if p.endpoint else None,
                "established": self.channels.established(p.node_id, now),
                "punch_setup_s": round(p.punch_setup_s, 3) if p.punch_setup_s is not None else None,
                "relay_fallbacks": p.relay_fallbacks,
                **{k: chans.get(p.node_id.hex(), {}).get(k, 0) for k in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")},
            } for p in self.peers.values()],
            "registrations": len(self.registrations),
            "registered_with": {f"{ep[0]}:{ep[1]}": f"{seen[0]}:{seen[1]}" for ep, (seen, _) in self.registered.items()},
            "drops": {**{k: v for k, v in self.drops.items() if v}, **{f"channel_{k}": v for k, v in self.channels.drops.items() if v}},
            "counters": {**self.counters, **self.channels.counters},
        }
