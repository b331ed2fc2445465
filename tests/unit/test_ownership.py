from x0node.proto.identity import Identity
from x0node.proto.ownership import Grants, grants_of
from x0node.proto.trust import Role, TrustAnchor

ANCHOR = TrustAnchor.from_seed(b"\xaa" * 32)
A, B, C = (bytes([i]) * 16 for i in (1, 2, 3))


def _cert(role=Role.NODE, prefixes=()):
    return ANCHOR.certify(Identity.from_seed(b"\x05" * 32).public_key, role, 0, prefixes)


def test_grants_of_a_certificate():
    assert grants_of(None) == []
    assert [str(n) for n in grants_of(_cert(prefixes=("2001:db8::/32",)))] == ["2001:db8::/32"]
    assert [str(n) for n in grants_of(_cert(Role.GATEWAY))] == ["::/0"]


def test_the_longest_certified_prefix_owns_its_range():
    g = Grants.of([(A, _cert(prefixes=("2001:db8::/32",))), (B, _cert(prefixes=("2001:db8:3::/48",))),
                   (C, _cert(Role.GATEWAY)), (bytes(16), None)])
    assert g.may_announce(A, "2001:db8::/32") and g.may_announce(A, "2001:db8:4::/48")  # its grant, inside it
    assert not g.may_announce(A, "2001:db8:3:1::/64") and not g.may_announce(A, "2001:db8:3::/48")  # B's
    assert g.may_announce(B, "2001:db8:3::/48") and g.may_announce(B, "2001:db8:3:ff::/64")
    assert not g.may_announce(B, "2001:db8::/32")  # wider than its grant
    assert g.may_announce(C, "::/0") and not g.may_announce(A, "::/0")
    assert g.may_announce(C, "2001:db9::/32")  # a gateway owns what nobody else was granted
    assert not g.may_announce(C, "2001:db8:5::/48")  # but not what A was granted
    assert not g.may_announce(C, "fd78:3074:6b14::/48") and not g.may_announce(C, "fd78:3074:6b14::1/128")


def test_equal_grants_share_the_range():
    g = Grants.of([(A, _cert(prefixes=("2001:db8:1::/48",))), (B, _cert(prefixes=("2001:db8:1::/48",)))])
    assert g.may_announce(A, "2001:db8:1::/48") and g.may_announce(B, "2001:db8:1::/48")
    assert not g.may_announce(C, "2001:db8:1::/48")
