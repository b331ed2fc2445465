"""What the kernel is told so that mesh-to-mesh traffic goes through the overlay, and nothing else. Pure.

Rules and invariants (the adapter in datapath.py applies exactly these; tests read them back):
- Locally originated packets (`iif lo`) to an encrypted destination prefix go to the overlay table,
  whose only routes send those prefixes into the overlay's TUN device with our mesh address as source.
  Forwarded packets (arriving on a mesh interface) are never diverted: a relay node only forwards the
  already sealed UDP datagrams.
- The overlay's own UDP socket carries a firewall mark; marked packets look up the mesh routing table,
  then main, and are otherwise refused (prohibit), so a sealed datagram can never loop into the TUN.
- With `drop_clear`, an nftables table drops mesh-prefix-to-mesh-prefix packets that reach us without
  passing the overlay (not from the TUN, not from lo), except the overlay's own UDP port and ICMPv6
  errors (Packet Too Big must get through for path MTU discovery, RFC 8201). Each drop is counted.
  The input hook sees fragments before reassembly: a non-first fragment is let through (it carries no
  transport header to judge); the first fragment carries the whole header chain (RFC 7112) and is
  judged like an unfragmented packet, so a clear-text packet whose first fragment is dropped is never
  reassembled and never delivered.
- Kernel ESP (esp_plan.py): ESP packets between mesh addresses pass (the kernel authenticates them
  against a state or drops them), and so do the packets the kernel decrypted from them (`meta secpath
  exists`: they carry the state that opened them, whose selector is the peer's /128 to ours).
- With the managed yggdrasil on, its TCP port is exempt both ways (yggdrasil encrypts its own
  traffic; sealing it again would only cost CPU): routed by the mesh table, accepted by drop-clear.
- Every rule carries our protocol number and sits at our priorities, below the mesh table's rule; on
  start and stop the adapter removes exactly rules at those priorities with that protocol.
- An inner packet handed up from a session must be IPv6 from the peer's mesh address to ours; a packet
  read from the TUN must be IPv6 from our mesh address to some other address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

FR_ACT_TO_TBL = 1
FR_ACT_PROHIBIT = 8
NFT_TABLE = "x0node_overlay"
IPV6_HEADER_BYTES = 40


@dataclass(frozen=True)
class Rule:
    priority: int
    action: int
    table: int = 0
    fwmark: int | None = None
    iifname: str | None = None


    tcp_dport: int | None = None
    tcp_sport: int | None = None


def rules(priority: int, fwmark: int, mesh_table: int, overlay_table: int, exempt_tcp_port: int | None = None,
          ) -> list[Rule]:
    """Our rules in priority order. An exempt TCP port (the managed yggdrasil's peerings, already
    encrypted by yggdrasil) is routed by the mesh table directly, both directions."""
    out = [
        Rule(priority, FR_ACT_TO_TBL, mesh_table, fwmark=fwmark),
        Rule(priority + 1, FR_ACT_TO_TBL, 254, fwmark=fwmark),  # main
        Rule(priority + 2, FR_ACT_PROHIBIT, fwmark=fwmark),
    ]
    if exempt_tcp_port is not None:
        out.append(Rule(priority + 3, FR_ACT_TO_TBL, mesh_table, tcp_dport=exempt_tcp_port))
        out.append(Rule(priority + 4, FR_ACT_TO_TBL, mesh_table, tcp_sport=exempt_tcp_port))
    out.append(Rule(priority + RULE_SPAN - 1, FR_ACT_TO_TBL, overlay_table, iifname="lo"))
    return out


RULE_SPAN = 6
"""Priorities used from `rule_priority` on (the last one diverts into the overlay table)."""


def nft_script(ifname: str, prefixes: list[str], port: int, exempt_tcp_port: int | None = None) -> str:
    """The drop-clear table (replaces an earlier copy of itself atomically)."""
    nets = ", ".join(prefixes)
    ports = str(port)
    exempt = "" if exempt_tcp_port is None else (
        f"    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} tcp dport {exempt_tcp_port} accept\n"
        f"    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} tcp sport {exempt_tcp_port} accept\n")
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{ifname}" accept
    iifname "lo" accept
    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} udp dport {{ {ports} }} accept
    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} frag frag-off != 0 accept
    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} meta l4proto esp accept
    meta secpath exists accept
{exempt}    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }} accept
    ip6 saddr {{ {nets} }} ip6 daddr {{ {nets} }} counter drop comment "clear-text mesh traffic"
  }}
}}
"""


def packed(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def outbound_ok(packet: bytes, my_addr: bytes) -> bool:
    return (len(packet) >= IPV6_HEADER_BYTES and packet[0] >> 4 == 6 and packet[8:24] == my_addr
            and packet[24:40] != my_addr)


def inbound_ok(packet: bytes, peer_addr: bytes, my_addr: bytes) -> bool:
    return (len(packet) >= IPV6_HEADER_BYTES and packet[0] >> 4 == 6 and packet[8:24] == peer_addr
            and packet[24:40] == my_addr)
