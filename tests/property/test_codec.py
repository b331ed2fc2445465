"""Every codec round-trips, and arbitrary bytes raise only DecodeError."""

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from x0node.proto import messages as m
from x0node.proto.identity import Identity
from x0node.proto.prefixes import unroutable
from x0node.proto.protocol import (
    MAX_ACK_ENTRIES,
    MAX_DATAGRAM_BYTES,
    MAX_HELLO_NEIGHBOURS,
    MAX_LINK_THROUGHPUT_KBPS,
    MAX_LSA_NEIGHBOURS,
    MAX_LSA_PREFIXES,
    MAX_PROBE_TRAIN_PACKETS,
)
from x0node.proto.trust import Certificate, Credential, RevocationList, Role, TrustAnchor
from x0node.proto.wire import DecodeError

ANCHOR = TrustAnchor.from_seed(b"\x55" * 32)
IDENT = Identity.from_seed(b"\x01" * 32)
IDENT = IDENT.with_certificate(ANCHOR.certify(IDENT.public_key))
CRED_LSA = Credential(IDENT.public_key, IDENT.certificate)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
node_ids = st.binary(min_size=16, max_size=16)
credentials = st.sampled_from(
    [Credential(IDENT.public_key, IDENT.certificate), Credential(IDENT.public_key, None)]
)


@st.composite
def prefixes(draw):
    """IPv6 prefixes the mesh may route (prefixes.unroutable refuses the rest at decode)."""
    plen = draw(st.integers(0, 128))
    addr = draw(st.integers(0, 2**128 - 1))
    net = ipaddress.IPv6Network((addr, plen), strict=False)
    assume(unroutable(net) is None)
    return str(net)


hellos = st.builds(
    m.Hello,
    credentials,
    u32,
    u32,
    u32,
    st.integers(1, 0xFFFF),
    st.lists(
        st.builds(m.HelloNeighbour, node_ids, u32, u16),
        max_size=MAX_HELLO_NEIGHBOURS,
        unique_by=lambda e: e.node_id,
    ).map(tuple),
)
lsas = st.builds(
    m.Lsa,
    credentials,
    u32,
    st.lists(
        st.builds(m.LsaLink, node_ids, st.integers(1, 0xFFFF), st.integers(0, 4),
                  st.integers(0, MAX_LINK_THROUGHPUT_KBPS)),
        max_size=MAX_LSA_NEIGHBOURS,
        unique_by=lambda e: e.node_id,
    ).map(tuple),
    st.lists(prefixes(), max_size=MAX_LSA_PREFIXES).map(tuple),
)
acks = st.builds(
    m.Ack, node_ids, u32, st.lists(st.tuples(node_ids, u32), max_size=MAX_ACK_ENTRIES).map(tuple)
)
withdraws = st.builds(m.Withdraw, node_ids, u32)
keepalives = st.builds(
    m.Keepalive,
    u16,
    u32,
    st.lists(
        st.builds(m.KeepaliveEntry, u32, u16, st.binary(min_size=m.MAC_BYTES, max_size=m.MAC_BYTES)),
        max_size=MAX_HELLO_NEIGHBOURS,
    ).map(tuple),
)



@st.composite
def probes(draw):
    count = draw(st.integers(2, MAX_PROBE_TRAIN_PACKETS))
    return m.Probe(draw(u32), draw(st.integers(0, count - 1)), count,
                   draw(st.integers(m.PROBE_MIN_BYTES, MAX_DATAGRAM_BYTES)))


reports = st.builds(m.ProbeReport, u32, st.integers(1, MAX_LINK_THROUGHPUT_KBPS))
keys = st.binary(min_size=32, max_size=32)


@settings(max_examples=150, deadline=None)
@given(probes(), reports, keys, node_ids, node_ids)
def test_probe_and_report_round_trip_and_mac(probe, report, key, a, b):
    data = m.seal_probe(probe, key, a, b)
    assert len(data) == probe.size
    back = m.decode(data)
    assert back == probe and m.encode(back) == data and m.probe_mac_ok(key, a, b, data)
    assert a == b or not m.probe_mac_ok(key, b, a, data)
    raw = m.seal_report(report, key, a, b)
    got = m.decode(raw)
    assert got == report and m.encode(got) == raw and m.report_mac_ok(key, a, b, got)
    assert a == b or not m.report_mac_ok(key, b, a, got)


@settings(max_examples=150, deadline=None)
@given(acks, st.binary(min_size=32, max_size=32), node_ids)
def test_ack_round_trip_and_session_mac(ack, key, receiver):
    data = m.seal_ack(ack, key, receiver)
    back = m.decode(data)
    assert back == ack and m.encode(back) == data
    assert m.ack_mac_ok(key, ack.sender, receiver, back)
    assert not m.ack_mac_ok(bytes(32) if key != bytes(32) else b"\x01" * 32, ack.sender, receiver, back)


@settings(max_examples=150, deadline=None)
@given(st.one_of(hellos, lsas, withdraws))
def test_signed_messages_round_trip(msg):
    data = m.sign(msg, IDENT)
    assert len(data) <= MAX_DATAGRAM_BYTES
    back = m.decode(data)
    assert back == msg
    assert m.encode(back) == data


@settings(max_examples=150, deadline=None)
@given(keepalives)
def test_keepalive_round_trip(ka):
    data = ka.encode()
    assert m.decode(data) == ka
    assert m.encode(m.decode(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Role)), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32))
def test_certificate_round_trip(role, not_after, pk):
    cert = ANCHOR.certify(pk, role, not_after)
    assert Certificate.decode(cert.encode()) == cert


@settings(max_examples=60, deadline=None)
@given(u32, st.integers(0, 2**64 - 1), st.lists(node_ids, max_size=40))
def test_revocation_list_round_trip(serial, issued, ids):
    crl = ANCHOR.revoke(ids, serial, issued)
    assert RevocationList.decode(crl.encode()) == crl


def _only_decode_error(fn, data):
    try:
        fn(data)
    except DecodeError:
        pass


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM_BYTES + 10))
def test_arbitrary_bytes_raise_only_decode_error(data):
    _only_decode_error(m.decode, data)
    _only_decode_error(Certificate.decode, data)
    _only_decode_error(RevocationList.decode, data)


def _wire(msg) -> bytes:
    if isinstance(msg, m.Probe):
        return m.seal_probe(msg, bytes(32), IDENT.node_id, bytes(16))
    if isinstance(msg, m.ProbeReport):
        return m.seal_report(msg, bytes(32), IDENT.node_id, bytes(16))
    return msg.encode() if isinstance(msg, m.Keepalive) else m.sign(msg, IDENT)


@settings(max_examples=400, deadline=None)
@given(st.one_of(hellos, lsas, acks, withdraws, keepalives, probes(), reports), st.data())
def test_mutated_valid_messages_raise_only_decode_error(msg, data):
    raw = bytearray(_wire(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    _only_decode_error(m.decode, bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM_BYTES))
def test_router_never_raises_on_remote_input(data):
    import random

    from x0node.proto.router import Router
    from x0node.proto.trust import TrustStore

    r = Router(IDENT, TrustStore([ANCHOR.public_key]), None, random.Random(1), 0.0)
    r.add_interface("m0", 0.0)
    r.receive("m0", "fe80::1", data, 0.01)
    r.receive("m0", "fe80::1", bytes([1]) + data, 0.02)
    r.receive("m0", "fe80::1", bytes([1, 3]) + data, 0.03)
    assert r.hello.nbrs == {} and len(r.lsdb) == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 32), st.integers(0, 2**32 - 1), st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_unroutable_prefixes_never_decode(plen4, addr4, plen6, addr6):
    """An IPv4 prefix, or an IPv6 one the mesh never routes, makes the whole LSA a DecodeError."""
    v4 = str(ipaddress.IPv4Network((addr4, plen4), strict=False))
    with pytest.raises(DecodeError):
        m.decode(m.sign(m.Lsa(CRED_LSA, 1, (), (v4,)), IDENT))
    v6 = ipaddress.IPv6Network((addr6, plen6), strict=False)
    data = m.sign(m.Lsa(CRED_LSA, 1, (), (str(v6),)), IDENT)
    if unroutable(v6) is None:
        assert m.decode(data).prefixes == (str(v6),)
    else:
        with pytest.raises(DecodeError):
            m.decode(data)
