"""SOCKS5 server-side messages."""

from __future__ import annotations

import pytest

from x0node.transport import socks5
from x0node.transport.address import Address
from x0node.transport.errors import DecodeError


def test_greeting():
    assert socks5.parse_greeting(b"\x05") is None
    assert socks5.parse_greeting(b"\x05\x02\x02") is None
    assert socks5.parse_greeting(b"\x05\x02\x02\x00rest") == 4
    with pytest.raises(DecodeError):
        socks5.parse_greeting(b"\x04\x01\x00")
    with pytest.raises(DecodeError):
        socks5.parse_greeting(b"\x05\x01\x02")


def test_request_and_reply():
    req = b"\x05\x01\x00" + Address("example.com", 80).encode()
    assert socks5.parse_request(req[:-1]) is None
    assert socks5.parse_request(req) == (socks5.CMD_CONNECT, Address("example.com", 80), len(req))
    assert socks5.reply(0, Address("127.0.0.1", 1080)) == b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


def test_udp_datagrams():
    d = socks5.encode_udp(Address("1.1.1.1", 53), b"q")
    assert socks5.parse_udp(d) == (Address("1.1.1.1", 53), b"q")
    with pytest.raises(DecodeError):
        socks5.parse_udp(b"\x00\x00\x01" + d[3:])  # fragments are not supported
