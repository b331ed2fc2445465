import pytest

from x0node.proto.identity import Identity
from x0node.proto.trust import Certificate, Credential, RevocationList, Role, TrustAnchor, TrustStore
from x0node.proto.wire import DecodeError

ANCHOR = TrustAnchor.from_seed(b"\xaa" * 32)
OTHER = TrustAnchor.from_seed(b"\xbb" * 32)
NODE = Identity.from_seed(b"\x01" * 32)


def test_certificate_accepted_and_round_trips():
    cert = ANCHOR.certify(NODE.public_key, Role.GATEWAY, 0)
    assert Certificate.decode(cert.encode()) == cert
    store = TrustStore([ANCHOR.public_key])
    assert store.check(Credential(NODE.public_key, cert)) is None
    assert cert.node_id == NODE.node_id


def test_certificate_grants_prefixes_under_the_anchors_signature():
    cert = ANCHOR.certify(NODE.public_key, Role.NODE, 0, ("2001:db8::/32", "2001:DB8:FFFF::/48"))
    assert cert.prefixes == ("2001:db8::/32", "2001:db8:ffff::/48")
    assert Certificate.decode(cert.encode()) == cert
    store = TrustStore([ANCHOR.public_key])
    assert store.check(Credential(NODE.public_key, cert)) is None
    widened = Certificate(cert.role, 0, cert.public_key, cert.signature, ("::/0",))
    assert store.check(Credential(NODE.public_key, widened)) == "uncertified"  # the grant is signed
    for bad in (("10.0.0.0/8",), ("fe80::/64",), ("ff00::/8",), ("::1/128",), ("2001:db8::1/64",),
                tuple(f"2001:db8:{i}::/48" for i in range(9)), ("2001:db8::/32", "2001:db8::/32")):
        with pytest.raises(ValueError):
            ANCHOR.certify(NODE.public_key, Role.NODE, 0, bad)


def test_foreign_or_tampered_certificate_is_uncertified():
    store = TrustStore([ANCHOR.public_key])
    foreign = OTHER.certify(NODE.public_key)
    assert store.check(Credential(NODE.public_key, foreign)) == "uncertified"
    cert = ANCHOR.certify(NODE.public_key, Role.NODE)
    tampered = Certificate(Role.ADMIN, cert.not_after, cert.public_key, cert.signature)
    assert store.check(Credential(NODE.public_key, tampered)) == "uncertified"
    assert store.check(Credential(NODE.public_key, None)) == "uncertified"


def test_allow_list_of_raw_keys():
    store = TrustStore([], {NODE.public_key})
    assert store.check(Credential(NODE.public_key)) is None
    assert store.check(Credential(Identity.from_seed(b"\x02" * 32).public_key)) == "uncertified"


def test_expiry_needs_wall_clock():
    cert = ANCHOR.certify(NODE.public_key, Role.NODE, not_after=1000)
    store = TrustStore([ANCHOR.public_key])
    cred = Credential(NODE.public_key, cert)
    assert store.check(cred, None) is None
    assert store.check(cred, 999.0) is None
    assert store.check(cred, 1001.0) == "expired"


def test_revocation_lists_signed_and_monotonic():
    store = TrustStore([ANCHOR.public_key])
    cred = Credential(NODE.public_key, ANCHOR.certify(NODE.public_key))
    assert store.install_revocations(OTHER.revoke([NODE.node_id], 5, 0)) == "bad_signature"  # wrong signer
    crl = ANCHOR.revoke([NODE.node_id], 5, 100)
    assert RevocationList.decode(crl.encode()) == crl
    assert store.install_revocations(crl) is None
    assert store.check(cred) == "revoked"
    assert store.install_revocations(ANCHOR.revoke([], 5, 200)) == "not_newer"
    assert store.install_revocations(ANCHOR.revoke([], 6, 200)) is None
    assert store.check(cred) is None
    forged = RevocationList(7, 0, (), crl.signature)
    assert store.install_revocations(forged) == "bad_signature"


def test_decode_rejects_garbage():
    with pytest.raises(DecodeError):
        Certificate.decode(b"\x01" * 10)
    with pytest.raises(DecodeError):
        Certificate.decode(b"\x09" + b"\x00" * 104)  # unknown role
    with pytest.raises(DecodeError):
        RevocationList.decode(b"\x00" * 14 + b"\xff\xff")
