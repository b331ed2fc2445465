import pytest

from x0node.telemetry.machash import mac_id, siphash24


def test_reference_vector_from_the_siphash_paper():
    # Aumasson & Bernstein, "SipHash: a fast short-input PRF", appendix A: key 00..0f, message 00..0e
    assert siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


def test_mac_id_depends_on_key_and_mac():
    mac = bytes.fromhex("020000000a01")
    k1, k2 = bytes(16), bytes(range(16))
    assert mac_id(k1, mac) != mac_id(k2, mac)
    assert mac_id(k1, mac) != mac_id(k1, bytes.fromhex("020000000a02"))
    assert len(mac_id(k1, mac)) == 16


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        mac_id(bytes(15), bytes(6))
    with pytest.raises(ValueError):
        mac_id(bytes(16), bytes(5))
