import pytest

from x0node.proto import messages as m
from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import (
    MAX_HELLO_NEIGHBOURS,
    MAX_LINK_THROUGHPUT_KBPS,
    MAX_LSA_NEIGHBOURS,
    MAX_PROBE_TRAIN_PACKETS,
    WIRE_VERSION,
)
from x0node.proto.trust import Credential, TrustAnchor
from x0node.proto.wire import DecodeError

ANCHOR = TrustAnchor.from_seed(b"\xaa" * 32)
A = Identity.from_seed(b"\x01" * 32)
A = A.with_certificate(ANCHOR.certify(A.public_key))
CRED = Credential(A.public_key, A.certificate)
NID = b"\x10" * 16


def _round_trip(msg):
    data = m.sign(msg, A)
    back = m.decode(data)
    assert back == msg
    assert m.encode(back) == data
    payload, sig = m.signed_bytes(data)
    assert verify(A.public_key, payload, sig)
    return data


def test_hello_round_trip_and_signature():
    h = m.Hello(CRED, 7, 99, 123456, 100, (m.HelloNeighbour(NID, 5, 3),))
    data = _round_trip(h)
    assert m.decode(data).sender == A.node_id
    bad = bytearray(data)
    bad[-70] ^= 1
    payload, sig = m.signed_bytes(bytes(bad))
    assert not verify(A.public_key, payload, sig)


def test_lsa_ack_withdraw_round_trip():
    lsa = m.Lsa(CRED, 3, (m.LsaLink(NID, 120, 1),), ("2001:db8:1::/48", "fd00::/64"))
    data = _round_trip(lsa)
    assert m.decode(data).origin == A.node_id
    _round_trip(m.Withdraw(A.node_id, 10))


def test_ack_mac_binds_the_session_key_sender_and_receiver():
    ack = m.Ack(A.node_id, 9, ((NID, 3), (A.node_id, 4)))
    key = b"s" * 32
    data = m.seal_ack(ack, key, NID)
    assert len(data) == 2 + 16 + 4 + 1 + 2 * 20 + m.MAC_BYTES  # no signature: 52 bytes less
    back = m.decode(data)
    assert back == ack and m.encode(back) == data and m.ack_mac_ok(key, A.node_id, NID, back)
    assert not m.ack_mac_ok(b"t" * 32, A.node_id, NID, back)  # another session's key
    assert not m.ack_mac_ok(key, A.node_id, A.node_id, back)  # another receiver
    tampered = m.decode(data[:-m.MAC_BYTES - 1] + bytes([data[-m.MAC_BYTES - 1] ^ 1]) + data[-m.MAC_BYTES:])
    assert not m.ack_mac_ok(key, A.node_id, NID, tampered)


def test_keepalive_round_trip_and_mac_binding():
    key = b"k" * 32
    head = m.keepalive_header(5, 777, 1)
    mac = m.keepalive_mac(key, A.node_id, NID, 5, head, 1, 2)
    ka = m.Keepalive(5, 777, (m.KeepaliveEntry(1, 2, mac),))
    data = ka.encode()
    assert len(data) == m.KEEPALIVE_HEADER_BYTES + m.KEEPALIVE_ENTRY_BYTES == 27
    back = m.decode(data)
    assert back == ka and back.header() == head
    # the MAC binds direction, receiver, header and the full 32-bit sequence number
    assert m.keepalive_mac(key, NID, A.node_id, 5, head, 1, 2) != mac
    assert m.keepalive_mac(key, A.node_id, NID, 5, m.keepalive_header(6, 777, 1), 1, 2) != mac
    assert m.keepalive_mac(key, A.node_id, NID, 5 + (1 << 16), head, 1, 2) != mac  # same low 16 bits


_V = bytes((WIRE_VERSION,))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _V,
        bytes((WIRE_VERSION + 1, 2)) + b"\x00" * 7,  # another version
        _V + b"\x09",  # unknown type
        _V + b"\x02\x00\x01\x00\x00\x00\x01\x01",  # keepalive claims 1 entry, has none
        _V + b"\x02\x00\x01\x00\x00\x00\x01\x00\x00",  # trailing byte
        _V + b"\x02\x00\x01\x00\x00\x00\x01" + bytes((MAX_HELLO_NEIGHBOURS + 1,)),
    ],
)
def test_malformed_raise_decode_error(data):
    with pytest.raises(DecodeError):
        m.decode(data)


def test_lsa_field_validation():
    good = m.sign(m.Lsa(CRED, 3, (m.LsaLink(NID, 120, 1),), ("2001:db8:1::/48",)), A)
    body = bytearray(good)
    # quality byte of the first link is right after the credential, seq, count, node id and cost
    qpos = 2 + len(CRED.encode()) + 4 + 1 + 16 + 2
    body[qpos] = 9
    with pytest.raises(DecodeError):
        m.decode(bytes(body))
    body = bytearray(good)
    body[qpos - 2 : qpos] = b"\x00\x00"  # zero cost
    with pytest.raises(DecodeError):
        m.decode(bytes(body))
    net = bytes.fromhex("20010db80001") + bytes(10)
    host_bits = m.Lsa(CRED, 3, (), ("2001:db8:1::/48",)).body().replace(net, net[:-1] + b"\x01")
    with pytest.raises(DecodeError):
        m.decode(host_bits + b"\x00" * 64)
    for prefix in ("10.1.0.0/24", "0.0.0.0/0", "fe80::/64", "ff00::/8", "::1/128", "::ffff:0:0/96"):
        with pytest.raises(DecodeError):  # never routed by the mesh: refused with the whole LSA
            m.decode(m.sign(m.Lsa(CRED, 3, (), (prefix,)), A))


def test_oversized_message_refused_on_sign():
    many = tuple(m.LsaLink(bytes([i]) * 16, 1, 0, MAX_LINK_THROUGHPUT_KBPS) for i in range(MAX_LSA_NEIGHBOURS))
    prefixes = tuple(f"fd00:{i}::/64" for i in range(8))
    data = m.sign(m.Lsa(CRED, 1, many, prefixes), A)  # the largest LSA fits one datagram
    assert m.decode(data).links == many
    grants = tuple(f"2001:db8:{i}::/48" for i in range(8))  # ... even with a certificate granting 8 prefixes
    big = Credential(A.public_key, ANCHOR.certify(A.public_key, prefixes=grants))
    assert m.decode(m.sign(m.Lsa(big, 1, many, prefixes), A)).credential == big


def test_duplicate_neighbours_rejected():
    dup = m.sign(m.Lsa(CRED, 3, (m.LsaLink(NID, 1, 0), m.LsaLink(NID, 2, 0)), ()), A)
    with pytest.raises(DecodeError):
        m.decode(dup)
    dup = m.sign(m.Hello(CRED, 1, 1, 1, 100, (m.HelloNeighbour(NID, 0, 0),) * 2), A)
    with pytest.raises(DecodeError):
        m.decode(dup)


def test_lsa_link_throughput_round_trip_and_bound():
    lsa = m.Lsa(CRED, 3, (m.LsaLink(NID, 120, 1, 54_321), m.LsaLink(b"\x11" * 16, 99, 0, 0)), ())
    assert m.decode(_round_trip(lsa)).links[0].throughput_kbps == 54_321
    body = bytearray(m.Lsa(CRED, 3, (m.LsaLink(NID, 120, 1, 5),), ()).body())
    tpos = 2 + len(CRED.encode()) + 4 + 1 + 16 + 2 + 1  # the first link's throughput, after its class
    body[tpos : tpos + 4] = (MAX_LINK_THROUGHPUT_KBPS + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError):
        m.decode(bytes(body) + bytes(64))
    too_many = tuple(m.LsaLink(bytes([i]) * 16, 1, 0) for i in range(MAX_LSA_NEIGHBOURS + 1))
    with pytest.raises(DecodeError):
        m.decode(m.Lsa(CRED, 1, too_many, ()).body() + bytes(64))


def test_probe_and_report_macs_bind_session_direction_and_content():
    key = b"k" * 32
    data = m.seal_probe(m.Probe(7, 1, 3, 300), key, A.node_id, NID)
    assert len(data) == 300
    back = m.decode(data)
    assert back == m.Probe(7, 1, 3, 300) and m.encode(back) == data
    assert m.probe_mac_ok(key, A.node_id, NID, data)
    assert not m.probe_mac_ok(key, NID, A.node_id, data)  # reflected back
    assert not m.probe_mac_ok(b"j" * 32, A.node_id, NID, data)  # another session
    other = m.seal_probe(m.Probe(8, 1, 3, 300), key, A.node_id, NID)
    assert not m.probe_mac_ok(key, A.node_id, NID, data[:-m.MAC_BYTES] + other[-m.MAC_BYTES:])
    rep = m.seal_report(m.ProbeReport(7, 10_000), key, NID, A.node_id)
    r = m.decode(rep)
    assert r == m.ProbeReport(7, 10_000) and m.encode(r) == rep and m.report_mac_ok(key, NID, A.node_id, r)
    assert not m.report_mac_ok(key, A.node_id, NID, r)
    with pytest.raises(ValueError):
        m.seal_probe(m.Probe(1, 0, 3, m.PROBE_MIN_BYTES - 1), key, A.node_id, NID)
    with pytest.raises(ValueError):
        m.seal_probe(m.Probe(1, 0, 3, 1233), key, A.node_id, NID)


@pytest.mark.parametrize(
    "data",
    [
        _V + b"\x06" + b"\x00\x00\x00\x01" + b"\x03\x03" + bytes(12),  # index == count
        _V + b"\x06" + b"\x00\x00\x00\x01" + b"\x00\x01" + bytes(12),  # a train of one
        _V + b"\x06" + b"\x00\x00\x00\x01" + bytes((0, MAX_PROBE_TRAIN_PACKETS + 1)) + bytes(12),
        _V + b"\x06" + b"\x00\x00\x00\x01" + b"\x00\x03" + b"\x01" + bytes(12),  # padding not zero
        _V + b"\x06" + b"\x00\x00\x00\x01" + b"\x00\x03" + bytes(11),  # no room for the MAC
        _V + b"\x07" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00" + bytes(12),  # zero rate
        _V + b"\x07" + b"\x00\x00\x00\x01" + (MAX_LINK_THROUGHPUT_KBPS + 1).to_bytes(4, "big") + bytes(12),
        _V + b"\x07" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01" + bytes(13),  # trailing byte
    ],
)
def test_malformed_probes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        m.decode(data)
