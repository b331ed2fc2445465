"""Prefix ownership: which prefixes the mesh never routes, and which a node may announce.

Every route we install lands in a table the kernel consults before `main`, so an announcement is a
claim on other nodes' traffic. The rules (docs/routing.md, "Prefix ownership"):

1. Never installable, refused when a message or certificate is decoded (prefixes.py): anything but
   IPv6; link-local (fe80::/10), multicast (ff00::/8), loopback (::1), the unspecified address (::/128)
   and IPv4-mapped addresses (::ffff:0:0/96), or anything inside them.
2. A node's own mesh address is always its own; it is routed from SPF, never announced. Nothing inside
   the mesh prefix (MESH_ULA_PREFIX) may be announced by anyone.
3. Any other prefix only as the node's certificate allows: a prefix its certificate lists, or inside
   one (a more-specific of its own grant), or `::/0` when its certificate's role is gateway. A raw key
   on an allow-list grants nothing.
4. The owner of an address range is whoever holds the longest certified prefix covering it. A node
   may announce a prefix only if no other node holds a certified prefix that covers it more
   specifically than the node's own grant (no more-specific of another node's certified prefix).

Pure: the certificates come from the LSAs in the database (`Grants`, rebuilt per SPF run); a lookup
walks the announced prefix's supernets, at most 129 dictionary lookups.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from x0node.proto.prefixes import unroutable
from x0node.proto.protocol import MESH_ULA_PREFIX
from x0node.proto.trust import Certificate, Role

MESH_NET = ipaddress.IPv6Network(MESH_ULA_PREFIX)
DEFAULT_ROUTE = ipaddress.IPv6Network("::/0")
Net = ipaddress.IPv6Network


def grants_of(cert: Certificate | None) -> list[Net]:
    """The prefixes a certificate grants (rule 3): its listed prefixes, and ::/0 for a gateway."""
    if cert is None:
        return []
    out = [ipaddress.IPv6Network(p) for p in cert.prefixes]
    if cert.role == Role.GATEWAY:
        out.append(DEFAULT_ROUTE)
    return out


class Grants:
    """Who holds which certified prefix, across the nodes we know."""

    def __init__(self) -> None:
        self._holders: dict[Net, set[bytes]] = {}

    def add(self, node_id: bytes, cert: Certificate | None) -> None:
        for net in grants_of(cert):
            self._holders.setdefault(net, set()).add(node_id)

    @classmethod
    def of(cls, certs: Iterable[tuple[bytes, Certificate | None]]) -> Grants:
        g = cls()
        for nid, cert in certs:
            g.add(nid, cert)
        return g

    def owners(self, net: Net) -> set[bytes]:
        """The holders of the longest certified prefix covering `net` (rule 4)."""
        for plen in range(net.prefixlen, -1, -1):
            holders = self._holders.get(net.supernet(new_prefix=plen) if plen < net.prefixlen else net)
            if holders:
                return holders
        return set()

    def may_announce(self, node_id: bytes, prefix: str) -> bool:
        """May `node_id` announce `prefix` (already decoded, so routable)?"""
        net = ipaddress.IPv6Network(prefix)
        if net.subnet_of(MESH_NET) or unroutable(net) is not None:
            return False
        return node_id in self.owners(net)
