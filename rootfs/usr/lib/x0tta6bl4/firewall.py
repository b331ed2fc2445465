"""The router's nftables firewall, made at boot from the board's interface roles and the x0node config.

    python3 -I /usr/lib/x0tta6bl4/firewall.py [--load] [--config FILE] [--policy FILE] [--out FILE]

Interface roles (first match wins):
  mesh    listed in the daemon config's `node.interfaces` (exact names; tunnel TAPs are listed there
          too), and the interfaces enabled services declare (the `[overlay]` interface, `ifname`: end-to-end
          authenticated mesh traffic)
  lan     matches a LAN glob of the board (`lan_interfaces`): the LAN/management side
  uplink  everything else (the underlay/WAN port, a port of no role, a USB modem, ...)

What is open comes from the services' own declarations (x0node.daemon.exposure: each service module's
EXPOSURE names the config keys of its listening sockets, with protocol and role); the image bakes them,
with the defaults the daemon applies, into the board policy, so this file knows no service's port.
A section opens its ports only while the daemon would run it: present, `enabled` not false, and a
subsection (`[overlay.nat]`) only inside an enabled parent; a listener tied to a flag (`when`) only while
the flag is true.

Input rules (table `inet x0tta6bl4`, hook input, policy drop; forwarding is left to routing):
  every interface  loopback; established/related; the ICMPv6 that must not be dropped (RFC 4890
                   section 4.4.1: errors, echo, neighbour and router discovery, MLD); ICMPv4 errors and
                   echo; ports of role `any` (tunnel servers of `[transport]`: authenticated, probe-resistant)
  mesh             the routing port (UDP, x0node.proto.protocol.MESH_UDP_PORT); ports of role `mesh`
                   (state gossip, sealed overlay, yggdrasil peering, coordination datagrams and Raft);
                   the UI's ports (role `ui`) only with `web_on_mesh`
  lan              DHCPv4 replies (the LAN port is a DHCP client); ports of roles `lan` (the mesh name
                   service's DNS, UDP and TCP) and `ui` (web.port, web.http_port)
  uplink           ports of role `uplink` (NAT links of `[overlay.nat]`)
  otherwise        counted in the chain's counter (drop_mesh, drop_lan, drop_other) and dropped
The board's policy (LAN globs, web_on_mesh, the routing port, the services' declarations) is baked into
/usr/share/x0tta6bl4/firewall.json at build time; a file /data/etc/x0node/firewall.toml may set
`web_on_mesh`. The daemon config is the file x0node reads, with `<data_dir>/config.local.toml` merged
over it as the daemon does (tables merge, values replace).

Rules: the ruleset replaces the table in one transaction (never a moment without a policy); it names no
protocol or service that nft would look up in /etc/protocols or /etc/services (the image has neither,
so only keywords and numbers are used); a daemon config that cannot be read or has bad values in the
keys read here gives the closed ruleset (no mesh port, no UI), because x0node would refuse the same
config; only names of the safe form and integers reach the ruleset text. Stdlib only: it runs on the
device before x0node and in tests on the build host.
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
from dataclasses import dataclass
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
_KEY_RE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_LIST_ENTRIES = 64  # more than any list of listeners the daemon accepts (dns_listen 4, tunnels 16)
ROLES = ("mesh", "lan", "ui", "uplink", "any")  # x0node.daemon.exposure.ROLES
FORMS = ("port", "endpoint", "endpoints", "tables")  # x0node.daemon.exposure.FORMS
# ICMPv6 types that must not be dropped (RFC 4890 section 4.4.1), by their nft names.
ICMPV6_ACCEPT = ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
                 "echo-request", "echo-reply", "mld-listener-query", "mld-listener-report", "mld-listener-done",
                 "mld2-listener-report", "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit",
                 "nd-neighbor-advert", "ind-neighbor-solicit", "ind-neighbor-advert")
ICMPV4_ACCEPT = ("destination-unreachable", "time-exceeded", "parameter-problem", "echo-request", "echo-reply")


class PolicyError(ValueError):
    """A value in the board policy, the device policy or the daemon config is unusable; names the key."""


@dataclass(frozen=True)
class Listen:
    """A service's listening socket (x0node.daemon.exposure.Listen with its defaults resolved)."""

    role: str
    proto: str
    key: str
    form: str
    default: Any
    when: str = ""
    when_default: bool = True
    where: tuple[tuple[str, Any], ...] = ()
    field: str = ""


@dataclass(frozen=True)
class Interface:
    """An interface a service creates, named by the section's `key`, with the mesh role."""

    key: str
    default: str
    when: str = ""
    when_default: bool = True


@dataclass(frozen=True)
class Section:
    """What one config section (or subsection) opens while it is enabled."""

    enabled: bool = True
    listens: tuple[Listen, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    sub: tuple[tuple[str, Section], ...] = ()


@dataclass(frozen=True)
class Policy:
    """The board's part (baked into the image) plus the device's `web_on_mesh` choice."""

    mesh_udp_port: int
    lan_interfaces: tuple[str, ...] = ()
    web_on_mesh: bool = False
    services: tuple[tuple[str, Section], ...] = ()  # config section -> what it opens


@dataclass(frozen=True)
class Exposure:
    """What the daemon config opens: mesh interfaces and (role, proto, port) triples."""

    mesh_interfaces: tuple[str, ...] = ()
    ports: tuple[tuple[str, str, int], ...] = ()

    def on(self, roles: tuple[str, ...], proto: str) -> tuple[int, ...]:
        return tuple(sorted({p for r, pr, p in self.ports if r in roles and pr == proto}))


def _port(key: str, value: Any, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if zero else 1) <= value <= 65535:
        raise PolicyError(f"{key}: expected a port {0 if zero else 1}..65535")
    return value


def _hostport_port(key: str, value: Any) -> int:
    if not isinstance(value, str) or ":" not in value:
        raise PolicyError(f"{key}: expected HOST:PORT")
    port = value.rsplit(":", 1)[1]
    if not port.isdigit():
        raise PolicyError(f"{key}: expected HOST:PORT")
    return _port(key, int(port))


def _list(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_LIST_ENTRIES:
        raise PolicyError(f"{key}: expected a list of at most {MAX_LIST_ENTRIES} entries")
    return value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge, values replace (the daemon's rule for config.local.toml)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flag(values: dict[str, Any], key: str, default: bool, path: str) -> bool:
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{path}.{key}: expected true or false")
    return value


def _listen_ports(item: Listen, value: Any, key: str) -> list[int]:
    if item.form == "port":
        port = _port(key, value, zero=True)
        return [port] if port else []
    if item.form == "endpoint":
        return [_hostport_port(key, value)]
    if item.form == "endpoints":
        return [_hostport_port(f"{key}[{i}]", v) for i, v in enumerate(_list(key, value))]
    ports = []
    for i, table in enumerate(_list(key, value)):
        if not isinstance(table, dict):
            raise PolicyError(f"{key}[{i}]: expected a table")
        if all(table.get(k) == v for k, v in item.where):
            ports.append(_hostport_port(f"{key}[{i}].{item.field}", table.get(item.field)))
    return ports


def _section_exposure(section: Section, values: Any, path: str, ports: set[tuple[str, str, int]],
                      ifaces: list[str]) -> None:
    """Add what an enabled section opens; absent or `enabled = false` opens nothing (the daemon's rule)."""
    if values is None:
        return
    if not isinstance(values, dict):
        raise PolicyError(f"{path}: expected a table")
    if not _flag(values, "enabled", section.enabled, path):
        return
    for item in section.listens:
        if item.when and not _flag(values, item.when, item.when_default, path):
            continue
        key = f"{path}.{item.key}"
        ports.update((item.role, item.proto, p) for p in _listen_ports(item, values.get(item.key, item.default), key))
    for iface in section.interfaces:
        if iface.when and not _flag(values, iface.when, iface.when_default, path):
            continue
        name = values.get(iface.key, iface.default)
        if not isinstance(name, str) or not _IFNAME_RE.match(name):
            raise PolicyError(f"{path}.{iface.key}: expected an interface name")
        ifaces.append(name)
    for key, sub in section.sub:
        _section_exposure(sub, values.get(key), f"{path}.{key}", ports, ifaces)


def exposure(config: dict[str, Any], policy: Policy) -> Exposure:
    """The interfaces and ports the daemon config opens. Raises PolicyError naming the key."""
    node = config.get("node", {})
    if not isinstance(node, dict):
        raise PolicyError("node: expected a table")
    names = node.get("interfaces", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _IFNAME_RE.match(n) for n in names):
        raise PolicyError("node.interfaces: expected a list of interface names")
    ports: set[tuple[str, str, int]] = set()
    ifaces = list(names)
    for name, section in policy.services:
        _section_exposure(section, config.get(name), name, ports, ifaces)
    return Exposure(tuple(dict.fromkeys(ifaces)), tuple(sorted(ports)))


def _ifname_match(name: str) -> str:
    """An nft interface-name match for an exact name or a `prefix*` glob (already validated)."""
    return f'iifname "{name}"'


def _ports(ports: tuple[int, ...]) -> str:
    return str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"


def _accept(exp: Exposure, roles: tuple[str, ...], extra_udp: tuple[int, ...] = ()) -> list[str]:
    """One accept rule per protocol for the ports of these roles."""
    out = []
    for proto in ("udp", "tcp"):
        ports = tuple(sorted({*exp.on(roles, proto), *(extra_udp if proto == "udp" else ())}))
        if ports:
            out.append(f"    {proto} dport {_ports(ports)} accept")
    return out


def ruleset(policy: Policy, exp: Exposure) -> str:
    """The nft script that replaces table inet x0tta6bl4 in one transaction."""
    for g in policy.lan_interfaces:
        if not _GLOB_RE.match(g):
            raise PolicyError(f"lan_interfaces: {g!r} is not a name or a name prefix followed by *")
    for n in exp.mesh_interfaces:
        if not _IFNAME_RE.match(n):
            raise PolicyError(f"node.interfaces: bad interface name {n!r}")
    ui = exp.on(("ui",), "tcp")
    mesh_roles = ("mesh", "ui") if policy.web_on_mesh else ("mesh",)
    lines = [
        f"# Generated by /usr/lib/x0tta6bl4/firewall.py; see docs/image.md. Mesh: {', '.join(exp.mesh_interfaces) or '-'};"
        f" LAN: {', '.join(policy.lan_interfaces) or '-'}; UI ports: {', '.join(map(str, ui)) or '-'}"
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
        *_accept(exp, ("any",)),
    ]
    lines += [f"    {_ifname_match(n)} goto mesh" for n in exp.mesh_interfaces]
    lines += [f"    {_ifname_match(g)} goto lan" for g in policy.lan_interfaces]
    lines += [
        "    goto uplink",
        "  }",
        "  chain mesh {",
        *_accept(exp, mesh_roles, (policy.mesh_udp_port,)),
        '    counter name "drop_mesh" drop',
        "  }",
        "  chain lan {",
        "    udp sport 67 udp dport 68 accept",
        *_accept(exp, ("lan", "ui")),
        '    counter name "drop_lan" drop',
        "  }",
        "  chain uplink {",
        *_accept(exp, ("uplink",)),
        '    counter name "drop_other" drop',
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


def _section_policy(path: str, raw: Any) -> Section:
    """A service's declaration from the board policy (x0node.daemon.exposure.declaration's JSON form)."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: expected an object")
    listens = []
    for i, d in enumerate(raw.get("listen", [])):
        key = f"{path}.listen[{i}]"
        if not isinstance(d, dict) or d.get("role") not in ROLES or d.get("proto") not in ("udp", "tcp") \
                or d.get("form") not in FORMS or not _KEY_RE.match(str(d.get("key"))) \
                or (d.get("form") == "tables") != bool(d.get("field")):
            raise PolicyError(f"{key}: not a listen declaration")
        listens.append(Listen(d["role"], d["proto"], d["key"], d["form"], d.get("default"), str(d.get("when", "")),
                              bool(d.get("when_default", True)), tuple(sorted(d.get("where", {}).items())),
                              str(d.get("field", ""))))
    interfaces = []
    for i, d in enumerate(raw.get("interfaces", [])):
        if not isinstance(d, dict) or d.get("role") != "mesh" or not _KEY_RE.match(str(d.get("key"))):
            raise PolicyError(f"{path}.interfaces[{i}]: only interfaces of the mesh role are declared")
        interfaces.append(Interface(d["key"], str(d.get("default", "")), str(d.get("when", "")),
                                    bool(d.get("when_default", True))))
    sub = tuple(sorted((str(k), _section_policy(f"{path}.{k}", v)) for k, v in raw.get("sub", {}).items()))
    return Section(bool(raw.get("enabled", True)), tuple(listens), tuple(interfaces), sub)


def parse_policy(raw: dict[str, Any]) -> Policy:
    """The board policy from its JSON form (image/overlay.py firewall_policy)."""
    services = tuple(sorted((str(k), _section_policy(str(k), v)) for k, v in raw.get("services", {}).items()))
    return Policy(mesh_udp_port=_port("mesh_udp_port", raw["mesh_udp_port"]),
                  lan_interfaces=tuple(raw.get("lan_interfaces", ())), web_on_mesh=bool(raw.get("web_on_mesh")),
                  services=services)


def load_policy(path: pathlib.Path, device_path: pathlib.Path | None) -> Policy:
    policy = parse_policy(json.loads(path.read_text()))
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
