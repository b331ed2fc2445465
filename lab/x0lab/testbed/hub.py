"""A shared Ethernet segment joining testbed nodes to an outside device (a QEMU VM's mesh port).

Layout: a namespace `<testbed id>-hub` (recorded with the testbed's namespaces, so `down()` removes it)
holds a bridge with one veth port per attached node (the node's end is its interface `vm`, listed in its
daemon config as a mesh interface under neighbour index 0) and one TAP device whose file descriptor
goes to the outside device (QEMU's `-netdev tap,fd=N`). The nodes' ports are isolated from one another
(`bridge link set ... isolated on`): a frame from a node reaches only the TAP, so each attached node is a
neighbour of the device and never of another attached node through the hub; the testbed's own links
stay the only links between nodes. Multicast snooping is off so the routing hellos (IPv6 link-local
multicast) are flooded to the TAP without an MLD querier.

Rules: nothing is created in the host's namespace. The TAP is made inside the hub namespace by a
short-lived thread that enters it (setns(2) affects only the calling thread), so the process keeps its
own namespace; the TAP exists while its descriptor is open (not persistent), so a VM that exits takes
its port with it. The caller owns the returned descriptor (pass it to QEMU, then close it).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import threading

from x0lab.testbed.command import TestbedError, sh

HUB_SUFFIX = "hub"
BRIDGE = "br0"
TAP = "vmtap"
NODE_IFACE = "vm"   # the attached node's interface towards the device
DEVICE_INDEX = 0    # the device's "neighbour index" in a node's interface map (nodes are 1..N)

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFREQ_BYTES = 40


def _open_tap_in(ns: str, name: str) -> int:
    """Open a new TAP device `name` inside namespace `ns`; returns its descriptor."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            nsfd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(nsfd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(nsfd)
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            try:
                ifr = struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI).ljust(_IFREQ_BYTES, b"\0")
                fcntl.ioctl(fd, _TUNSETIFF, ifr)
            except BaseException:
                os.close(fd)
                raise
            result["fd"] = fd
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc

    t = threading.Thread(target=work, name=f"tap-{ns}")
    t.start()
    t.join()
    if "error" in result:
        raise TestbedError(f"cannot create TAP {name} in {ns}: {result['error']}")
    return int(result["fd"])  # type: ignore[call-overload]


def hub_ns(bed) -> str:  # type: ignore[no-untyped-def]
    return f"{bed.id}-{HUB_SUFFIX}"


def attach(bed, nodes: list[int]) -> int:  # type: ignore[no-untyped-def]
    """Create the hub, attach `nodes` (before their daemons start) and return the TAP's descriptor."""
    ns = hub_ns(bed)
    bed.state["namespaces_created"].append(ns)
    bed.save()  # recorded before it exists: down() finds a half-made hub
    sh("ip", "netns", "add", ns)
    sh("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", ns=ns)
    batch = [f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0"]
    for k in nodes:
        node = bed.node(k)
        if DEVICE_INDEX in node.ifaces:
            raise TestbedError(f"node {k} is already attached")
        batch.append(f"link add p{k} type veth peer name {NODE_IFACE} netns {node.ns}")
        batch.append(f"link set p{k} master {BRIDGE}")
        batch.append(f"link set p{k} up")
        node.ifaces[DEVICE_INDEX] = NODE_IFACE
    batch.append(f"link set {BRIDGE} up")
    sh("ip", "-n", ns, "-batch", "-", input="\n".join(batch) + "\n")
    for k in nodes:
        sh("bridge", "-n", ns, "link", "set", "dev", f"p{k}", "isolated", "on")
        sh("ip", "-n", bed.node(k).ns, "link", "set", NODE_IFACE, "up")
    bed.save()
    fd = _open_tap_in(ns, TAP)
    try:
        sh("ip", "-n", ns, "link", "set", TAP, "master", BRIDGE, "up")
    except BaseException:
        os.close(fd)
        raise
    return fd
