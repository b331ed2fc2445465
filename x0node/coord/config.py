"""The `[coord]` config section: defaults and validation (errors name the key within the section)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from x0node.coord.pools import PoolLayout
from x0node.daemon.exposure import Exposure, Listen, udp_and_tcp
from x0node.proto.protocol import COORD_UDP_PORT, RAFT_TCP_PORT

NODE_HEX_RE = re.compile(r"^[0-9a-f]{32}$")
ZONE_RE = re.compile(r"^([a-z0-9-]{1,63}\.){1,4}$")
MAX_CANDIDATES = 64
MAX_DNS_LISTEN = 4

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "port": COORD_UDP_PORT,
    "raft_port": RAFT_TCP_PORT,
    "members": [],
    "candidates": [],
    "member_gone_s": 30.0,
    "pool4": "10.64.0.0/10",
    "pool4_len": 24,
    "pool6": "fd64:7830:6b14::/48",
    "pool6_len": 64,
    "reclaim_after_s": 86400.0,
    "kv": True,
    "dns_listen": [],
    "dns_zone": "mesh.",
    "hostname": "",
    "timers": "rtt",
}
EXPOSURE = Exposure(listens=(Listen("mesh", "udp", "port"), Listen("mesh", "tcp", "raft_port"),
                             *udp_and_tcp("lan", "dns_listen", form="endpoints", when="kv")))
"""Datagrams and the Raft group between mesh addresses over the mesh (every node: a candidate becomes a
member at run time without a restart); the name service answers the LAN (x0node/daemon/exposure.py)."""


def _err(key: str, msg: str) -> Exception:
    from x0node.daemon.config import ConfigError

    return ConfigError(key, msg)


def _port(out: dict[str, Any], key: str) -> None:
    v = out[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 1024 <= v <= 65535:
        raise _err(key, "expected an integer between 1024 and 65535")


def _number(out: dict[str, Any], key: str, lo: float, hi: float) -> None:
    v = out[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise _err(key, f"expected a number between {lo:g} and {hi:g}")
    out[key] = float(v)


def _nodes(out: dict[str, Any], key: str, limit: int) -> None:
    v = out[key]
    if not isinstance(v, list) or len(v) > limit:
        raise _err(key, f"expected a list of at most {limit} node ids")
    for i, n in enumerate(v):
        if not isinstance(n, str) or not NODE_HEX_RE.match(n.lower()):
            raise _err(f"{key}[{i}]", "expected a node id (32 hex digits)")
    out[key] = [n.lower() for n in v]
    if len(set(out[key])) != len(out[key]):
        raise _err(key, "lists a node twice")


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    out = dict(DEFAULTS) | dict(section)
    for key in out:
        if key not in DEFAULTS:
            raise _err(key, "unknown key")
    for key in ("enabled", "kv"):
        if not isinstance(out[key], bool):
            raise _err(key, "expected true or false")
    _port(out, "port")
    _port(out, "raft_port")
    if out["port"] == out["raft_port"]:
        raise _err("raft_port", "must differ from port")
    _nodes(out, "members", 5)
    if len(out["members"]) not in (0, 3, 5):
        raise _err("members", "a Raft group has 3 or 5 designated members (or none on this node's list)")
    _nodes(out, "candidates", MAX_CANDIDATES)
    _number(out, "member_gone_s", 2.0, 86400.0)
    _number(out, "reclaim_after_s", 5.0, 365 * 86400.0)
    for key in ("pool4", "pool6"):
        if not isinstance(out[key], str):
            raise _err(key, "expected a prefix")
    for key in ("pool4_len", "pool6_len"):
        if isinstance(out[key], bool) or not isinstance(out[key], int):
            raise _err(key, "expected an integer")
    try:
        ipaddress.IPv4Network(out["pool4"], strict=True)
    except ValueError as exc:
        raise _err("pool4", f"not an IPv4 prefix: {exc}") from None
    try:
        ipaddress.IPv6Network(out["pool6"], strict=True)
    except ValueError as exc:
        raise _err("pool6", f"not an IPv6 prefix: {exc}") from None
    try:
        PoolLayout(out["pool4"], out["pool4_len"], out["pool6"], out["pool6_len"])
    except ValueError as exc:
        raise _err("pool4_len" if "IPv4" in str(exc) else "pool6_len", str(exc)) from None
    listen = out["dns_listen"]
    if not isinstance(listen, list) or len(listen) > MAX_DNS_LISTEN:
        raise _err("dns_listen", f"expected a list of at most {MAX_DNS_LISTEN} ADDRESS:PORT entries")
    for i, item in enumerate(listen):
        try:
            host, port = parse_listen(item)
        except ValueError as exc:
            raise _err(f"dns_listen[{i}]", str(exc)) from None
    zone = out["dns_zone"]
    if not isinstance(zone, str) or not ZONE_RE.match(zone):
        raise _err("dns_zone", "expected a lower-case DNS zone ending in a dot, e.g. mesh.")
    if not isinstance(out["hostname"], str) or (out["hostname"] and not re.match(r"^[a-z0-9-]{1,63}$", out["hostname"])):
        raise _err("hostname", "expected a DNS label (a-z, 0-9, -) or empty for the system host name")
    if out["timers"] not in ("rtt", "library"):
        raise _err("timers", 'expected "rtt" (sized from measured RTT) or "library" (pysyncobj defaults)')
    return out


def parse_listen(item: Any) -> tuple[str, int]:
    if not isinstance(item, str) or ":" not in item:
        raise ValueError("expected ADDRESS:PORT ([v6]:port for IPv6)")
    host, _, port_s = item.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_s)
    except ValueError:
        raise ValueError("expected an IP literal and a port") from None
    if not 1 <= port <= 65535:
        raise ValueError("port out of range")
    return host, port
