"""Forged, replayed, unsigned, uncertified and revoked-node messages change no state and are counted.

A converged 4-node ring; an attacker on node 0's link to node 1 (it can send from node 1's link-local
address, replay anything it captured, and sign with keys of its own). For every attack we compare
node 0's complete routing state (LSDB, neighbours, RIB) before and after, and check the drop counter.
"""

import random

import pytest

from tests.sim.mesh import SimMesh, neighbour_addr, ring, state_of
from x0node.proto import messages as m
from x0node.proto.identity import Identity
from x0node.proto.router import Router, RouterConfig
from x0node.proto.trust import Credential, TrustAnchor, TrustStore

ROGUE_ANCHOR = TrustAnchor.from_seed(b"\x66" * 32)


@pytest.fixture(scope="module")
def world():
    mesh = SimMesh(5, seed=31)
    ring(mesh, 4)  # node 4 exists (certified) but is not connected yet
    mesh.capture = []
    assert mesh.run_until_converged(1.0, nodes=[0, 1, 2, 3]) is not None
    mesh.nodes[2].router.set_prefixes(["2001:db8:2::/48"], mesh.now)  # so that node 2 has an older LSA
    mesh.run_for(1.0)
    return mesh


def _attack(
    mesh: SimMesh, data: bytes, reason: str, at: int = 0, src_peer: int = 1, src: str | None = None
) -> None:
    ifname, peer_addr = neighbour_addr(mesh, at, src_peer)
    before = state_of(mesh, at)
    drops = dict(mesh.nodes[at].router.out.drops)
    mesh.inject(at, ifname, src or peer_addr, data)
    after = state_of(mesh, at)
    assert after == before, f"{reason}: state changed"
    delta = {k: v - drops.get(k, 0) for k, v in mesh.nodes[at].router.out.drops.items() if v != drops.get(k, 0)}
    assert delta == {reason: 1}, delta


def _captured(mesh: SimMesh, sender: int, mtype: int, towards: int | None = None) -> list[bytes]:
    ifname = None if towards is None else neighbour_addr(mesh, sender, towards)[0]
    return [p for _, i, f, p in mesh.capture if i == sender and p[1] == mtype and ifname in (None, f)]


def test_forged_lsa_tampered_bytes(world):
    r2 = world.nodes[2].router
    lsa = r2.lsdb.get(r2.me).raw
    forged = bytearray(lsa)
    forged[2 + len(r2.credential.encode()) + 4 + 1 + 17] ^= 0x01  # the first link's cost (low byte)
    _attack(world, bytes(forged), "bad_signature")


def test_forged_lsa_signed_by_another_key(world):
    victim = world.nodes[2].router
    attacker = Identity.from_seed(b"\x77" * 32)
    lsa = m.Lsa(victim.credential, victim.origination.seq + 5, (), ("::/0",))
    body = lsa.body()
    _attack(world, body + attacker.sign(m.signed_payload(body)), "bad_signature")


def test_unsigned_messages(world):
    victim = world.nodes[2].router
    lsa = m.Lsa(victim.credential, victim.origination.seq + 5, (), ("::/0",))
    _attack(world, lsa.body() + b"\x00" * 64, "bad_signature")
    hello = m.Hello(world.nodes[1].router.credential, 999999, world.nodes[1].router.hello.epoch, 1, 100, ())
    _attack(world, hello.body() + b"\x00" * 64, "bad_signature")
    # a keepalive from node 1's address whose MAC was not made with the pairwise key
    head = m.keepalive_header(5, 1, 1)
    ka = m.Keepalive(5, 1, (m.KeepaliveEntry(0, 0, b"\x00" * m.MAC_BYTES),))
    assert ka.header() == head
    _attack(world, ka.encode(), "bad_mac")
    ack = m.Ack(world.nodes[1].router.me, 424242, ((victim.me, victim.origination.seq),))
    _attack(world, ack.body() + b"\x11" * m.MAC_BYTES, "bad_mac")
    wd = m.Withdraw(victim.me, victim.origination.seq + 9)
    _attack(world, wd.body() + b"\x22" * 64, "bad_signature")


def test_replayed_messages(world):
    # everything node 1 sent to node 0 earlier: hellos, keepalives, acks, LSAs
    hellos = _captured(world, 1, m.T_HELLO, towards=0)
    kas = _captured(world, 1, m.T_KEEPALIVE, towards=0)
    acks = _captured(world, 1, m.T_ACK, towards=0)
    assert hellos and len(kas) > 10 and acks
    _attack(world, hellos[0], "replay")
    _attack(world, kas[len(kas) // 2], "replay")
    _attack(world, kas[-1], "replay")
    _attack(world, acks[0], "replay")
    # an LSA older than the one held: node 2's first LSA, if it was superseded
    lsas2 = [p for p in _captured(world, 2, m.T_LSA) if m.decode(p).origin == world.nodes[2].router.me]
    cur = world.nodes[0].router.lsdb.get(world.nodes[2].router.me)
    old = [p for p in lsas2 if m.decode(p).seq != cur.seq]
    assert old
    _attack(world, old[0], "stale")
    # an identical copy of the current LSA changes nothing and is only acknowledged (not a drop)
    before = state_of(world, 0)
    ifname, addr = neighbour_addr(world, 0, 1)
    world.inject(0, ifname, addr, cur.raw)
    assert state_of(world, 0) == before


def test_uncertified_nodes(world):
    # a raw key that is on no allow-list
    rogue = Identity.from_seed(b"\x88" * 32)
    hello = m.Hello(Credential(rogue.public_key), 1, 7, 1, 100, ())
    _attack(world, m.sign(hello, rogue), "uncertified")
    # a certificate from another authority
    rogue_c = rogue.with_certificate(ROGUE_ANCHOR.certify(rogue.public_key))
    cred = Credential(rogue.public_key, rogue_c.certificate)
    _attack(world, m.sign(m.Hello(cred, 1, 7, 1, 100, ()), rogue_c), "uncertified")
    lsa = m.Lsa(cred, 1, (m.LsaLink(world.nodes[0].router.me, 1, 0),), ("::/0",))
    _attack(world, m.sign(lsa, rogue_c), "uncertified")
    # a genuine certificate carried by someone without its private key
    stolen = Credential(world.nodes[3].router.identity.public_key, world.nodes[3].router.identity.certificate)
    _attack(world, m.sign(m.Lsa(stolen, 777, (), ()), rogue_c), "bad_signature")


def test_revoked_node(world):
    r4 = world.nodes[4].router
    crl = world.anchor.revoke([r4.me], 1, 0)
    for node in world.nodes[:4]:
        assert node.router.apply_revocations(crl, world.now) is None
    hello = m.Hello(r4.credential, 1, r4.hello.epoch, 1, 100, ())
    _attack(world, m.sign(hello, r4.identity), "revoked")
    lsa = m.Lsa(r4.credential, 1, (m.LsaLink(world.nodes[0].router.me, 1, 0),), ("::/0",))
    _attack(world, m.sign(lsa, r4.identity), "revoked")
    # and once connected, it never becomes a neighbour anywhere
    world.connect(4, 0)
    world.run_for(1.0)
    assert all(r4.me not in {k[1] for k in n.router.hello.nbrs} for n in world.nodes[:4])
    assert world.nodes[0].router.out.drops["revoked"] > 2
    assert world.all_pairs_ok([0, 1, 2, 3])


def test_garbage_and_strangers(world):
    _attack(world, b"\x01\x03garbage", "decode")
    _attack(world, b"", "decode")
    lsa = world.nodes[2].router.lsdb.get(world.nodes[2].router.me).raw
    _attack(world, lsa[:-1] + bytes([lsa[-1] ^ 1]), "unknown_sender", src="fe80::dead")


def _pair_world(seed: int = 41) -> SimMesh:
    mesh = SimMesh(2, seed=seed)
    mesh.connect(0, 1)
    mesh.capture = []
    assert mesh.run_until_converged(1.0) is not None
    return mesh


def _keepalive_state(mesh: SimMesh, at: int, peer: int) -> tuple:
    r = mesh.nodes[at].router
    n = r.hello.nbrs[(neighbour_addr(mesh, at, peer)[0], mesh.nodes[peer].router.me)]
    return state_of(mesh, at), n.ka_window.highest, n.ka_window.mask, n.peer_ts_ms


def test_keepalive_replayed_after_the_16_bit_wrap_is_refused_and_the_link_stays_up():
    """A keepalive captured ~55 min earlier in the same session (its 16-bit sequence number now looks
    newer than the window's) must not be accepted, and must not lock the real neighbour out."""
    mesh = _pair_world()
    old = _captured(mesh, 1, m.T_KEEPALIVE, towards=0)[-1]
    r1 = mesh.nodes[1].router
    iface = r1.interfaces.get(neighbour_addr(mesh, 1, 0)[0])
    for _ in range(2):  # 2 x 20000 keepalives later (in steps the receiver can follow), ~67 min at 10/s
        iface.ka_seq = iface.ka_seq + 20000
        mesh.run_for(0.35)
    downs = sum(1 for ev in mesh.nodes[0].events if ev.kind == "NeighbourDown")
    before = _keepalive_state(mesh, 0, 1)
    drops = dict(mesh.nodes[0].router.out.drops)
    ifname, addr = neighbour_addr(mesh, 0, 1)
    mesh.inject(0, ifname, addr, old)
    assert _keepalive_state(mesh, 0, 1) == before, "the replayed keepalive changed the session"
    delta = {k: v - drops.get(k, 0) for k, v in mesh.nodes[0].router.out.drops.items() if v != drops.get(k, 0)}
    assert delta == {"bad_mac": 1}, delta  # the MAC covers the full sequence number, not its low 16 bits
    mesh.run_for(1.0)
    assert sum(1 for ev in mesh.nodes[0].events if ev.kind == "NeighbourDown") == downs
    assert mesh.all_pairs_ok()


def test_keepalive_far_from_the_last_accepted_timestamp_is_refused():
    """Even with a valid MAC and a new sequence number, a keepalive whose timestamp is minutes away from
    the last one accepted (a datagram held back and let go later) is refused."""
    mesh = _pair_world(seed=43)
    r0, r1 = mesh.nodes[0].router, mesh.nodes[1].router
    ifname, addr = neighbour_addr(mesh, 0, 1)
    n = r0.hello.nbrs[(ifname, r1.me)]
    iface = r1.interfaces.get(neighbour_addr(mesh, 1, 0)[0])
    seq = iface.ka_seq + 1
    ts = (n.peer_ts_ms - 600_000) % (1 << 32)  # ten minutes before the last timestamp accepted
    head = m.keepalive_header(seq & 0xFFFF, ts, 1)
    mac = m.keepalive_mac(n.key, r1.me, r0.me, seq, head, 0, 0)
    data = m.Keepalive(seq & 0xFFFF, ts, (m.KeepaliveEntry(0, 0, mac),)).encode()
    before = _keepalive_state(mesh, 0, 1)
    drops = dict(r0.out.drops)
    mesh.inject(0, ifname, addr, data)
    assert _keepalive_state(mesh, 0, 1) == before
    delta = {k: v - drops.get(k, 0) for k, v in r0.out.drops.items() if v != drops.get(k, 0)}
    assert delta == {"bad_timestamp": 1}, delta


def test_session_is_rekeyed_before_half_the_sequence_space_and_the_link_stays_up():
    from x0node.proto.protocol import REKEY_SEQ

    mesh = _pair_world(seed=45)
    r1 = mesh.nodes[1].router
    iface = r1.interfaces.get(neighbour_addr(mesh, 1, 0)[0])
    epoch = r1.hello.epoch
    ifname0 = neighbour_addr(mesh, 0, 1)[0]
    # ~68 days of keepalives at 100 ms later (the receiver followed all the way)
    iface.ka_seq = REKEY_SEQ - 5
    mesh.nodes[0].router.hello.nbrs[(ifname0, r1.me)].control_seen(REKEY_SEQ - 5)
    mesh.run_for(1.0)
    assert r1.hello.epoch != epoch and iface.ka_seq < 100  # a new epoch, the counter from 1 again
    assert mesh.nodes[0].router.hello.sessions[r1.me].epoch == r1.hello.epoch
    assert not any(ev.kind == "NeighbourDown" for n in mesh.nodes for ev in n.events)
    assert mesh.all_pairs_ok()


def _signed_lsa_of(mesh: SimMesh, origin: int, prefixes: tuple[str, ...], seq_ahead: int = 1) -> bytes:
    """A genuine LSA of a certified node (its own key signs it) with the given prefixes."""
    r = mesh.nodes[origin].router
    cur = r.lsdb.get(r.me).lsa
    return m.sign(m.Lsa(r.credential, r.origination.seq + seq_ahead, cur.links, prefixes), r.identity)


@pytest.mark.parametrize("prefix", ["0.0.0.0/0", "10.1.0.0/16", "fe80::/64", "ff02::/16", "::1/128", "::/128"])
def test_lsa_with_a_prefix_no_node_can_install_is_refused_at_decode(world, prefix):
    """IPv4 (the node installs IPv6 only), link-local, multicast, loopback, unspecified: a certified node
    announcing one changes nothing anywhere (before, one IPv4 prefix aborted the route batch)."""
    _attack(world, _signed_lsa_of(world, 2, ("2001:db8:2::/48", prefix), seq_ahead=50), "decode")


# ---- prefix ownership: who may announce what (docs/routing.md) ----------------------------------------
@pytest.fixture(scope="module")
def owners():
    from x0node.proto.trust import Role

    mesh = SimMesh(5, seed=33, grants={2: ("2001:db8::/32",), 3: ("2001:db8:3::/48",)}, roles={1: Role.GATEWAY})
    ring(mesh, 4)
    assert mesh.run_until_converged(1.0, nodes=[0, 1, 2, 3]) is not None
    mesh.nodes[3].router.set_prefixes(["2001:db8:3::/48"], mesh.now)
    mesh.nodes[2].router.set_prefixes(["2001:db8:5::/48"], mesh.now)
    mesh.run_for(1.0)
    return mesh


def _hijack(mesh: SimMesh, data: bytes, reason: str, count: int = 1, at: int = 0) -> None:
    """A certified node's genuine LSA: its topology is taken, the prefixes it may not announce are not,
    and the refusal is counted: node `at`'s routes (RIB and route table) do not change."""
    ifname, addr = neighbour_addr(mesh, at, 1)
    r = mesh.nodes[at].router
    before = sorted(r.routing.rib.installed.items()), sorted(mesh.nodes[at].routes.items())
    drops = dict(r.out.drops)
    mesh.inject(at, ifname, addr, data)
    mesh.run_for(0.5)
    assert (sorted(r.routing.rib.installed.items()), sorted(mesh.nodes[at].routes.items())) == before
    delta = {k: v - drops.get(k, 0) for k, v in r.out.drops.items() if v != drops.get(k, 0)}
    assert delta == {reason: count}, delta


def test_a_node_announces_what_its_certificate_grants(owners):
    for i in (0, 1):
        routes = owners.nodes[i].routes
        assert "2001:db8:3::/48" in routes and "2001:db8:5::/48" in routes
    assert owners.nodes[0].router.out.drops.get("prefix_not_owned", 0) == 0


@pytest.mark.parametrize(("prefixes", "why"), [
    (("2001:db8:5::/48", "::/0"), "the default route needs the gateway role"),
    (("2001:db8:5::/48", "2001:db8:3:1::/64"), "more specific than node 3's certified /48"),
    (("2001:db8:5::/48", "2001:db8:3::/48"), "node 3 holds the longer grant for it"),
    (("2001:db8:5::/48", "2001:db9::/32"), "outside the node's grant"),
    (("2001:db8:5::/48", "fd78:3074:6b14::/48"), "the mesh's own prefix"),
])
def test_a_certified_node_cannot_hijack_a_prefix(owners, prefixes, why):
    _hijack(owners, _signed_lsa_of(owners, 2, prefixes, seq_ahead=40), "prefix_not_owned")


def test_another_nodes_mesh_address_cannot_be_announced(owners):
    victim = f"{owners.nodes[3].router.identity.mesh_address}/128"
    _hijack(owners, _signed_lsa_of(owners, 2, ("2001:db8:5::/48", victim), seq_ahead=60), "prefix_not_owned")


def test_a_gateway_may_announce_the_default_route(owners):
    owners.nodes[1].router.set_prefixes(["::/0"], owners.now)
    owners.run_for(1.0)
    ifname, via, _ = owners.nodes[0].routes["::/0"]
    assert (ifname, via) == neighbour_addr(owners, 0, 1)


def test_a_raw_key_on_an_allow_list_announces_nothing():
    mesh = SimMesh(2, seed=35, certify=False)
    for n in mesh.nodes:
        n.router.trust.allowed_keys.update(x.router.identity.public_key for x in mesh.nodes)
    mesh.connect(0, 1)
    mesh.nodes[1].router.set_prefixes(["2001:db8:7::/48"], mesh.now)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    assert "2001:db8:7::/48" not in mesh.nodes[0].routes
    assert mesh.nodes[0].router.out.drops["prefix_not_owned"] >= 1


# ---- flooding abuse ------------------------------------------------------------------------------------
def _ring_world(seed: int) -> SimMesh:
    mesh = SimMesh(4, seed=seed, grants={0: ("2001:db8:10::/48",)})
    ring(mesh, 4)
    mesh.capture = []
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    return mesh


def test_one_origin_cannot_drive_verification_and_flooding_at_its_own_rate():
    """A certified node (or whoever holds its key) sends a new LSA every millisecond: each receiver
    verifies and re-floods a bounded number of them, and counts the rest."""
    from x0node.proto.flooding import RX_LSA_BURST

    mesh = _ring_world(51)
    r0 = mesh.nodes[0].router
    ifname, addr = neighbour_addr(mesh, 0, 1)
    installed, drops = r0.out.counters["lsa_installed"], r0.out.drops.get("limit_lsa_rate", 0)
    mesh.capture.clear()
    for k in range(60):
        mesh.inject(0, ifname, addr, _signed_lsa_of(mesh, 2, (), seq_ahead=100 + k))
        mesh.run_for(0.001)
    taken = r0.out.counters["lsa_installed"] - installed
    assert taken <= RX_LSA_BURST
    assert r0.out.drops["limit_lsa_rate"] - drops >= 60 - taken  # (plus copies flooded back by others)
    me2 = mesh.nodes[2].router.me
    flooded = [p for t, i, f, p in mesh.capture if i == 0 and p[1] == m.T_LSA and m.decode(p).origin == me2]
    assert len({m.decode(p).seq for p in flooded}) <= RX_LSA_BURST  # re-flooded at most what it took
    mesh.run_for(3.0)
    assert mesh.all_pairs_ok()


def test_a_copied_lsa_from_a_spoofed_address_does_not_stop_retransmission():
    """Only the neighbour's authenticated ACK ends retransmission: an attacker on the link who copies
    the LSA back from the neighbour's address must not make us stop sending it there."""
    mesh = _ring_world(53)
    r0 = mesh.nodes[0].router
    link = mesh.link_between(0, 1)
    ifname, addr = neighbour_addr(mesh, 0, 1)
    link.up = False  # node 1 does not hear node 0 for a moment
    r0.set_prefixes(["2001:db8:10::/48"], mesh.now)
    mesh.inject_flush(0)
    mesh.run_for(0.02)
    new = r0.lsdb.get(r0.me)
    key = (ifname, mesh.nodes[1].router.me)
    assert r0.flooding.pending[key][r0.me].seq == new.seq  # waiting for node 1's acknowledgement
    duplicates = r0.out.counters["lsa_duplicate"]
    mesh.inject(0, ifname, addr, new.raw)  # the copy, "from" node 1
    assert r0.flooding.pending[key][r0.me].seq == new.seq, "a copy from a spoofed source cleared it"
    assert r0.out.counters["lsa_duplicate"] == duplicates + 1
    link.up = True
    mesh.run_for(1.0)
    assert mesh.nodes[1].router.lsdb.get(r0.me).raw == new.raw  # retransmitted until node 1 had it
    assert "2001:db8:10::/48" in mesh.nodes[1].routes


def test_an_ack_from_the_neighbours_previous_session_is_refused():
    """Node 1 restarts (new session): node 0 sends it the whole database again. An ACK node 1 sent in
    its previous life, replayed now, must not stop that."""
    mesh = _ring_world(55)
    old_acks = _captured(mesh, 1, m.T_ACK, towards=0)
    assert old_acks
    r0 = mesh.nodes[0].router
    ident = mesh.nodes[1].router.identity
    new = Router(ident, TrustStore(list(mesh.trust_anchors)), mesh.config, random.Random(77), mesh.now)
    mesh.nodes[1].router = new
    for ln in mesh.links:
        if 1 in (ln.a, ln.b):
            new.add_interface(ln.a_if if ln.a == 1 else ln.b_if, mesh.now)
    mesh.inject_flush(1)
    ifname, addr = neighbour_addr(mesh, 0, 1)
    key = (ifname, ident.node_id)
    for _ in range(2000):  # until node 0 took the new session and queued the database for it
        mesh.run_for(0.0002)
        if r0.flooding.pending.get(key):
            break
    pending = dict(r0.flooding.pending[key])
    assert pending
    drops = dict(r0.out.drops)
    mesh.inject(0, ifname, addr, old_acks[-1])
    assert r0.flooding.pending[key] == pending, "an old session's ACK cleared retransmissions"
    delta = {k: v - drops.get(k, 0) for k, v in r0.out.drops.items() if v != drops.get(k, 0)}
    assert delta == {"bad_mac": 1}, delta
    mesh.run_for(1.0)
    assert mesh.all_pairs_ok()


# ---- revocation at run time --------------------------------------------------------------------------
def test_a_revoked_neighbours_adjacency_and_routes_are_gone_within_one_hello_interval():
    mesh = SimMesh(4, seed=57, grants={1: ("2001:db8:11::/48",)})
    ring(mesh, 4)
    mesh.nodes[1].router.set_prefixes(["2001:db8:11::/48"], mesh.now)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(1.0)
    r0, r1 = mesh.nodes[0].router, mesh.nodes[1].router
    ifname, via1 = neighbour_addr(mesh, 0, 1)
    routes = mesh.nodes[0].routes
    assert "2001:db8:11::/48" in routes and any(v == via1 for _, v, _ in routes.values())
    crl = mesh.anchor.revoke([r1.me], 1, 0)
    assert r0.apply_revocations(crl, mesh.now) is None
    mesh.inject_flush(0)
    mesh.run_for(RouterConfig().hello_interval_s)
    assert (ifname, r1.me) not in r0.hello.nbrs
    routes = mesh.nodes[0].routes
    assert f"{r1.identity.mesh_address}/128" not in routes and "2001:db8:11::/48" not in routes
    assert not any(v == via1 for _, v, _ in routes.values())  # nothing goes through it either
    assert all(r.dest in routes for r in r0.routes())  # the core claims only what the table holds
    # node 2 (behind node 1) is reached the other way round
    assert routes[f"{mesh.nodes[2].router.identity.mesh_address}/128"][1] == neighbour_addr(mesh, 0, 3)[1]
    assert r0.stats().counters["revocations_applied"] == 1
    # an older or foreign list changes nothing and is counted
    assert r0.apply_revocations(mesh.anchor.revoke([], 1, 0), mesh.now) == "not_newer"
    assert r0.apply_revocations(ROGUE_ANCHOR.revoke([], 9, 0), mesh.now) == "bad_signature"
    assert r0.trust.is_revoked(r1.me) and r0.stats().counters["revocations_refused"] == 2


def _probe_state(mesh: SimMesh, at: int, peer: int) -> tuple:
    r = mesh.nodes[at].router
    n = r.hello.nbrs[(neighbour_addr(mesh, at, peer)[0], mesh.nodes[peer].router.me)]
    ps = n.probe
    return (state_of(mesh, at), tuple(ps.samples), ps.estimate, ps.pending, ps.rx_train, ps.rx_next,
            n.throughput_bps, n.throughput_source)


def _probe_attack(mesh: SimMesh, data: bytes, reason: str, at: int = 0, peer: int = 1, src: str | None = None) -> None:
    before = _probe_state(mesh, at, peer)
    _attack(mesh, data, reason, at=at, src_peer=peer, src=src)
    assert _probe_state(mesh, at, peer) == before, reason


def test_probes_and_reports_are_authenticated_and_never_accepted_twice():
    mesh = _pair_world()  # captured from the start: the learning trains of both nodes
    mesh.run_for(2.0)
    probes = _captured(mesh, 1, m.T_PROBE, towards=0)
    reports = _captured(mesh, 1, m.T_PROBE_REPORT, towards=0)
    assert len(probes) >= 9 and len(reports) >= 3
    # replayed: every probe and report node 1 sent node 0 was used once already
    for data in probes[:3]:
        _probe_attack(mesh, data, "replay")
    _probe_attack(mesh, reports[0], "stale")  # node 0 no longer waits for that train
    # tampered, reflected, or from elsewhere
    _probe_attack(mesh, probes[-1][:-1] + bytes([probes[-1][-1] ^ 1]), "bad_mac")
    mine = _captured(mesh, 0, m.T_PROBE, towards=1)[-1]
    _probe_attack(mesh, mine, "bad_mac")  # our own train sent back to us
    _probe_attack(mesh, probes[-1], "unknown_sender", src="fe80::dead")
    r1 = mesh.nodes[1].router
    key = r1.hello.nbrs[(neighbour_addr(mesh, 1, 0)[0], mesh.nodes[0].router.me)].key
    forged = m.seal_report(m.ProbeReport(0x7FFFFFFF, 1), bytes(32), r1.me, mesh.nodes[0].router.me)
    _probe_attack(mesh, forged, "bad_mac")  # a report under another key: no slow link on its word
    # a certified neighbour sending trains faster than a receiver measures them
    n0 = mesh.nodes[0].router.hello.nbrs[(neighbour_addr(mesh, 0, 1)[0], r1.me)]
    train = n0.probe.rx_train
    head = m.seal_probe(m.Probe(train + 1, 0, 3, 600), key, r1.me, mesh.nodes[0].router.me)
    mesh.inject(0, neighbour_addr(mesh, 0, 1)[0], neighbour_addr(mesh, 0, 1)[1], head)
    again = m.seal_probe(m.Probe(train + 2, 0, 3, 600), key, r1.me, mesh.nodes[0].router.me)
    _attack(mesh, again, "limit_probe_rate", at=0, src_peer=1)
