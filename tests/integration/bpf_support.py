"""Helpers shared by the BPF/XDP integration tests: quiet veth pairs and a raw-frame sender."""

from __future__ import annotations

import os
import pathlib
import sys

from tests.integration.netns import Namespaces, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
BPF_DIR = ROOT / "build" / "bpf"
ETHERTYPE_TEST = 0x88B5  # IEEE 802 local experimental

SENDER = r"""
import socket, struct, sys
ifname, spec = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
dst = b"\xff" * 6
for item in spec.split(","):
    mac, count, size = item.split("/")
    frame = dst + bytes.fromhex(mac) + struct.pack("!H", 0x88B5)
    frame += bytes(int(size) - len(frame))
    for _ in range(int(count)):
        s.send(frame)
"""


def quiet_pair(namespaces: Namespaces) -> tuple[str, str]:
    """Two namespaces joined by veth `x0ta` <-> `x0tb` with IPv6 off, so no frame is sent unless we send it."""
    a, b = namespaces.add(), namespaces.add()
    for ns in (a, b):
        run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", ns=ns)
        run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns)
    namespaces.veth(a, b, "x0ta", "x0tb")
    return a, b


def send_frames(ns: str, ifname: str, frames: list[tuple[bytes, int, int]], cpu: int | None = None) -> None:
    """Send (source MAC, count, frame size) frames out of `ifname` in namespace `ns` (from one CPU
    if `cpu` is given: a veth receives on the sender's CPU)."""
    spec = ",".join(f"{mac.hex()}/{count}/{size}" for mac, count, size in frames)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    run(*pin, sys.executable, "-c", SENDER, ifname, spec, ns=ns)


def pin_root() -> str:
    return f"/sys/fs/bpf/x0t{os.getpid()}"
