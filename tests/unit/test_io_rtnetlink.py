from __future__ import annotations

import socket
import struct

from x0node.io import rtnetlink


def _attrs(msg: bytes) -> dict[int, bytes]:
    attrs, off = {}, 28  # after the netlink header and the route header
    while off < len(msg):
        alen, akind = struct.unpack_from("=HH", msg, off)
        attrs[akind] = msg[off + 4:off + alen]
        off += (alen + 3) & ~3
    return attrs


def test_route_request_layout():
    msg = rtnetlink.encode_route_request(7, "replace", "fd78::1/128", 6464, 78, 100, oif=3, via="fe80::1%m0",
                                       prefsrc="fd78::9")
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (len(msg), rtnetlink.RTM_NEWROUTE, 7, 0)
    assert flags & rtnetlink.NLM_F_REPLACE and flags & rtnetlink.NLM_F_CREATE and flags & rtnetlink.NLM_F_ACK
    family, dst_len, _, _, table, proto, _, rtype, _ = struct.unpack_from("=BBBBBBBBI", msg, 16)
    assert (family, dst_len, table, proto, rtype) == (10, 128, 0, 78, 1)  # table > 255 goes in RTA_TABLE
    attrs = _attrs(msg)
    assert attrs[rtnetlink.RTA_DST] == socket.inet_pton(socket.AF_INET6, "fd78::1")
    assert attrs[rtnetlink.RTA_GATEWAY] == socket.inet_pton(socket.AF_INET6, "fe80::1")
    assert attrs[rtnetlink.RTA_PREFSRC] == socket.inet_pton(socket.AF_INET6, "fd78::9")
    assert struct.unpack("=I", attrs[rtnetlink.RTA_TABLE]) == (6464,)
    assert struct.unpack("=I", attrs[rtnetlink.RTA_OIF]) == (3,)
    assert struct.unpack("=I", attrs[rtnetlink.RTA_PRIORITY]) == (100,)
    small = rtnetlink.encode_route_request(8, "del", "fd78::/64", 200, 78, 100)
    assert struct.unpack_from("=HH", small, 4) == (rtnetlink.RTM_DELROUTE, rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_ACK)
    assert small[17] == 64 and small[20] == 200  # prefix length, table in the header
    assert set(_attrs(small)) == {rtnetlink.RTA_DST}  # no priority: our route whatever its priority


def test_ack_decoding_stops_at_garbage():
    def ack(seq, err):
        return struct.pack("=IHHII", 36, rtnetlink.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", err) + bytes(16)

    data = ack(1, 0) + ack(2, -19) + struct.pack("=IHHII", 16, 3, 0, 3, 0)  # NLMSG_DONE: not an ack
    assert rtnetlink.decode_acks(data) == [(1, 0), (2, 19)]
    assert rtnetlink.decode_acks(ack(4, 0)[:30]) == []  # truncated
    assert rtnetlink.decode_acks(struct.pack("=IHHII", 4, 2, 0, 5, 0) + bytes(20)) == []  # length below a header


def test_route_request_reads_back_through_pyroute2():
    """An independent decoder (pyroute2's) sees the fields we meant."""
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    data = rtnetlink.encode_route_request(9, "replace", "fd78:3074:6b14::/48", 6464, 78, 100, oif=7, via="fe80::2",
                                        prefsrc="fd78::9")
    m = rtmsg(data)
    m.decode()
    assert m["header"]["type"] == rtnetlink.RTM_NEWROUTE and m["header"]["sequence_number"] == 9
    assert (m["family"], m["dst_len"], m["proto"], m["type"]) == (10, 48, 78, 1)
    assert m.get_attr("RTA_DST") == "fd78:3074:6b14::" and m.get_attr("RTA_TABLE") == 6464
    assert m.get_attr("RTA_OIF") == 7 and m.get_attr("RTA_GATEWAY") == "fe80::2"
    assert m.get_attr("RTA_PREFSRC") == "fd78::9" and m.get_attr("RTA_PRIORITY") == 100
