"""x0node/overlay/punch.py: rendezvous, hole punching and relay fallback between two simulated NATs.

The NAT model follows Linux netfilter masquerade: a mapping per flow that keeps the source port when
it can (port-preserving) or takes a random one (symmetric, `fully-random`); only replies to a mapped
flow get in; an unsolicited inbound datagram leaves a conntrack entry that makes a later outbound flow
to that same remote take another port. Time is stepped; nothing sleeps.
"""

from __future__ import annotations

import heapq
import random

import pytest

from x0node.overlay import punch
from x0node.proto.identity import Identity
from x0node.proto.trust import TrustAnchor, TrustStore

ANCHOR = TrustAnchor.from_seed(bytes([42]) * 32)
R_EP = ("198.51.100.1", 6719)
LATENCY_S = 0.005


def ident(seed: int, anchor: TrustAnchor = ANCHOR) -> Identity:
    i = Identity.from_seed(bytes([seed]) * 32)
    return i.with_certificate(anchor.certify(i.public_key))


class Nat:
    def __init__(self, public: str, symmetric: bool, rng: random.Random) -> None:
        self.public, self.symmetric, self.rng = public, symmetric, rng
        self.flows: dict[tuple, int] = {}  # (private ep, remote ep) -> public port
        self.stale: set[tuple] = set()  # (remote ep, public port) of unsolicited inbound flows

    def out(self, private: tuple, remote: tuple) -> tuple:
        port = self.flows.get((private, remote))
        if port is None:
            port = private[1]
            used = set(self.flows.values())
            if self.symmetric or (remote, port) in self.stale or port in used and not self._same_private(private, port):
                port = self.rng.randrange(20000, 60000)
            self.flows[(private, remote)] = port
        return self.public, port

    def _same_private(self, private: tuple, port: int) -> bool:
        return any(p == private for (p, _), v in self.flows.items() if v == port)

    def inbound(self, src: tuple, port: int) -> tuple | None:
        for (private, remote), p in self.flows.items():
            if p == port and remote == src:
                return private
        self.stale.add((src, port))
        return None


class World:
    """Rendezvous r on the internet; sites a and b behind their own NATs."""

    def __init__(self, sym_a: bool, sym_b: bool, seed: int = 1, keepalive_s: float = 5.0) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.q: list = []
        self.n = 0
        trust = TrustStore(anchors=[ANCHOR.public_key])
        self.ids = {"r": ident(1), "a": ident(2), "b": ident(3)}
        self.priv = {"a": ("10.1.0.1", 6719), "b": ("10.2.0.1", 6719), "r": R_EP}
        self.nats = {"a": Nat("100.64.1.1", sym_a, self.rng), "b": Nat("100.64.2.1", sym_b, self.rng)}
        cfg_site = punch.NatConfig((R_EP,), serve=False, keepalive_s=keepalive_s, punch_timeout_s=3.0)
        cfg_r = punch.NatConfig((), serve=True, keepalive_s=keepalive_s)
        self.cores = {
            "r": punch.NatCore(self.ids["r"], trust, random.Random(seed + 10), 0.0, cfg_r),
            "a": punch.NatCore(self.ids["a"], trust, random.Random(seed + 11), 0.0, cfg_site),
            "b": punch.NatCore(self.ids["b"], trust, random.Random(seed + 12), 0.0, cfg_site),
        }
        self.frames: dict[str, list[bytes]] = {"a": [], "b": [], "r": []}
        self.lost_ttl = 0

    def _send(self, who: str, dst: tuple, data: bytes, ttl: int) -> None:
        if who == "r":
            src = R_EP
        else:
            src = self.nats[who].out(self.priv[who], dst)
            if ttl and ttl <= 2:  # passes our NAT, dies on the internet router
                self.lost_ttl += 1
                return
        self.n += 1
        heapq.heappush(self.q, (self.now + LATENCY_S, self.n, src, dst, data))

    def _deliver(self, src: tuple, dst: tuple, data: bytes) -> None:
        if dst == R_EP:
            who, local_src = "r", src
        else:
            who = next((k for k, nat in self.nats.items() if nat.public == dst[0]), None)
            if who is None:
                return
            if self.nats[who].inbound(src, dst[1]) is None:
                return
            local_src = src
        frame = self.cores[who].datagram_in(local_src, data, self.now)
        if frame is not None:
            self.frames[who].append(frame)
        self.flush(who)

    def flush(self, who: str) -> None:
        for dst, data, ttl in self.cores[who].datagrams_to_send():
            self._send(who, dst, data, ttl)

    def run(self, until: float) -> None:
        while True:
            timers = [(c.next_timer(), k) for k, c in self.cores.items() if c.next_timer() is not None]
            t_timer, who = min(timers) if timers else (float("inf"), None)
            t_pkt = self.q[0][0] if self.q else float("inf")
            t = min(t_timer, t_pkt)
            if t > until:
                self.now = until
                return
            self.now = max(self.now, t)
            if t_pkt <= t_timer:
                _, _, src, dst, data = heapq.heappop(self.q)
                self._deliver(src, dst, data)
            else:
                self.cores[who].tick(self.now)
                self.flush(who)

    def peer(self, who: str, other: str) -> punch.LinkPeer | None:
        return self.cores[who].peers.get(self.ids[other].node_id)

    def events(self, who: str) -> list[dict]:
        return self.cores[who].events()


def frame(dst: bytes, src: bytes, body: bytes) -> bytes:
    return dst + src + b"\x86\xdd" + body


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_port_preserving_nats_punch_direct_within_two_seconds(seed):
    w = World(False, False, seed)
    w.run(5.0)
    pa, pb = w.peer("a", "b"), w.peer("b", "a")
    assert pa.state == "direct" and pb.state == "direct"
    assert pa.punch_setup_s is not None and pa.punch_setup_s <= 2.0
    assert w.cores["a"].channels.established(w.ids["b"].node_id, w.now)
    assert w.cores["r"].counters["relayed"] == 0
    assert w.lost_ttl >= 2  # each side sent its opener
    ev = [e for e in w.events("a") if e["kind"] == "NatLinkUp"]
    assert ev and ev[0]["path"] == "direct"
    # frames cross: a multicast frame floods, the reply is unicast to the learned MAC
    mac_a, mac_b = b"\x02" + bytes(5), b"\x02" + b"\x01" * 5
    w.cores["a"].frame_out(frame(b"\x33\x33\x00\x00\x00\x01", mac_a, b"hello"), w.now)
    w.flush("a")
    w.run(w.now + 0.1)
    assert w.frames["b"][-1].endswith(b"hello")
    w.cores["b"].frame_out(frame(mac_a, mac_b, b"back"), w.now)
    w.flush("b")
    w.run(w.now + 0.1)
    assert w.frames["a"][-1].endswith(b"back")


def test_symmetric_nat_falls_back_to_relay_and_carries_frames():
    w = World(True, False)
    w.run(10.0)
    pa, pb = w.peer("a", "b"), w.peer("b", "a")
    assert pa.state == "relay" and pb.state == "relay"
    assert w.cores["a"].channels.established(w.ids["b"].node_id, w.now)
    mac_a = b"\x02" + bytes(5)
    w.cores["a"].frame_out(frame(b"\xff" * 6, mac_a, b"via-relay"), w.now)
    w.flush("a")
    w.run(w.now + 0.1)
    assert w.frames["b"][-1].endswith(b"via-relay")
    assert w.cores["r"].counters["relayed"] > 0
    assert b"via-relay" not in b"".join(d for *_, d in w.q)  # (the relay only sees sealed data)


def test_keepalives_hold_the_link_for_minutes():
    w = World(False, False, keepalive_s=5.0)
    w.run(300.0)  # past REKEY_AFTER_S: sessions were renewed by keepalive traffic
    assert w.peer("a", "b").state == "direct"
    assert w.cores["a"].channels.established(w.ids["b"].node_id, w.now)
    assert w.cores["a"].channels.counters["sessions_established"] >= 2


def test_intro_from_unregistered_source_and_forged_register_change_nothing():
    w = World(False, False)
    a = w.cores["a"]
    r = w.cores["r"]
    # an intro signed by the rendezvous but arriving from elsewhere is refused
    msg = r._intro_msg(w.ids["a"].node_id, w.ids["b"].node_id, ("100.64.2.1", 6719), 0.0)
    a.datagram_in(("203.0.113.9", 6719), msg, 0.0)
    assert a.drops["not_rendezvous"] == 1 and a.peers == {}
    # a REGISTER with a flipped byte in the signature is refused
    reg = bytearray(a._register_msg(0.0))
    reg[-1] ^= 1
    r.datagram_in(("100.64.1.1", 6719), bytes(reg), 0.0)
    assert r.drops["bad_signature"] == 1 and r.registrations == {}
    # relaying from an endpoint that never registered is refused
    r.datagram_in(("100.64.9.9", 1), bytes((punch.T_RELAY,)) + bytes(16) + b"\x03" + bytes(40), 0.0)
    assert r.drops["not_registered"] == 1 and r.counters["relayed"] == 0


def test_uncertified_site_cannot_register():
    w = World(False, False)
    foreign = TrustAnchor.from_seed(bytes([9]) * 32)
    intruder = punch.NatCore(ident(7, foreign), TrustStore(anchors=[ANCHOR.public_key]), random.Random(7), 0.0,
                             punch.NatConfig((R_EP,), serve=False))
    w.cores["r"].datagram_in(("100.64.3.1", 6719), intruder._register_msg(0.0), 0.0)
    assert w.cores["r"].drops["uncertified"] == 1 and w.cores["r"].registrations == {}
