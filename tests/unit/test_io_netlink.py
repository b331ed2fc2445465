from __future__ import annotations

import pytest

from x0node.io import netlink
from x0node.io.netlink import IFF_LOWER_UP, IFF_UP, KernelRoute, LinkMonitor, NetlinkAdapter


def msg(event, ifname, flags):
    return {"event": event, "ifname": ifname, "flags": flags}


def test_link_monitor_reports_transitions_of_mesh_interfaces_only():
    seen = []
    mon = LinkMonitor(["m1", "m2"], lambda n, u: seen.append((n, u)))
    mon.state = {"m1": True, "m2": False}
    mon._running = True
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP | IFF_LOWER_UP))  # no change
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP))  # carrier lost
    mon.handle(msg("RTM_NEWLINK", "m1", IFF_UP))  # repeated: no event
    mon.handle(msg("RTM_NEWLINK", "eth0", 0))  # not a mesh interface
    mon.handle(msg("RTM_NEWADDR", "m2", 0))  # not a link message
    mon.handle(msg("RTM_NEWLINK", "m2", IFF_UP | IFF_LOWER_UP))
    mon.handle(msg("RTM_DELLINK", "m2", IFF_UP | IFF_LOWER_UP))  # removed = unusable
    assert seen == [("m1", False), ("m2", True), ("m2", False)]


def test_submit_collapses_per_destination_and_checks_input():
    nl = NetlinkAdapter(6464, 78, 1000, 100)
    nl.submit("add", KernelRoute("fd00::1/128", "m1", "fe80::1", 1))
    nl.submit("replace", KernelRoute("fd00::2/128", "m1", "fe80::1", 1))
    nl.submit("replace", KernelRoute("fd00::1/128", "m2", "fe80::2", 2))
    assert list(nl._pending) == ["fd00::2/128", "fd00::1/128"]  # latest change last, one per dest
    assert nl._pending["fd00::1/128"][1].ifname == "m2"
    with pytest.raises(ValueError):
        nl.submit("flush", KernelRoute("fd00::3/128", "m1", None, 1))
    with pytest.raises(ValueError):
        nl.submit("add", KernelRoute("not-an-address", "m1", None, 1))


def test_sysctl_writer(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "all").mkdir()
    for key in list(netlink.MESH_IF_SYSCTLS) + ["forwarding"]:
        (tmp_path / "m1" / key).write_text("0\n")
    (tmp_path / "all" / "forwarding").write_text("0\n")
    netlink.configure_interface("m1", root=tmp_path)
    assert (tmp_path / "all" / "forwarding").read_text() == "1"
    for key, value in netlink.MESH_IF_SYSCTLS.items():
        assert (tmp_path / "m1" / key).read_text().strip() == value
    assert netlink.write_sysctl("absent", "forwarding", "1", root=tmp_path) is False


def _attrs(msg: bytes) -> dict[int, bytes]:
    import struct

    attrs, off = {}, 28  # after the netlink header and the route header
    while off < len(msg):
        alen, akind = struct.unpack_from("=HH", msg, off)
        attrs[akind] = msg[off + 4:off + alen]
        off += (alen + 3) & ~3
    return attrs


def test_route_request_layout():
    import socket
    import struct

    msg = netlink.encode_route_request(7, "replace", "fd78::1/128", 6464, 78, 100, oif=3, via="fe80::1%m0",
                                       prefsrc="fd78::9")
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq, pid) == (len(msg), netlink.RTM_NEWROUTE, 7, 0)
    assert flags & netlink.NLM_F_REPLACE and flags & netlink.NLM_F_CREATE and flags & netlink.NLM_F_ACK
    family, dst_len, _, _, table, proto, _, rtype, _ = struct.unpack_from("=BBBBBBBBI", msg, 16)
    assert (family, dst_len, table, proto, rtype) == (10, 128, 0, 78, 1)  # table > 255 goes in RTA_TABLE
    attrs = _attrs(msg)
    assert attrs[netlink.RTA_DST] == socket.inet_pton(socket.AF_INET6, "fd78::1")
    assert attrs[netlink.RTA_GATEWAY] == socket.inet_pton(socket.AF_INET6, "fe80::1")
    assert attrs[netlink.RTA_PREFSRC] == socket.inet_pton(socket.AF_INET6, "fd78::9")
    assert struct.unpack("=I", attrs[netlink.RTA_TABLE]) == (6464,)
    assert struct.unpack("=I", attrs[netlink.RTA_OIF]) == (3,)
    assert struct.unpack("=I", attrs[netlink.RTA_PRIORITY]) == (100,)
    small = netlink.encode_route_request(8, "del", "fd78::/64", 200, 78, 100)
    assert struct.unpack_from("=HH", small, 4) == (netlink.RTM_DELROUTE, netlink.NLM_F_REQUEST | netlink.NLM_F_ACK)
    assert small[17] == 64 and small[20] == 200  # prefix length, table in the header
    assert set(_attrs(small)) == {netlink.RTA_DST, netlink.RTA_PRIORITY}


def test_ack_decoding_stops_at_garbage():
    import struct

    def ack(seq, err):
        return struct.pack("=IHHII", 36, netlink.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", err) + bytes(16)

    data = ack(1, 0) + ack(2, -19) + struct.pack("=IHHII", 16, 3, 0, 3, 0)  # NLMSG_DONE: not an ack
    assert netlink.decode_acks(data) == [(1, 0), (2, 19)]
    assert netlink.decode_acks(ack(4, 0)[:30]) == []  # truncated
    assert netlink.decode_acks(struct.pack("=IHHII", 4, 2, 0, 5, 0) + bytes(20)) == []  # length below a header


def test_route_request_reads_back_through_pyroute2():
    """An independent decoder (pyroute2's) sees the fields we meant."""
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    data = netlink.encode_route_request(9, "replace", "fd78:3074:6b14::/48", 6464, 78, 100, oif=7, via="fe80::2",
                                        prefsrc="fd78::9")
    m = rtmsg(data)
    m.decode()
    assert m["header"]["type"] == netlink.RTM_NEWROUTE and m["header"]["sequence_number"] == 9
    assert (m["family"], m["dst_len"], m["proto"], m["type"]) == (10, 48, 78, 1)
    assert m.get_attr("RTA_DST") == "fd78:3074:6b14::" and m.get_attr("RTA_TABLE") == 6464
    assert m.get_attr("RTA_OIF") == 7 and m.get_attr("RTA_GATEWAY") == "fe80::2"
    assert m.get_attr("RTA_PREFSRC") == "fd78::9" and m.get_attr("RTA_PRIORITY") == 100
