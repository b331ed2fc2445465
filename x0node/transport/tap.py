"""TAP device adapter: create a persistent-for-the-process layer-2 interface and move frames.

An Ethernet-type (TAP) device is used rather than TUN so the kernel gives it a MAC, an IPv6
link-local address, multicast and neighbour discovery, which the mesh hellos need. Opened with
IFF_NO_PI (raw frames) with a MAC derived from its name (stable across restarts). The device disappears when the fd is closed. Link set-up goes through
netlink (pyroute2).
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
TAP_MTU_DEFAULT = 1400
TAP_READ_BYTES = 65536


def open_tap(name: str) -> int:
    if not 1 <= len(name) <= 15:
        raise ValueError("interface name must be 1..15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def stable_mac(name: str) -> str:
    """Locally administered unicast MAC derived from the interface name, so a restarted endpoint
    keeps its MAC and IPv6 link-local address (neighbours' caches stay valid)."""
    import hashlib

    d = hashlib.blake2b(name.encode(), digest_size=5, person=b"x0node-tap").digest()
    return "02:" + ":".join(f"{b:02x}" for b in d)


def configure(name: str, mtu: int = TAP_MTU_DEFAULT, addresses: tuple[str, ...] = ()) -> None:
    """Set MTU and MAC, add addresses (CIDR strings) and bring the link up, via netlink. Blocking:
    call it from a worker thread when an event loop runs. pyroute2's sync API gets a private stock
    selector loop, because its netlink sockets cannot be opened on uvloop."""
    import asyncio

    from pyroute2 import IPRoute

    loop = asyncio.SelectorEventLoop()
    try:
        with IPRoute(use_event_loop=loop) as ipr:
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, mtu=mtu, address=stable_mac(name))
            for cidr in addresses:
                addr, _, plen = cidr.partition("/")
                ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or (128 if ":" in addr else 32)))
            ipr.link("set", index=idx, state="up")
    finally:
        loop.close()
