"""The rtnetlink route request codec: our route changes as raw kernel requests, and the kernel's
acknowledgements.

Framing per RFC 3549 section 2.3.2; layouts from linux/netlink.h and linux/rtnetlink.h.

Rules:
- `encode_route_request` is for our own, already validated values (an IPv6 destination and next hop,
  an interface index); it builds one RTM_NEWROUTE (create or replace) or RTM_DELROUTE request that
  asks for an acknowledgement. A table above 255 goes in RTA_TABLE. A delete carries no priority:
  the kernel then matches our route for that destination, table and protocol whatever its priority
  (an earlier run may have used another `kernel.route_priority`).
- `decode_acks` reads bytes from the kernel: it returns (sequence, errno) of every acknowledgement and
  ignores a truncated or malformed tail; it never raises on those bytes.
"""

from __future__ import annotations

import socket
import struct

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTA = struct.Struct("=HH")  # attribute length, type
_NLMSGERR = struct.Struct("=i")
AF_INET6 = 10
NLMSG_ERROR = 2
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTN_UNICAST = 1
RT_TABLE_UNSPEC = 0


def _rta(kind: int, value: bytes) -> bytes:
    # every attribute here is 4 or 16 bytes long: already aligned to NLA_ALIGNTO (4)
    return _RTA.pack(_RTA.size + len(value), kind) + value


def encode_route_request(seq: int, op: str, dest: str, table: int, protocol: int, priority: int,
                         oif: int = 0, via: str | None = None, prefsrc: str | None = None) -> bytes:
    """One RTM_NEWROUTE (op "replace": create or replace) or RTM_DELROUTE (op "del") request for an
    IPv6 destination "addr/len", acknowledged."""
    addr, _, plen = dest.partition("/")
    attrs = [_rta(RTA_DST, socket.inet_pton(socket.AF_INET6, addr))]
    if table > 255:
        attrs.append(_rta(RTA_TABLE, struct.pack("=I", table)))
    if op == "del":
        kind, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    else:
        kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        attrs.append(_rta(RTA_PRIORITY, struct.pack("=I", priority)))
        attrs.append(_rta(RTA_OIF, struct.pack("=I", oif)))
        if via:
            attrs.append(_rta(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, via.split("%", 1)[0])))
        if prefsrc:
            attrs.append(_rta(RTA_PREFSRC, socket.inet_pton(socket.AF_INET6, prefsrc)))
    body = _RTMSG.pack(AF_INET6, int(plen or 128), 0, 0, table if table <= 255 else RT_TABLE_UNSPEC, protocol,
                       0, RTN_UNICAST, 0) + b"".join(attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def decode_acks(data: bytes) -> list[tuple[int, int]]:
    """(sequence, errno) of every acknowledgement in a datagram from the kernel (errno 0 = done).
    A truncated or malformed tail is ignored."""
    out = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            break
        if kind == NLMSG_ERROR and length >= _NLMSGHDR.size + _NLMSGERR.size:
            (err,) = _NLMSGERR.unpack_from(data, off + _NLMSGHDR.size)
            out.append((seq, -err))
        off += (length + 3) & ~3
    return out
