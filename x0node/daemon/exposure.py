"""What a service opens to the network, declared as data next to its config defaults.

Each service module listed in `x0node.daemon.services.SERVICES` (and each module of a subsection, such
as `[overlay.nat]`) may declare `EXPOSURE = Exposure(...)`: the sockets it listens on and the
interfaces it adds, by the config keys of its own section. The image bakes the declarations into the
firewall policy (`policy()`, image/overlay.py) and the device firewall
(rootfs/usr/lib/x0tta6bl4/firewall.py) evaluates them against the daemon config at every start, so no
port number of a service is written anywhere else.

Rules:
- A declaration names keys, never numbers. Defaults are what the module's own `validate_config({})`
  returns: the values the daemon applies to an absent key (`defaults` only for a key it leaves out).
- A section counts as the daemon counts it: present and `enabled` not false (its module's default
  otherwise); a subsection only inside an enabled parent. `when` names a boolean key of the same section
  the listener depends on (the daemon starts it only when that key is true).
- Roles: `mesh` (node.interfaces and interfaces declared here), `lan` (the board's LAN ports), `ui` (the
  LAN ports, and the mesh ports when the board or device sets web_on_mesh), `uplink` (interfaces of
  neither role: the underlay a NAT link arrives on, a modem), `any` (every interface: servers that
  authenticate before they answer).
- Forms of the key's value: `port` (an integer; 0 opens nothing), `endpoint` ("HOST:PORT"), `endpoints`
  (a list of "HOST:PORT"), `tables` (a list of tables; those whose keys match `where` hold "HOST:PORT"
  in `field`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("mesh", "lan", "ui", "uplink", "any")
PROTOS = ("udp", "tcp")
FORMS = ("port", "endpoint", "endpoints", "tables")


@dataclass(frozen=True)
class Listen:
    """One listening socket: `proto` on the port(s) in `key`, reachable from interfaces of `role`."""

    role: str
    proto: str
    key: str
    form: str = "port"
    when: str = ""
    where: tuple[tuple[str, str], ...] = ()
    field: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES or self.proto not in PROTOS or self.form not in FORMS:
            raise ValueError(f"bad listen declaration {self}")
        if (self.form == "tables") != bool(self.field):
            raise ValueError(f"{self.key}: a field is named exactly for the tables form")


@dataclass(frozen=True)
class Interface:
    """An interface the service creates, named by `key`, that belongs to `role`."""

    role: str
    key: str
    when: str = ""


@dataclass(frozen=True)
class Exposure:
    listens: tuple[Listen, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    subsections: tuple[tuple[str, str], ...] = ()  # (subsection key, module declaring its EXPOSURE)
    # defaults of keys validate_config leaves out while they are unset (web.http_port without TLS)
    defaults: tuple[tuple[str, Any], ...] = ()


def udp_and_tcp(role: str, key: str, **kw: Any) -> tuple[Listen, Listen]:
    """A service answering on both transports (DNS: RFC 7766 requires TCP beside UDP)."""
    return Listen(role, "udp", key, **kw), Listen(role, "tcp", key, **kw)


def declaration(module_name: str) -> dict[str, Any] | None:
    """The JSON form of a module's EXPOSURE with its defaults resolved; None if it declares nothing."""
    module = importlib.import_module(module_name)
    exp: Exposure | None = getattr(module, "EXPOSURE", None)
    if exp is None:
        return None
    defaults: Mapping[str, Any] = dict(exp.defaults) | module.validate_config({})

    def default(key: str) -> Any:
        if key not in defaults:
            raise KeyError(f"{module_name}: EXPOSURE names {key!r}, which validate_config does not return")
        return defaults[key]

    listens = []
    for item in exp.listens:
        d: dict[str, Any] = {"role": item.role, "proto": item.proto, "key": item.key, "form": item.form,
                             "default": default(item.key)}
        if item.when:
            d |= {"when": item.when, "when_default": bool(default(item.when))}
        if item.form == "tables":
            d |= {"where": dict(item.where), "field": item.field}
        listens.append(d)
    interfaces = []
    for iface in exp.interfaces:
        d = {"role": iface.role, "key": iface.key, "default": default(iface.key)}
        if iface.when:
            d |= {"when": iface.when, "when_default": bool(default(iface.when))}
        interfaces.append(d)
    sub = {}
    for key, name in exp.subsections:
        decl = declaration(name)
        if decl is not None:
            sub[key] = decl
    return {"enabled": bool(defaults.get("enabled", True)), "listen": listens, "interfaces": interfaces, "sub": sub}


def policy() -> dict[str, dict[str, Any]]:
    """Every service's declaration by config section, for the firewall policy the image bakes."""
    from x0node.daemon.services import SERVICES

    out = {}
    for section, module_name in SERVICES.items():
        decl = declaration(module_name)
        if decl is not None:
            out[section] = decl
    return out
