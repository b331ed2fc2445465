"""The router's nftables firewall, made at boot from the board's interface roles and the x0node config.

    python3 -I /usr/lib/x0tta6bl4/firewall.py [--load] [--config FILE] [--policy FILE] [--out FILE]

Interface roles (first match wins):
  mesh   listed in the daemon config's `node.interfaces` (exact names; tunnel TAPs are listed there too),
         and the interface of an enabled `[overlay]` (`ifname`: end-to-end encrypted mesh traffic)
  lan    matches a LAN glob of the board (`lan_interfaces`): the LAN/management side
  other  everything else (a port of no role, a USB modem, ...)

Input rules (table `inet x0tta6bl4`, hook input, policy drop; forwarding is left to routing):
  every interface  loopback; established/related; the ICMPv6 that must not be dropped (RFC 4890
                   section 4.4.1: errors, echo, neighbour and router discovery, MLD); ICMPv4 errors and
                   echo; the TCP ports of tunnel servers (`[transport]`, authenticated and probe-resistant)
  mesh             the routing port (UDP, x0node.proto.protocol.MESH_UDP_PORT); the UDP port of each
                   enabled service that talks to other nodes (`[state]`, `[overlay]`: their `port` or
                   its default); the UI only with `web_on_mesh`
  lan              the UI's ports (web.port, and web.http_port, which only redirects to HTTPS); DHCPv4
                   replies (the LAN port is a DHCP client)
  otherwise        counted in the role's counter (drop_mesh, drop_lan, drop_other) and dropped
The UI's ports are those of an enabled `[web]` section. The board's policy (LAN globs, web_on_mesh, the
mesh port, the UI's default port, the mesh services' default ports) is baked into /usr/share/x0tta6bl4/firewall.json at build time; a file
/data/etc/x0node/firewall.toml may set `web_on_mesh`. The daemon config is the file x0node reads, with
`<data_dir>/config.local.toml` merged over it as the daemon does (tables merge, values replace).

Rules: the ruleset replaces the table in one transaction (never a moment without a policy); it names no
protocol or service that nft would look up in /etc/protocols or /etc/services (the image has neither,
so only keywords and numbers are used); a daemon
config that cannot be read or has bad values gives the closed ruleset (no mesh port, no UI), because
x0node would refuse the same config; only names of the safe form reach the ruleset text. Stdlib only:
it runs on the device before x0node and in tests on the build host.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any

TABLE = "x0tta6bl4"
POLICY_FILE = pathlib.Path("/usr/share/x0tta6bl4/firewall.json")
DEVICE_POLICY_FILE = pathlib.Path("/data/etc/x0node/firewall.toml")
DAEMON_CONFIG = pathlib.Path("/etc/x0node/config.toml")
OUT_FILE = pathlib.Path("/run/x0node/firewall.nft")
LOCAL_CONFIG_NAME = "config.local.toml"  # x0node.daemon.config.LOCAL_CONFIG_NAME
MAX_FILE_BYTES = 256 * 1024
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_GLOB_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\*?$")
# ICMPv6 types that must not be dropped (RFC 4890 section 4.4.1), by their nft names.
ICMPV6_ACCEPT = ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
                 "echo-request", "echo-reply", "mld-listener-query", "mld-listener-report", "mld-listener-done",
                 "mld2-listener-report", "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit",
                 "nd-neighbor-advert", "ind-neighbor-solicit", "ind-neighbor-advert")
ICMPV4_ACCEPT = ("destination-unreachable", "time-exceeded", "parameter-problem", "echo-request", "echo-reply")


class PolicyError(ValueError):
    """A value in the board policy, the device policy or the daemon config is unusable; names the key."""


@dataclass(frozen=True)
class Policy:
    """The board's part (baked into the image) plus the device's `web_on_mesh` choice."""

    mesh_udp_port: int
    web_default_port: int
    lan_interfaces: tuple[str, ...] = ()
    web_on_mesh: bool = False
    # config section -> default UDP port of a service that talks to other nodes over mesh interfaces
    mesh_services: tuple[tuple[str, int], ...] = ()
    # config section -> default TCP port of a service that serves other nodes over mesh interfaces (ota)
    mesh_tcp_services: tuple[tuple[str, int], ...] = ()
    overlay_ifname: str = "x0ov"  # x0node.overlay.service DEFAULTS["ifname"]


@dataclass(frozen=True)
class Exposure:
    """What the daemon config opens: mesh interfaces, the UI's TCP ports, tunnel servers' TCP ports."""

    mesh_interfaces: tuple[str, ...] = ()
    web_ports: tuple[int, ...] = ()
    tunnel_ports: tuple[int, ...] = ()
    mesh_service_ports: tuple[int, ...] = ()
    mesh_tcp_ports: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list, compare=False)


def _port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise PolicyError(f"{key}: expected a port 1..65535")
    return value


def _hostport_port(key: str, value: Any) -> int:
    if not isinstance(value, str) or ":" not in value:
        raise PolicyError(f"{key}: expected HOST:PORT")
    port = value.rsplit(":", 1)[1]
    if not port.isdigit():
        raise PolicyError(f"{key}: expected HOST:PORT")
    return _port(key, int(port))


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge, values replace (the daemon's rule for config.local.toml)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def exposure(config: dict[str, Any], policy: Policy) -> Exposure:
    """The ports and interfaces the daemon config opens. Raises PolicyError naming the key."""
    node = config.get("node", {})
    if not isinstance(node, dict):
        raise PolicyError("node: expected a table")
    names = node.get("interfaces", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _IFNAME_RE.match(n) for n in names):
        raise PolicyError("node.interfaces: expected a list of interface names")
    web_ports: list[int] = []
    web = config.get("web")
    if isinstance(web, dict) and web.get("enabled", True) is not False:
        web_ports.append(_port("web.port", web.get("port", policy.web_default_port)))
        if web.get("http_port"):
            web_ports.append(_port("web.http_port", web["http_port"]))
    elif web is not None and not isinstance(web, dict):
        raise PolicyError("web: expected a table")
    tunnel_ports: list[int] = []
    transport = config.get("transport")
    if isinstance(transport, dict) and transport.get("enabled", True) is not False:
        tunnels = transport.get("tunnels", [])
        if not isinstance(tunnels, list):
            raise PolicyError("transport.tunnels: expected a list of tables")
        for i, t in enumerate(tunnels):
            if isinstance(t, dict) and t.get("role") == "server":
                tunnel_ports.append(_hostport_port(f"transport.tunnels[{i}].listen", t.get("listen")))
    service_ports: list[int] = []
    tcp_ports: list[int] = []
    for services, out in ((policy.mesh_services, service_ports), (policy.mesh_tcp_services, tcp_ports)):
        for section, default in services:
            sec = config.get(section)
            if sec is not None and not isinstance(sec, dict):
                raise PolicyError(f"{section}: expected a table")
            if isinstance(sec, dict) and sec.get("enabled", True) is not False:
                out.append(_port(f"{section}.port", sec.get("port", default)))
    overlay = config.get("overlay")
    if isinstance(overlay, dict) and overlay.get("enabled", True) is not False:
        ifname = overlay.get("ifname", policy.overlay_ifname)
        if not isinstance(ifname, str) or not _IFNAME_RE.match(ifname):
            raise PolicyError("overlay.ifname: expected an interface name")
        names = [*names, ifname]
    return Exposure(tuple(dict.fromkeys(names)), tuple(sorted(set(web_ports))), tuple(sorted(set(tunnel_ports))),
                    tuple(sorted(set(service_ports))), tuple(sorted(set(tcp_ports))))


def _ifname_match(name: str) -> str:
    """An nft interface-name match for an exact name or a `prefix*` glob (already validated)."""
    return f'iifname "{name}"'


def _ports(ports: tuple[int, ...]) -> str:
    return str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"


def ruleset(policy: Policy, exp: Exposure) -> str:
    """The nft script that replaces table inet x0tta6bl4 in one transaction."""
    for g in policy.lan_interfaces:
        if not _GLOB_RE.match(g):
            raise PolicyError(f"lan_interfaces: {g!r} is not a name or a name prefix followed by *")
    for n in exp.mesh_interfaces:
        if not _IFNAME_RE.match(n):
            raise PolicyError(f"node.interfaces: bad interface name {n!r}")
    tunnel = [f"    tcp dport {_ports(exp.tunnel_ports)} accept"] if exp.tunnel_ports else []
    web = [f"    tcp dport {_ports(exp.web_ports)} accept"] if exp.web_ports else []
    lines = [
        f"# Generated by /usr/lib/x0tta6bl4/firewall.py; see docs/image.md. Mesh: {', '.join(exp.mesh_interfaces) or '-'};"
        f" LAN: {', '.join(policy.lan_interfaces) or '-'}; UI ports: {', '.join(map(str, exp.web_ports)) or '-'}"
        f" (on mesh: {'yes' if policy.web_on_mesh else 'no'}).",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  counter drop_mesh {}",
        "  counter drop_lan {}",
        "  counter drop_other {}",
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        '    iif "lo" accept',
        f"    icmpv6 type {{ {', '.join(ICMPV6_ACCEPT)} }} accept",
        "    ct state established,related accept",
        "    ct state invalid drop",
        f"    icmp type {{ {', '.join(ICMPV4_ACCEPT)} }} accept",
        *tunnel,
    ]
    lines += [f"    {_ifname_match(n)} goto mesh" for n in exp.mesh_interfaces]
    lines += [f"    {_ifname_match(g)} goto lan" for g in policy.lan_interfaces]
    lines += [
        '    counter name "drop_other" drop',
        "  }",
        "  chain mesh {",
        f"    udp dport {_ports((policy.mesh_udp_port, *exp.mesh_service_ports))} accept",
        *([f"    tcp dport {_ports(exp.mesh_tcp_ports)} accept"] if exp.mesh_tcp_ports else []),
        *(web if policy.web_on_mesh else []),
        '    counter name "drop_mesh" drop',
        "  }",
        "  chain lan {",
        "    udp sport 67 udp dport 68 accept",
        *web,
        '    counter name "drop_lan" drop',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _read_toml(path: pathlib.Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None


def load_policy(path: pathlib.Path, device_path: pathlib.Path | None) -> Policy:
    raw = json.loads(path.read_text())
    services = tuple(sorted((str(k), _port(f"mesh_services.{k}", v)) for k, v in raw.get("mesh_services", {}).items()))
    tcp = tuple(sorted((str(k), _port(f"mesh_tcp_services.{k}", v))
                       for k, v in raw.get("mesh_tcp_services", {}).items()))
    policy = Policy(mesh_udp_port=_port("mesh_udp_port", raw["mesh_udp_port"]),
                    web_default_port=_port("web_default_port", raw["web_default_port"]),
                    lan_interfaces=tuple(raw.get("lan_interfaces", ())), web_on_mesh=bool(raw.get("web_on_mesh")),
                    mesh_services=services, mesh_tcp_services=tcp,
                    overlay_ifname=str(raw.get("overlay_ifname", "x0ov")))
    if device_path is not None and device_path.exists():
        dev = _read_toml(device_path)
        unknown = set(dev) - {"web_on_mesh"}
        if unknown:
            raise PolicyError(f"{device_path}: unknown key {sorted(unknown)[0]}")
        if "web_on_mesh" in dev:
            if not isinstance(dev["web_on_mesh"], bool):
                raise PolicyError(f"{device_path}: web_on_mesh: expected true or false")
            policy = dataclasses.replace(policy, web_on_mesh=dev["web_on_mesh"])
    return policy


def load_daemon_config(path: pathlib.Path) -> dict[str, Any]:
    config = _read_toml(path)
    data_dir = config.get("node", {}).get("data_dir", "/data/x0node") if isinstance(config.get("node"), dict) else ""
    local = pathlib.Path(str(data_dir)) / LOCAL_CONFIG_NAME
    if data_dir and local.is_file():
        config = merge(config, _read_toml(local))
    return config


def build(policy: Policy, config_path: pathlib.Path) -> tuple[str, list[str]]:
    """(ruleset, warnings). A config that cannot be used gives the closed ruleset and a warning."""
    try:
        exp = exposure(load_daemon_config(config_path), policy)
        return ruleset(policy, exp), []
    except (OSError, PolicyError) as exc:
        return ruleset(policy, Exposure()), [f"daemon config unusable ({exc}): no mesh port and no web UI opened"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make (and load) the router's nftables ruleset.")
    parser.add_argument("--policy", type=pathlib.Path, default=POLICY_FILE)
    parser.add_argument("--device-policy", type=pathlib.Path, default=DEVICE_POLICY_FILE)
    parser.add_argument("--config", type=pathlib.Path, default=DAEMON_CONFIG)
    parser.add_argument("--out", type=pathlib.Path, default=OUT_FILE)
    parser.add_argument("--load", action="store_true", help="load the ruleset with nft -f")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.policy, args.device_policy)
    except (OSError, ValueError, KeyError, PolicyError) as exc:
        print(f"x0tta6bl4 firewall: device policy unusable ({exc}); using the board's", file=sys.stderr)
        policy = load_policy(args.policy, None)
    text, warnings = build(policy, args.config)
    for w in warnings:
        print(f"x0tta6bl4 firewall: {w}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    if args.load:
        proc = subprocess.run(["nft", "-f", str(args.out)], capture_output=True, text=True)  # nosec B603 B607 - fixed argv
        if proc.returncode != 0:
            print(f"x0tta6bl4 firewall: nft refused the ruleset: {proc.stderr.strip()}", file=sys.stderr)
            return 1
    print(f"x0tta6bl4 firewall: {text.splitlines()[0][2:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
