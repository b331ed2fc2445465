"""Per-interface IPv6 settings a mesh interface needs, written under /proc/sys/net/ipv6/conf/<if>/.

Rules: only the settings below are written, in the network namespace the daemon runs in; a value
already set is not rewritten; a failed write is logged and reported (False), never raised.
"""

from __future__ import annotations

import logging
import pathlib

log = logging.getLogger("x0node.io.sysctl")

SYSCTL_ROOT = pathlib.Path("/proc/sys/net/ipv6/conf")
# Settings a mesh interface needs: forward, take no router advertisements, no DAD delay before the
# link-local address is usable, and do not use routes whose interface has lost carrier.
MESH_IF_SYSCTLS: dict[str, str] = {
    "forwarding": "1",
    "accept_ra": "0",
    "accept_dad": "0",
    "ignore_routes_with_linkdown": "1",
}


def write_sysctl(ifname: str, key: str, value: str, root: pathlib.Path = SYSCTL_ROOT) -> bool:
    path = root / ifname / key
    try:
        if path.read_text().strip() == value:
            return True
        path.write_text(value)
        return True
    except OSError as exc:
        log.warning("sysctl %s=%s failed: %s", path, value, exc.strerror)
        return False


def configure_interface(ifname: str, root: pathlib.Path = SYSCTL_ROOT) -> None:
    """IPv6 settings for a mesh interface, and global forwarding in this namespace."""
    write_sysctl("all", "forwarding", "1", root)
    for key, value in MESH_IF_SYSCTLS.items():
        write_sysctl(ifname, key, value, root)
