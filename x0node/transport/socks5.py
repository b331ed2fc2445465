"""SOCKS5 (RFC 1928) server-side messages for the local proxy, sans-I/O.

Supported: no-auth method, CONNECT and UDP ASSOCIATE, unfragmented UDP datagrams (FRAG=0;
fragments are dropped as the RFC allows). Parsers return None while incomplete and raise
DecodeError on anything else; they never consume more than they were given.
"""

from __future__ import annotations

from x0node.transport.address import Address, decode_address, encode_address
from x0node.transport.errors import DecodeError

VERSION = 5
METHOD_NO_AUTH = 0
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 1
CMD_UDP_ASSOCIATE = 3
REP_OK = 0
REP_FAILURE = 1
REP_CMD_UNSUPPORTED = 7


def parse_greeting(buf: bytes | bytearray) -> int | None:
    """Bytes consumed by a complete greeting offering no-auth, or None if incomplete."""
    if len(buf) < 2:
        return None
    if buf[0] != VERSION:
        raise DecodeError("not SOCKS5", reason="socks_version")
    end = 2 + buf[1]
    if len(buf) < end:
        return None
    if METHOD_NO_AUTH not in buf[2:end]:
        raise DecodeError("client offers no acceptable method", reason="socks_method")
    return end


def greeting_reply(ok: bool = True) -> bytes:
    return bytes((VERSION, METHOD_NO_AUTH if ok else METHOD_NONE_ACCEPTABLE))


def parse_request(buf: bytes | bytearray) -> tuple[int, Address, int] | None:
    """(command, address, bytes consumed) of a complete request, or None if incomplete."""
    if len(buf) < 4:
        return None
    if buf[0] != VERSION:
        raise DecodeError("not SOCKS5", reason="socks_version")
    got = decode_address(buf, 3)
    if got is None:
        return None
    addr, end = got
    return buf[1], addr, end


def reply(rep: int, bind: Address | None = None) -> bytes:
    b = bind or Address("0.0.0.0", 0)  # the unspecified address of a SOCKS5 reply (RFC 1928 section 6), not a bind # nosec B104
    return bytes((VERSION, rep, 0)) + encode_address(b.host, b.port)


def parse_udp(data: bytes) -> tuple[Address, bytes]:
    if len(data) < 4 or data[0] or data[1]:
        raise DecodeError("bad SOCKS5 UDP header", reason="socks_udp")
    if data[2] != 0:
        raise DecodeError("fragmented SOCKS5 UDP datagram", reason="socks_udp_frag")
    got = decode_address(data, 3)
    if got is None:
        raise DecodeError("truncated SOCKS5 UDP address", reason="socks_udp")
    addr, off = got
    return addr, data[off:]


def encode_udp(addr: Address, payload: bytes) -> bytes:
    return b"\x00\x00\x00" + addr.encode() + payload
