"""Prefixes on the wire, and the address space the mesh never routes.

Rules:
- A prefix is encoded as family u8 (6), length u8, then the 16-byte network address; host bits must
  be zero. Decoding (`read_prefix`, for LSAs and certificates alike) raises DecodeError for anything
  else, and for every prefix `unroutable` names: the node installs IPv6 only, so an IPv4 prefix is
  refused when the message is decoded, before it can reach a route table.
- Never routed: link-local (fe80::/10), multicast (ff00::/8), loopback (::1), the unspecified address
  (::/128), IPv4-mapped addresses (::ffff:0:0/96), or anything inside them.
"""

from __future__ import annotations

import ipaddress

from x0node.proto.wire import DecodeError, Reader, Writer

NEVER_ROUTED = tuple(
    ipaddress.IPv6Network(p) for p in ("fe80::/10", "ff00::/8", "::1/128", "::/128", "::ffff:0:0/96")
)


def unroutable(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why the mesh never installs `net`, or None."""
    if net.version != 6:
        return "IPv4 prefix: the mesh routes IPv6 only"
    for bad in NEVER_ROUTED:
        if net.subnet_of(bad):  # type: ignore[arg-type]
            return f"{net} is inside {bad}, which is never routed"
    return None


def normalise(prefix: str) -> str:
    """A prefix of our own (config, `keys sign`) in its normal form; ValueError if the mesh cannot route it."""
    net = ipaddress.ip_network(prefix, strict=True)
    reason = unroutable(net)
    if reason is not None:
        raise ValueError(reason)
    return str(net)


def read_prefix(r: Reader) -> str:
    fam = r.u8()
    plen = r.u8()
    if fam == 4:
        raise DecodeError("IPv4 prefix: the mesh routes IPv6 only")
    if fam != 6:
        raise DecodeError("unknown address family")
    raw = r.raw(16)
    if plen > 128:
        raise DecodeError("bad prefix length")
    try:
        net = ipaddress.IPv6Network((raw, plen), strict=True)
    except ValueError as exc:
        raise DecodeError("host bits set in prefix") from exc
    reason = unroutable(net)
    if reason is not None:
        raise DecodeError(reason)
    return str(net)


def write_prefix(w: Writer, prefix: str) -> None:
    """Our own prefix (normalised by the caller)."""
    net = ipaddress.ip_network(prefix, strict=True)
    w.u8(net.version).u8(net.prefixlen).raw(net.network_address.packed)
