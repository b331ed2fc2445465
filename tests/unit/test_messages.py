import pytest

from x0node.proto import messages as m
from x0node.proto.identity import Identity, verify
from x0node.proto.protocol import MAX_HELLO_NEIGHBOURS, WIRE_VERSION
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
    many = tuple(m.LsaLink(bytes([i]) * 16, 1, 0) for i in range(40))
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
