import ipaddress

from x0node.proto import messages as m
from x0node.proto import protocol as p


def test_addresses_are_valid_and_scoped():
    assert ipaddress.IPv6Address(p.MESH_MCAST_GROUP).is_multicast
    assert p.MESH_MCAST_GROUP.startswith("ff02:")  # link-local scope
    net = ipaddress.IPv6Network(p.MESH_ULA_PREFIX)
    assert net.prefixlen == p.MESH_ULA_PREFIX_LEN and net.subnet_of(ipaddress.IPv6Network("fc00::/7"))
    assert 1024 < p.MESH_UDP_PORT < 65536


def test_default_keepalive_traffic_budget():
    """Keepalive traffic per interface with one neighbour, headers included, stays within ~800 B/s."""
    per_packet = m.KEEPALIVE_HEADER_BYTES + m.KEEPALIVE_ENTRY_BYTES + p.IPV6_UDP_HEADER_BYTES
    assert per_packet / p.HELLO_INTERVAL_S <= 800
    dead_s = (p.HELLO_MISSED_DEAD + 0.5) * p.HELLO_INTERVAL_S
    assert dead_s < 0.3


def test_well_known_ports_are_distinct():
    """Routing, state gossip, NAT links, yggdrasil and the sealed overlay each have a port of their own, so
    any set of services can be enabled together (and the image's firewall names each once)."""
    from x0node.proto import protocol as p

    ports = [p.MESH_UDP_PORT, p.STATE_UDP_PORT, p.NAT_UDP_PORT, p.YGGDRASIL_TCP_PORT, p.OVERLAY_UDP_PORT,
             p.COORD_UDP_PORT, p.RAFT_TCP_PORT]
    assert len(set(ports)) == len(ports)
