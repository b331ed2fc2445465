import dataclasses
import json
import random

import pytest

from x0node.io.route_table import MemoryRouteTable
from x0node.proto import messages as m
from x0node.proto.events import NeighbourDown, NeighbourUp, NodeLeft
from x0node.proto.identity import Identity
from x0node.proto.router import Router, RouterConfig
from x0node.proto.trust import Credential, TrustAnchor, TrustStore

ANCHOR = TrustAnchor.from_seed(b"\xaa" * 32)


def _ident(i: int, certify: bool = True) -> Identity:
    ident = Identity.from_seed(bytes([i]) * 32)
    grant = (f"2001:db8:{i}::/48",)  # each test node may announce its own documentation prefix
    return ident.with_certificate(ANCHOR.certify(ident.public_key, prefixes=grant)) if certify else ident


def _router(i: int, **cfg) -> Router:
    return Router(_ident(i), TrustStore([ANCHOR.public_key]), RouterConfig(**cfg), random.Random(i), 0.0)


class Pair:
    """Two routers on one point-to-point link m0 <-> m0, delivered instantly."""

    def __init__(self, **cfg):
        self.a, self.b = _router(1, **cfg), _router(2, **cfg)
        self.addr = {id(self.a): "fe80::a", id(self.b): "fe80::b"}
        self.now = 0.0
        self.cut = False
        self.events = {id(self.a): [], id(self.b): []}
        self.tables = {id(self.a): MemoryRouteTable(), id(self.b): MemoryRouteTable()}
        self.routes = {k: t.routes for k, t in self.tables.items()}  # dest -> (ifname, via, metric)
        for r in (self.a, self.b):
            r.add_interface("m0", 0.0)

    def pump(self):
        moved = True
        while moved:
            moved = False
            for r, peer in ((self.a, self.b), (self.b, self.a)):
                for out in r.datagrams_to_send():
                    if not self.cut:
                        peer.receive("m0", self.addr[id(r)], out.payload, self.now)
                        moved = True
                changes = r.route_changes()
                if changes:
                    r.route_results(self.tables[id(r)].apply(changes), self.now)
                while (ev := r.next_event()) is not None:
                    self.events[id(r)].append(ev)

    def run(self, until: float):
        while True:
            nxt = min(t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None)
            if nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            for r in (self.a, self.b):
                t = r.next_timer()
                if t is not None and t <= self.now:
                    r.tick(self.now)
            self.pump()


def test_two_routers_come_up_and_route():
    p = Pair()
    p.run(0.5)
    assert p.a.stats().neighbours_up == 1 and p.b.stats().neighbours_up == 1
    dest = f"{p.b.identity.mesh_address}/128"
    ifname, via, metric = p.routes[id(p.a)][dest]
    assert (ifname, via) == ("m0", "fe80::b") and metric >= 100
    assert any(isinstance(e, NeighbourUp) for e in p.events[id(p.a)])
    assert sum(p.a.out.drops.values()) == 0
    views = [p.a.stats(), p.a.neighbours(), p.a.routes(), p.a.topology(), p.a.nodes(), p.a.drops()]
    json.dumps([dataclasses.asdict(v) if dataclasses.is_dataclass(v) else [dataclasses.asdict(x) for x in v]
                for v in views])
    topo = p.a.topology()
    assert len(topo.links) == 1 and {n.node_id for n in topo.nodes} == {p.a.me.hex(), p.b.me.hex()}
    link = topo.links[0]  # both directions' costs, each as its own end advertises it
    assert link.cost > 0 and link.cost_back is not None and link.cost_back > 0
    assert [n.addr for n in p.a.neighbours()] == ["fe80::b"] and p.a.neighbours()[0].quality == "excellent"
    assert [r.node_id for r in p.a.routes()] == [p.b.me.hex()]


def test_silent_failure_detected_within_dead_interval():
    p = Pair()
    p.run(1.0)
    p.cut = True
    t_cut = p.now
    p.run(t_cut + 0.4)
    downs = [e for e in p.events[id(p.a)] if isinstance(e, NeighbourDown)]
    assert downs and downs[0].reason == "dead"
    assert downs[0].at_s - t_cut <= RouterConfig().dead_interval_s + 1e-6
    assert p.routes[id(p.a)] == {}


def test_link_down_acts_at_once_and_link_up_recovers():
    p = Pair()
    p.run(0.5)
    p.a.link_down("m0", p.now)
    p.a.tick(p.now)
    p.pump()
    assert p.routes[id(p.a)] == {}
    assert [e.reason for e in p.events[id(p.a)] if isinstance(e, NeighbourDown)] == ["link_down"]
    p.a.link_up("m0", p.now)
    p.run(p.now + 0.5)
    assert f"{p.b.identity.mesh_address}/128" in p.routes[id(p.a)]


def test_prefixes_are_announced_and_leave_withdraws():
    p = Pair()
    p.a.set_prefixes(["2001:db8:1::/48"], 0.0)
    p.run(0.5)
    assert "2001:db8:1::/48" in p.routes[id(p.b)]
    p.a.leave(p.now)
    p.pump()
    p.run(p.now + 0.1)
    assert p.routes[id(p.b)] == {}
    assert any(isinstance(e, NodeLeft) and e.reason == "withdraw" for e in p.events[id(p.b)])
    assert p.a.out.drops["left"] > 0  # B's keepalives after the leave are refused, its ACKs were taken
    assert p.a.stats().retransmit_queue == 0


def test_garbage_and_unknown_interface_are_counted_not_raised():
    r = _router(1)
    r.add_interface("m0", 0.0)
    for data in (b"", b"\x01", b"\xff" * 2000, b"\x01\x03" + b"\x00" * 50):
        r.receive("m0", "fe80::9", data, 0.1)
    r.receive("nope", "fe80::9", b"\x01\x02", 0.1)
    r.receive("m0", "fe80::9", bytearray(b"\x01\x03xx"), 0.1)
    r.receive("m0", "fe80::9", memoryview(b"\x01\x02"), 0.1)
    assert r.out.drops["decode"] == 6 and r.out.drops["no_interface"] == 1
    assert r.hello.nbrs == {}


def test_uncertified_hello_changes_nothing():
    r = _router(1)
    r.add_interface("m0", 0.0)
    rogue = _ident(7, certify=False)
    hello = m.Hello(Credential(rogue.public_key), 1, 5, 1, 100, ())
    r.receive("m0", "fe80::7", m.sign(hello, rogue), 0.1)
    assert r.out.drops["uncertified"] == 1 and r.hello.nbrs == {}


def test_revocation_tears_down_neighbour():
    p = Pair()
    p.run(0.5)
    crl = ANCHOR.revoke([p.b.identity.node_id], 1, 0)
    assert p.a.apply_revocations(crl, p.now) is None
    p.a.tick(p.now + 0.02)
    p.pump()
    assert p.routes[id(p.a)] == {}
    assert any(isinstance(e, NeighbourDown) and e.reason == "revoked" for e in p.events[id(p.a)])
    p.run(p.now + 0.5)
    assert p.a.stats().neighbours == 0 and p.a.out.drops["revoked"] > 0


def test_config_validation():
    with pytest.raises(ValueError):
        RouterConfig(hello_interval_s=0)
    with pytest.raises(ValueError):
        RouterConfig(hello_missed_dead=0)
    assert RouterConfig().dead_interval_s == pytest.approx(0.25)


def test_next_timer_and_deterministic_output():
    outs = []
    for _ in range(2):
        p = Pair()
        p.run(0.3)
        outs.append((p.a.stats().counters, sorted(p.routes[id(p.a)])))
    assert outs[0] == outs[1]


def test_same_hello_on_two_interfaces_creates_two_neighbours():
    a, b = _router(1), _router(2)
    a.add_interface("m0", 0.0)
    a.add_interface("m1", 0.0)
    b.add_interface("x", 0.0)
    b.tick(0.0)
    hello = next(o.payload for o in b.datagrams_to_send() if o.payload[1] == m.T_HELLO)
    a.receive("m0", "fe80::b", hello, 0.01)
    a.receive("m1", "fe80::b", hello, 0.01)  # one L2 domain seen through two of our interfaces
    assert {k[0] for k in a.hello.nbrs} == {"m0", "m1"}
    a.receive("m0", "fe80::b", hello, 0.02)
    assert a.out.drops["replay"] == 1


def test_a_route_the_kernel_refuses_is_not_claimed_counted_reported_and_retried():
    from x0node.proto.events import RouteRefused
    from x0node.proto.rib import ROUTE_RETRY_S

    p = Pair()
    dest = f"{p.b.identity.mesh_address}/128"
    p.tables[id(p.a)].refuse = lambda ch: "enetunreach" if ch.dest == dest else None
    p.run(0.5)
    assert p.a.stats().neighbours_up == 1 and dest not in p.routes[id(p.a)]
    assert p.a.routes() == () and p.a.stats().routes == 0  # the core never claims it
    assert p.a.drops().routes == {"enetunreach": 1}
    assert [(e.dest, e.reason) for e in p.events[id(p.a)] if isinstance(e, RouteRefused)] == [(dest, "enetunreach")]
    p.run(p.now + ROUTE_RETRY_S / 2)
    assert p.a.drops().routes == {"enetunreach": 1}  # not hammered
    p.tables[id(p.a)].refuse = None  # e.g. the interface came back
    p.run(0.5 + ROUTE_RETRY_S + 0.1)
    assert dest in p.routes[id(p.a)] and [r.dest for r in p.a.routes()] == [dest]


def test_unauthenticated_junk_is_counted_not_pushed_as_events_that_evict_real_ones():
    from x0node.proto.protocol import MAX_PENDING_EVENTS

    a, b = _router(1), _router(2)  # the daemon's defaults
    a.add_interface("m0", 0.0)
    b.add_interface("m0", 0.0)
    b.tick(0.0)
    hello = next(o.payload for o in b.datagrams_to_send() if o.payload[1] == m.T_HELLO)
    a.tick(0.0)
    a.receive("m0", "fe80::b", hello, 0.01)
    a.tick(0.05)
    ours = next(o.payload for o in a.datagrams_to_send() if o.payload[1] == m.T_HELLO)
    b.receive("m0", "fe80::a", ours, 0.06)
    b.tick(0.06)
    for o in b.datagrams_to_send():
        a.receive("m0", "fe80::b", o.payload, 0.07)
    junk = [b"", b"\x03\x03garbage", b"\x03\x02" + bytes(40), hello[:-1] + bytes([hello[-1] ^ 1])]
    for i in range(3 * MAX_PENDING_EVENTS):
        a.receive("m0", f"fe80::{i % 50 + 100:x}", junk[i % len(junk)], 0.08)
    kinds = [ev.kind for ev in iter(a.next_event, None)]
    assert "NeighbourUp" in kinds and "MessageDropped" not in kinds
    assert a.out.counters["events_dropped"] == 0
    assert sum(a.drops().datagrams.values()) >= 3 * MAX_PENDING_EVENTS


def test_credential_checks_counted_by_outcome():
    p = Pair()
    p.run(0.5)
    ok = p.a.stats().credential_checks["ok"]
    assert ok > 0 and p.a.stats().credential_checks == {"ok": ok}
    rogue = _ident(7, certify=False)
    p.a.receive("m0", "fe80::7", m.sign(m.Hello(Credential(rogue.public_key), 1, 5, 1, 100, ()), rogue), p.now)
    assert p.a.stats().credential_checks["uncertified"] == 1 == p.a.drops().datagrams["uncertified"]
    hist = p.a.rtt_histograms()[p.b.identity.node_id.hex()]
    assert sum(hist[0]) > 0 and hist[1] >= 0


def test_lost_neighbours_counted():
    p = Pair()
    p.run(0.5)
    p.a.link_down("m0", p.now)
    p.a.tick(p.now)
    assert p.a.stats().counters["neighbour_down"] == 1
