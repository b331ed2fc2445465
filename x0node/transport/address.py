"""SOCKS5-format target addresses (RFC 1928 section 5), as used by every Shadowsocks edition.

Wire: ATYP(1) then IPv4(4) | len(1)+domain(1..255) | IPv6(16), then port u16be.
`decode_address` returns None when more bytes are needed and raises DecodeError on an unknown
ATYP or an empty/undecodable domain; it never reads past the buffer it is given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from x0node.transport.errors import DecodeError

ATYP_IPV4 = 1
ATYP_DOMAIN = 3
ATYP_IPV6 = 4
MAX_DOMAIN_LEN = 255


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def encode(self) -> bytes:
        return encode_address(self.host, self.port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def encode_address(host: str, port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    p = port.to_bytes(2, "big")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if not 1 <= len(name) <= MAX_DOMAIN_LEN:
            raise ValueError(f"domain length out of range: {host!r}") from None
        return bytes((ATYP_DOMAIN, len(name))) + name + p
    if ip.version == 4:
        return bytes((ATYP_IPV4,)) + ip.packed + p
    return bytes((ATYP_IPV6,)) + ip.packed + p


def decode_address(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Address, int] | None:
    """Decode an address at `offset`; returns (address, offset after it) or None if incomplete."""
    n = len(buf)
    if offset >= n:
        return None
    atyp = buf[offset]
    if atyp == ATYP_IPV4:
        end = offset + 1 + 4
        if end + 2 > n:
            return None
        host = str(ipaddress.IPv4Address(bytes(buf[offset + 1 : end])))
    elif atyp == ATYP_IPV6:
        end = offset + 1 + 16
        if end + 2 > n:
            return None
        host = str(ipaddress.IPv6Address(bytes(buf[offset + 1 : end])))
    elif atyp == ATYP_DOMAIN:
        if offset + 2 > n:
            return None
        ln = buf[offset + 1]
        if ln == 0:
            raise DecodeError("empty domain", reason="bad_address")
        end = offset + 2 + ln
        if end + 2 > n:
            return None
        try:
            host = bytes(buf[offset + 2 : end]).decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("non-ascii domain", reason="bad_address") from None
    else:
        raise DecodeError(f"unknown address type {atyp}", reason="bad_address")
    port = int.from_bytes(buf[end : end + 2], "big")
    return Address(host, port), end + 2
