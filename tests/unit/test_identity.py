import ipaddress

from x0node.proto.identity import Identity, mesh_address_of, node_id_of, verify
from x0node.proto.protocol import MESH_ULA_PREFIX


def test_ids_and_mesh_address_derive_from_key():
    a = Identity.from_seed(b"\x01" * 32)
    b = Identity.from_seed(b"\x01" * 32)
    c = Identity.from_seed(b"\x02" * 32)
    assert a.node_id == b.node_id == node_id_of(a.public_key)
    assert a.node_id != c.node_id and len(a.node_id) == 16
    addr = ipaddress.IPv6Address(a.mesh_address)
    assert addr in ipaddress.IPv6Network(MESH_ULA_PREFIX)
    assert a.mesh_address == mesh_address_of(a.node_id)
    assert addr.packed[6:16] == a.node_id[:10]


def test_sign_and_verify_with_bad_inputs():
    a = Identity.from_seed(b"\x03" * 32)
    sig = a.sign(b"hello")
    assert verify(a.public_key, b"hello", sig)
    assert not verify(a.public_key, b"hellO", sig)
    assert not verify(a.public_key, b"hello", b"\x00" * 64)
    assert not verify(b"short", b"hello", sig)
    assert not verify(a.public_key, b"hello", b"short")
    assert not verify(b"\xff" * 32, b"hello", sig)  # not a valid point: no exception


def test_pairwise_key_agrees_and_binds_epochs():
    a = Identity.from_seed(b"\x04" * 32)
    b = Identity.from_seed(b"\x05" * 32)
    k_ab = a.pairwise_key(b.public_key, 11, 22)
    k_ba = b.pairwise_key(a.public_key, 22, 11)
    assert k_ab == k_ba and len(k_ab) == 32
    assert a.pairwise_key(b.public_key, 11, 23) != k_ab
    assert a.pairwise_key(b"\xff" * 32, 1, 1) is None  # not a curve point: None, no exception
    assert a.pairwise_key(b"\x00" * 32, 1, 1) is None  # small-order point


def test_with_certificate_keeps_key():
    a = Identity.from_seed(b"\x06" * 32)
    b = a.with_certificate("cert")
    assert b.node_id == a.node_id and b.certificate == "cert"
