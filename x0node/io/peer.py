"""Which peers count as one for per-source limits (login throttling, unauthenticated tunnel
connections).

Rule: an IPv4 address is one source (an IPv4-mapped IPv6 address is that IPv4 address); an IPv6 address
counts as its /64 (`IPV6_SOURCE_PREFIX`), because one host can take any address of its /64 (RFC 8981
temporary addresses, or simply by choice), so counting per address would give it 2^64 allowances. A
zone (`%eth0`) is ignored; anything that is not an IP address is the one source "unknown".
"""

from __future__ import annotations

import ipaddress

IPV6_SOURCE_PREFIX = 64


def source_key(host: str | None) -> str:
    try:
        addr = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, IPV6_SOURCE_PREFIX), strict=False))
    return str(addr)
