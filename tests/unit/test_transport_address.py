"""SOCKS5 address format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from x0node.transport.address import Address, decode_address, encode_address
from x0node.transport.errors import DecodeError


@pytest.mark.parametrize("host", ["1.2.3.4", "2001:db8::1", "example.com"])
def test_roundtrip(host):
    wire = encode_address(host, 8443)
    assert decode_address(wire + b"tail") == (Address(host, 8443), len(wire))
    for i in range(len(wire)):
        assert decode_address(wire[:i]) is None


def test_bad_inputs():
    with pytest.raises(DecodeError):
        decode_address(b"\x02\x00\x00")
    with pytest.raises(DecodeError):
        decode_address(b"\x03\x00\x00\x50")
    with pytest.raises(ValueError):
        encode_address("x" * 300, 1)


@given(st.binary(max_size=300))
def test_never_raises_other_than_decode_error(data):
    try:
        got = decode_address(data)
    except DecodeError:
        return
    if got is not None:
        assert got[1] <= len(data)
