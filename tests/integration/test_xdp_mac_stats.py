"""xdp_mac_stats on a real veth in network namespaces: exact counts, hashed sources, clean detach."""

from __future__ import annotations

import os
import re
import struct
import time

import pytest

from tests.integration.bpf_support import BPF_DIR, pin_root, quiet_pair, send_frames
from tests.integration.netns import run
from x0node.telemetry import counters, libbpf, pinned
from x0node.telemetry.machash import mac_id
from x0node.telemetry.probes import Probes

KEY = bytes(range(16))
MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b02")
MAC_C = bytes.fromhex("020000000c03")
MAC_GROUP = bytes.fromhex("030000000d04")  # I/G bit set: not a valid source


def _prog_id(fd: int) -> int:
    return int.from_bytes(libbpf.obj_info(fd, libbpf.PROG_INFO_BYTES)[4:8], "little")


def test_counts_per_source_and_interface_native_then_clean_detach(namespaces):
    a, b = quiet_pair(namespaces)
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=pin_root(), mac_key=KEY)
    try:
        att = probes.attach("x0tb", mode="native", netns=b)
        assert att.mode == "native"
        assert "xdp" in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout
        prog_id = _prog_id(att.prog_fd)
        pin_dir = probes.objects["xdp_mac_stats"].pin_dir
        assert sorted(os.listdir(pin_dir)) == ["if_slots", "if_stats", "mac_stats"]

        send_frames(a, "x0ta", [(MAC_A, 10, 60), (MAC_B, 20, 100), (MAC_C, 30, 200), (MAC_GROUP, 5, 80)])
        # frames cross the veth synchronously; allow the receive side's NAPI poll to finish
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and probes.interfaces()["x0tb"].rx_packets < 65:
            time.sleep(0.02)

        sources = {s.source: (s.packets, s.bytes) for s in probes.sources()}
        assert sources == {
            mac_id(KEY, MAC_A): (10, 600),
            mac_id(KEY, MAC_B): (20, 2000),
            mac_id(KEY, MAC_C): (30, 6000),
        }
        ifc = probes.interfaces()["x0tb"]
        assert (ifc.rx_packets, ifc.passed, ifc.dropped, ifc.drop_bad_src, ifc.drop_runt) == (65, 60, 5, 5, 0)
        assert ifc.rx_bytes == 600 + 2000 + 6000 + 400

        # what `x0node bpf show` reads: the same counts through the pinned maps alone
        view = pinned.read_xdp(pin_root())
        assert view is not None and view.pin_dir == pin_dir
        assert view.interfaces == {att.ifindex: ifc}
        assert {s.source: (s.packets, s.bytes) for s in view.sources} == sources
    finally:
        probes.close()

    assert "xdp" not in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout
    assert not os.path.exists(pin_dir)
    assert pinned.read_xdp(pin_root()) is None
    os.rmdir(pin_root())
    deadline = time.monotonic() + 5.0
    while prog_id in libbpf.prog_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert prog_id not in libbpf.prog_ids()


def test_generic_mode_when_asked_and_refuses_to_replace_foreign_program(namespaces):
    a, b = quiet_pair(namespaces)
    first = Probes(bpf_dir=str(BPF_DIR), pin_root=None)
    second = Probes(bpf_dir=str(BPF_DIR), pin_root=None)
    try:
        att = first.attach("x0tb", mode="generic", netns=b)
        assert att.mode == "generic"
        assert "xdpgeneric" in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout
        with pytest.raises(libbpf.BpfError, match=re.escape("cannot attach")):  # never replace a foreign program
            second.attach("x0tb", mode="auto", netns=b)
        send_frames(a, "x0ta", [(MAC_A, 7, 64)])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and first.interfaces()["x0tb"].passed < 7:
            time.sleep(0.02)
        assert first.interfaces()["x0tb"].passed == 7
    finally:
        second.close()
        first.close()
    assert "xdp" not in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout


def test_recreated_interface_is_forgotten_then_reattached(namespaces):
    a, b = quiet_pair(namespaces)
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None, mac_key=KEY)
    try:
        first = probes.attach("x0tb", mode="native", netns=b)
        send_frames(a, "x0ta", [(MAC_A, 5, 60)])
        assert probes.refresh(b) == []
        run("ip", "link", "del", "x0tb", ns=b)
        assert probes.refresh(b) == ["x0tb"]
        assert probes.interfaces() == {}
        slots = probes.objects["xdp_mac_stats"].maps["if_slots"]
        key = struct.pack("<I", first.ifindex % 64)
        assert counters.if_counters(slots.percpu_values(key), first.ifindex).rx_packets == 0  # slot freed
        namespaces.veth(a, b, "x0ta", "x0tb")
        second = probes.attach("x0tb", mode="native", netns=b)
        assert second.ifindex != first.ifindex
        send_frames(a, "x0ta", [(MAC_B, 3, 60)])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and probes.interfaces()["x0tb"].rx_packets < 3:
            time.sleep(0.02)
        assert probes.interfaces()["x0tb"].rx_packets == 3
    finally:
        probes.close()


def test_interfaces_sharing_a_slot_are_counted_exactly(namespaces):
    """ifindex 5 and 69 share if_slots[5]: one interface takes the array slot on each CPU, the other
    falls back to the if_stats hash; both are still counted exactly."""
    a, b = quiet_pair(namespaces)
    for name, peer, index in (("x0tc", "x0td", 5), ("x0te", "x0tf", 69)):
        run("ip", "link", "add", name, "index", str(index), "type", "veth", "peer", "name", peer, ns=b)
        run("ip", "link", "set", peer, "netns", a, ns=b)
        run("ip", "link", "set", name, "up", ns=b)
        run("ip", "link", "set", peer, "up", ns=a)
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None, mac_key=KEY)
    try:
        assert probes.attach("x0tc", mode="native", netns=b).ifindex == 5
        assert probes.attach("x0te", mode="native", netns=b).ifindex == 69
        # both from CPU 0, so both interfaces meet on the same per-CPU copy of the slot
        send_frames(a, "x0td", [(MAC_A, 11, 60)], cpu=0)
        send_frames(a, "x0tf", [(MAC_B, 13, 60), (MAC_GROUP, 2, 60)], cpu=0)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and sum(c.rx_packets for c in probes.interfaces().values()) < 26:
            time.sleep(0.02)
        ifs = probes.interfaces()
        assert (ifs["x0tc"].rx_packets, ifs["x0tc"].passed) == (11, 11)
        assert (ifs["x0te"].rx_packets, ifs["x0te"].passed, ifs["x0te"].dropped) == (15, 13, 2)
        assert probes.objects["xdp_mac_stats"].maps["if_stats"].keys() != []  # the slow path was used
    finally:
        probes.close()


def test_auto_mode_falls_back_to_generic_where_native_is_refused(namespaces):
    ns = namespaces.add()
    run("ip", "link", "add", "x0tbr", "type", "bridge", ns=ns)  # Ethernet, but no driver XDP support
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None)
    try:
        att = probes.attach("x0tbr", mode="auto", netns=ns)
        assert att.mode == "generic"
        assert "xdpgeneric" in run("ip", "-d", "link", "show", "x0tbr", ns=ns).stdout
        probes.detach("x0tbr")
        with pytest.raises(libbpf.BpfError, match=re.escape("cannot attach XDP program xdp_mac_stats to x0tbr")):
            probes.attach("x0tbr", mode="native", netns=ns)
    finally:
        probes.close()
    assert "xdp" not in run("ip", "-d", "link", "show", "x0tbr", ns=ns).stdout


def test_non_ethernet_interfaces_are_refused(namespaces):
    ns = namespaces.add()
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None)
    try:
        with pytest.raises(libbpf.BpfError, match=re.escape("lo is not an Ethernet interface")):
            probes.attach("lo", mode="auto", netns=ns)
    finally:
        probes.close()
    assert "xdp" not in run("ip", "-d", "link", "show", "lo", ns=ns).stdout
