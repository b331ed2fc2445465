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
