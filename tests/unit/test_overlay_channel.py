"""x0node/overlay/channel.py: handshake, sessions, replay, rekey and trust, stepped in time (no I/O)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from x0node.overlay import channel as ch
from x0node.overlay import handshake as hs
from x0node.proto.identity import Identity
from x0node.proto.trust import Credential, TrustAnchor, TrustStore

ANCHOR = TrustAnchor.from_seed(bytes(range(32)))


def addr_key(cred: Credential) -> bytes:
    from x0node.proto.identity import mesh_address_of

    return ipaddress.IPv6Address(mesh_address_of(cred.node_id)).packed


def node(seed: int, anchor: TrustAnchor = ANCHOR) -> Identity:
    ident = Identity.from_seed(bytes([seed]) * 32)
    return ident.with_certificate(anchor.certify(ident.public_key))


def chans(ident: Identity, seed: int, purpose: bytes = hs.PURPOSE_E2E, trust: TrustStore | None = None) -> ch.Channels:
    return ch.Channels(ident, trust or TrustStore(anchors=[ANCHOR.public_key]), random.Random(seed), 0.0, purpose,
                       addr_key)


def key(ident: Identity) -> bytes:
    return ipaddress.IPv6Address(ident.mesh_address).packed


@pytest.fixture
def pair():
    a, b = node(1), node(2)
    return a, b, chans(a, 1), chans(b, 2)


def exchange(src: ch.Channels, dst: ch.Channels, src_key: bytes, now: float) -> list[tuple[bytes, bytes]]:
    """Deliver everything src wants to send to dst; return what dst handed up."""
    got = []
    for _, dgram in src.datagrams_to_send():
        r = dst.receive(dgram, now, src_key)
        if r is not None:
            got.append(r)
    return got


def establish(pair, now: float = 0.0) -> None:
    a, b, ca, cb = pair
    assert ca.send(key(b), b"hello", now) is None  # held until the handshake finishes
    exchange(ca, cb, key(a), now)  # INIT
    exchange(cb, ca, key(b), now)  # RESP
    assert exchange(ca, cb, key(a), now) == [(key(a), b"hello")]  # the held packet, released


def test_handshake_releases_held_packet_and_both_directions_work(pair):
    a, b, ca, cb = pair
    establish(pair)
    assert ca.established(key(b), 0.1) and cb.established(key(a), 0.1)
    d = ca.seal(key(b), b"x" * 100, 0.2)
    assert d is not None and b"x" * 100 not in d
    assert cb.receive(d, 0.2, key(a)) == (key(a), b"x" * 100)
    back = cb.seal(key(a), b"reply", 0.3)
    assert ca.receive(back, 0.3, key(b)) == (key(b), b"reply")
    ev = ca.next_event()
    assert isinstance(ev, ch.SessionUp) and ev.node_id == b.node_id_hex and ev.initiator


def test_replayed_and_tampered_data_refused(pair):
    a, b, ca, cb = pair
    establish(pair)
    d = ca.seal(key(b), b"payload", 1.0)
    assert cb.receive(d, 1.0, key(a)) is not None
    assert cb.receive(d, 1.1, key(a)) is None
    assert cb.drops["replay"] == 1
    d2 = bytearray(ca.seal(key(b), b"payload", 1.2))
    d2[-1] ^= 1
    assert cb.receive(bytes(d2), 1.2, key(a)) is None
    assert cb.drops["bad_mac"] == 1
    # the tampered counter did not enter the window: the genuine one is still accepted once
    assert cb.receive(ca.seal(key(b), b"ok", 1.3), 1.3, key(a)) == (key(a), b"ok")


def test_data_from_wrong_source_address_refused(pair):
    a, b, ca, cb = pair
    establish(pair)
    d = ca.seal(key(b), b"p", 1.0)
    assert cb.receive(d, 1.0, key(node(9))) is None
    assert cb.drops["wrong_source"] == 1


def test_uncertified_initiator_changes_nothing():
    foreign = TrustAnchor.from_seed(bytes([7]) * 32)
    x, b = node(3, foreign), node(2)
    cx, cb = chans(x, 3), chans(b, 2)
    cx.send(key(b), b"intrude", 0.0)
    exchange(cx, cb, key(x), 0.0)
    assert cb.drops["uncertified"] == 1
    assert cb.peers == {} and cb.by_index == {} and cb.datagrams_to_send() == []


def test_signature_over_other_purpose_refused(pair):
    a, b, ca, _ = pair
    link_b = chans(b, 2, purpose=hs.PURPOSE_LINK)
    ca.send(key(b), b"p", 0.0)
    exchange(ca, link_b, key(a), 0.0)
    assert link_b.drops["bad_signature"] == 1 and link_b.peers == {}


def test_revoked_peer_loses_sessions_and_cannot_handshake(pair):
    a, b, ca, cb = pair
    establish(pair)
    crl = ANCHOR.revoke([a.node_id], serial=1, issued_at=0)
    assert cb.trust.install_revocations(crl) is None
    cb.tick(ch.TRUST_RECHECK_S * 2)
    assert not cb.established(key(a), ch.TRUST_RECHECK_S * 2)
    downs = [e for e in iter(cb.next_event, None) if isinstance(e, ch.SessionDown)]
    assert downs and downs[0].reason == "revoked"
    ca.close(key(b), "test")
    ca.send(key(b), b"again", 20.0)
    exchange(ca, cb, key(a), 20.0)
    assert cb.drops["revoked"] >= 2 and key(a) not in cb.peers


def test_rekey_keeps_traffic_flowing_and_old_session_decrypts(pair):
    a, b, ca, cb = pair
    establish(pair)
    old = ca.peers[key(b)].current
    t = ch.REKEY_AFTER_S * 1.2
    in_flight = ca.seal(key(b), b"before", 50.0)
    assert ca.seal(key(b), b"due", t) is None  # fast path defers to send() when a rekey is due
    d = ca.send(key(b), b"due", t)
    assert d is not None  # still carried by the old session
    inits = ca.datagrams_to_send()
    assert len(inits) == 1 and inits[0][1][0] == hs.T_INIT
    for _, dg in inits:
        cb.receive(dg, t, key(a))
    exchange(cb, ca, key(b), t)  # RESP -> new session + keepalive to confirm
    assert ca.peers[key(b)].current is not old
    exchange(ca, cb, key(a), t)
    assert cb.peers[key(a)].current.my_index != old.peer_index
    assert cb.receive(d, t, key(a)) == (key(a), b"due")
    assert cb.receive(in_flight, t, key(a)) == (key(a), b"before")
    assert ca.counters["sessions_established"] == 2


def test_sessions_expire_after_reject_time(pair):
    a, b, ca, cb = pair
    establish(pair)
    d = ca.seal(key(b), b"late", 1.0)
    cb.tick(ch.REJECT_AFTER_S + 1)
    assert cb.receive(d, ch.REJECT_AFTER_S + 1, key(a)) is None
    assert cb.drops["unknown_index"] == 1


def test_replayed_init_cannot_take_over_session(pair):
    a, b, ca, cb = pair
    ca.send(key(b), b"first", 0.0)
    init = ca.datagrams_to_send()[0][1]
    ca.receive(init, 0.0)  # sanity: a node never answers itself
    cb.receive(init, 0.0, key(a))
    exchange(cb, ca, key(b), 0.0)
    exchange(ca, cb, key(a), 0.0)
    current = cb.peers[key(a)].current
    cb.receive(init, 1.0, key(a))
    assert cb.drops["replay"] == 1
    # after the stamp memory, the replay gets a RESP but the confirmed session stays in use
    t = ch.STAMP_MEMORY_S + 10
    cb.receive(init, t, key(a))
    assert cb.peers[key(a)].current is current and cb.peers[key(a)].next is not None


def test_handshake_timeout_drops_held_packets_and_backs_off(pair):
    a, b, ca, _ = pair
    for i in range(3):
        ca.send(key(b), b"p%d" % i, 0.0)
    t = 0.0
    for _ in range(ch.HANDSHAKE_ATTEMPTS + 1):
        t = ca.next_timer()
        ca.tick(t)
    assert ca.drops["handshake_timeout"] == 3
    assert ca.counters["handshakes_initiated"] == ch.HANDSHAKE_ATTEMPTS
    assert ca.send(key(b), b"more", t + 0.1) is None and ca.drops["backoff"] == 1


def test_held_packets_bounded(pair):
    a, b, ca, _ = pair
    for i in range(ch.MAX_HELD_PER_PEER + 5):
        ca.send(key(b), b"%d" % i, 0.0)
    assert ca.drops["held_overflow"] == 5


@pytest.mark.parametrize("junk", [b"", b"\x01", b"\x02" + bytes(300), b"\x03" + bytes(40), b"\x09hello", bytes(2000)])
def test_junk_never_raises_and_changes_nothing(pair, junk):
    _, _, _, cb = pair
    assert cb.receive(junk, 0.0, b"\x00" * 16) is None
    assert cb.peers == {} and cb.by_index == {}
    assert sum(cb.drops.values()) == 1


def test_link_purpose_keys_by_node_id():
    a, b = node(4), node(5)

    def by_id(cred: Credential) -> bytes:
        return cred.node_id

    la = ch.Channels(a, TrustStore(anchors=[ANCHOR.public_key]), random.Random(4), 0.0, hs.PURPOSE_LINK, by_id,
                     key_is_node_id=True)
    lb = ch.Channels(b, TrustStore(anchors=[ANCHOR.public_key]), random.Random(5), 0.0, hs.PURPOSE_LINK, by_id,
                     key_is_node_id=True)
    la.connect(b.node_id, 0.0)
    exchange(la, lb, None, 0.0)
    exchange(lb, la, None, 0.0)
    exchange(la, lb, None, 0.0)  # the confirming keepalive
    assert la.established(b.node_id, 0.1) and lb.established(a.node_id, 0.1)
    assert lb.counters["keepalives_rx"] == 1


def test_restarted_peer_with_clock_set_back_gets_a_session_again(pair):
    a, b, ca, cb = pair
    establish(pair)
    restarted = chans(a, 99)  # same key, stamps start from scratch (no wall clock)
    t = 10.0
    restarted.send(key(b), b"again", t)
    exchange(restarted, cb, key(a), t)
    exchange(cb, restarted, key(b), t)
    assert exchange(restarted, cb, key(a), t) == [(key(a), b"again")]
    assert cb.drops["replay"] == 0
