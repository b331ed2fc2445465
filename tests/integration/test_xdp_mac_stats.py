"""xdp_mac_stats on a real veth in network namespaces: exact counts, hashed sources, clean detach."""

from __future__ import annotations

import os
import time

from tests.integration.bpf_support import BPF_DIR, pin_root, quiet_pair, send_frames
from tests.integration.netns import run
from x0node.telemetry import libbpf
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
        assert sorted(os.listdir(pin_dir)) == ["if_stats", "mac_stats"]

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
    finally:
        probes.close()

    assert "xdp" not in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout
    assert not os.path.exists(pin_dir)
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
        try:
            second.attach("x0tb", mode="auto", netns=b)
        except libbpf.BpfError as exc:
            assert "cannot attach" in str(exc)
        else:
            raise AssertionError("a second program replaced the first")
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
        assert probes.objects["xdp_mac_stats"].maps["if_stats"].keys() == []  # dead entry removed
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
