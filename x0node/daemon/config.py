"""Daemon configuration: one TOML file, validated at start, with run-time changes persisted beside it.

Rules:
- Every key is known. An unknown key, a wrong type or an out-of-range value raises `ConfigError`
  whose `key` is the dotted path of the offending key (`node.interfaces[1]`, `kernel.table`).
- Daemon-owned sections (`node`, `routing`, `kernel`) are validated here. A service section
  (`[web]`, `[telemetry]`, ...) is validated by that service's module (`validate_config`), loaded only
  when the section is present, so a disabled service costs nothing.
- Changes made at run time (web UI, API) are written to `<data_dir>/config.local.toml`, validated the
  same way, and merged over the file at the next start; the main file is never rewritten.
- Defaults live in `DEFAULTS` below and nowhere else.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import pathlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from x0node.daemon.watchdog import STEADY_WATCHDOG_S
from x0node.errors import ConfigError
from x0node.io.atomicfile import write_atomic
from x0node.proto.prefixes import normalise
from x0node.proto.protocol import MAX_INTERFACES, MAX_LSA_PREFIXES, ROUTE_PROTOCOL_NUMBER
from x0node.proto.trust import MAX_ALLOWED_KEYS, MAX_TRUST_ANCHORS

__all__ = ["ConfigError", "DaemonConfig", "load"]

LOCAL_CONFIG_NAME = "config.local.toml"
MAX_CONFIG_BYTES = 256 * 1024
# Limits of lists the core takes are the core's own (MAX_INTERFACES, MAX_LSA_PREFIXES, MAX_TRUST_ANCHORS,
# MAX_ALLOWED_KEYS): a config the core would refuse at start is refused here, naming the key.
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
WATCHDOG_MIN_S = int(STEADY_WATCHDOG_S)  # the steady watchdog is the shortest allowed
WATCHDOG_MAX_S = 600   # an emulated unit (QEMU under TCG) on a loaded build host
# Routing table numbers the kernel reserves (unspec, default, main, local).
RESERVED_TABLES = frozenset({0, 253, 254, 255})
# Protocol numbers with a meaning the kernel or iproute2 already assigns (redirect, kernel, boot,
# static, ra, babel, bgp, isis, ospf, rip, eigrp, ...). Ours must differ from each.
RESERVED_PROTOCOLS = frozenset({0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 42, 186, 187, 188, 189, 192})

DEFAULTS: dict[str, dict[str, Any]] = {
    "node": {
        "data_dir": "/data/x0node",
        "interfaces": [],
        "prefixes": [],
        "log_level": "info",
        "configure_sysctls": True,
        # systemd watchdog once running (daemon/watchdog.py); an emulated unit on a busy host needs more
        "watchdog_s": WATCHDOG_MIN_S,
    },
    "routing": {},
    "trust": {
        "anchors": [],
        "certificate": "",
        "allowed_keys": [],
        "revocations": "",
    },
    "kernel": {
        "table": 6464,
        "protocol": ROUTE_PROTOCOL_NUMBER,
        "rule_priority": 1000,
        "route_priority": 100,
    },
}


# --- value checkers ---------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {_type_name(value)}")
    return value


def _check_int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return value


def _check_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {_type_name(value)}")
    return value


def _check_list(key: str, value: Any, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {_type_name(value)}")
    if len(value) > limit:
        raise ConfigError(key, f"at most {limit} entries, got {len(value)}")
    return value


def _check_ifname(key: str, value: Any) -> str:
    name = _check_str(key, value)
    if not IFNAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(key, f"not a valid interface name: {name!r}")
    return name


def _check_prefix(key: str, value: Any) -> str:
    text = _check_str(key, value)
    try:
        ipaddress.IPv6Network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(key, f"not an IPv6 prefix: {exc}") from None
    try:
        return normalise(text)
    except ValueError as exc:
        raise ConfigError(key, f"cannot be announced: {exc}") from None


def _reject_unknown(section: str, values: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"{section}.{key}", "unknown key")


def _validate_node(values: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown("node", values, DEFAULTS["node"])
    out = copy.deepcopy(DEFAULTS["node"]) | dict(values)
    data_dir = _check_str("node.data_dir", out["data_dir"])
    if not data_dir or "\x00" in data_dir:
        raise ConfigError("node.data_dir", "must be a non-empty path")
    names = _check_list("node.interfaces", out["interfaces"], MAX_INTERFACES)
    out["interfaces"] = [_check_ifname(f"node.interfaces[{i}]", n) for i, n in enumerate(names)]
    if len(set(out["interfaces"])) != len(out["interfaces"]):
        raise ConfigError("node.interfaces", "lists an interface twice")
    if "lo" in out["interfaces"]:
        raise ConfigError("node.interfaces", "lo cannot be a mesh interface")
    prefixes = _check_list("node.prefixes", out["prefixes"], MAX_LSA_PREFIXES)
    out["prefixes"] = [_check_prefix(f"node.prefixes[{i}]", p) for i, p in enumerate(prefixes)]
    level = _check_str("node.log_level", out["log_level"]).lower()
    if level not in LOG_LEVELS:
        raise ConfigError("node.log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    out["log_level"] = level
    _check_bool("node.configure_sysctls", out["configure_sysctls"])
    _check_int("node.watchdog_s", out["watchdog_s"], WATCHDOG_MIN_S, WATCHDOG_MAX_S)
    return out


def _validate_kernel(values: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown("kernel", values, DEFAULTS["kernel"])
    out = copy.deepcopy(DEFAULTS["kernel"]) | dict(values)
    table = _check_int("kernel.table", out["table"], 1, 2**32 - 1)
    if table in RESERVED_TABLES:
        raise ConfigError("kernel.table", f"table {table} is reserved by the kernel")
    proto = _check_int("kernel.protocol", out["protocol"], 1, 255)
    if proto in RESERVED_PROTOCOLS:
        raise ConfigError("kernel.protocol", f"protocol {proto} belongs to another routing source")
    _check_int("kernel.rule_priority", out["rule_priority"], 1, 32765)
    _check_int("kernel.route_priority", out["route_priority"], 0, 2**32 - 1)
    return out


def _check_path(key: str, value: Any) -> str:
    text = _check_str(key, value)
    if "\x00" in text or len(text) > 4096:
        raise ConfigError(key, "not a usable path")
    return text


def _validate_trust(values: Mapping[str, Any]) -> dict[str, Any]:
    """Anchor public key files, our certificate file, raw allowed keys (hex), revocation list file.
    Empty paths mean the default file in the data directory (anchor.pub, node.cert, revoked.crl)."""
    _reject_unknown("trust", values, DEFAULTS["trust"])
    out = copy.deepcopy(DEFAULTS["trust"]) | dict(values)
    anchors = _check_list("trust.anchors", out["anchors"], MAX_TRUST_ANCHORS)
    out["anchors"] = [_check_path(f"trust.anchors[{i}]", a) for i, a in enumerate(anchors)]
    out["certificate"] = _check_path("trust.certificate", out["certificate"])
    out["revocations"] = _check_path("trust.revocations", out["revocations"])
    keys = _check_list("trust.allowed_keys", out["allowed_keys"], MAX_ALLOWED_KEYS)
    for i, k in enumerate(keys):
        text = _check_str(f"trust.allowed_keys[{i}]", k)
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise ConfigError(f"trust.allowed_keys[{i}]", "expected 64 hex digits (an Ed25519 public key)")
    out["allowed_keys"] = [k.lower() for k in keys]
    return out


def _validate_routing(values: Mapping[str, Any]) -> dict[str, Any]:
    """`[routing]` overrides fields of the core's RouterConfig; names and types are checked there."""
    out: dict[str, Any] = {}
    try:
        from x0node.daemon.routing_config import routing_fields  # lazy: needs the core
    except ImportError:
        routing_fields = None  # type: ignore[assignment]
    fields = routing_fields() if routing_fields is not None else None
    for key, value in values.items():
        path = f"routing.{key}"
        if fields is not None:
            if key not in fields:
                raise ConfigError(path, "unknown key")
            expected = fields[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if expected is not None and not isinstance(value, expected) or (
                expected is int and isinstance(value, bool)
            ):
                raise ConfigError(path, f"expected {expected.__name__}, got {_type_name(value)}")
        elif not isinstance(value, bool | int | float | str):
            raise ConfigError(path, f"expected a number, string or boolean, got {_type_name(value)}")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(path, "must not be negative")
        out[key] = value
    if fields is not None:
        from x0node.daemon.routing_config import build_router_config

        try:
            build_router_config(out)
        except (ValueError, TypeError) as exc:
            text = str(exc)
            key = next((k for k in sorted(out, key=len, reverse=True) if k in text), "")
            raise ConfigError(f"routing.{key}" if key else "routing", text) from None
    return out


DAEMON_SECTIONS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "node": _validate_node,
    "routing": _validate_routing,
    "trust": _validate_trust,
    "kernel": _validate_kernel,
}


# --- whole-document handling ------------------------------------------------------------------------

def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a ConfigError naming the source."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source}: {exc}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, any other value in `over` replaces the one in `base`."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate a whole document; returns every section with defaults filled in."""
    from x0node.daemon import services  # local import: services imports this module

    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping):
            raise ConfigError(name, f"expected a table [{name}], got {_type_name(value)}")
        if name not in DAEMON_SECTIONS and name not in services.SERVICES:
            raise ConfigError(name, "unknown section")
    for name, check in DAEMON_SECTIONS.items():
        out[name] = check(raw.get(name, {}))
    for name in services.SERVICES:
        if name in raw:
            out[name] = services.validate_section(name, raw[name])
    return out


@dataclass
class DaemonConfig:
    """The validated, merged configuration plus where it came from (for persisting changes)."""

    sections: dict[str, dict[str, Any]]
    path: pathlib.Path | None = None
    file_values: dict[str, Any] = field(default_factory=dict)
    local_values: dict[str, Any] = field(default_factory=dict)

    @property
    def node(self) -> dict[str, Any]:
        return self.sections["node"]

    @property
    def kernel(self) -> dict[str, Any]:
        return self.sections["kernel"]

    @property
    def routing(self) -> dict[str, Any]:
        return self.sections["routing"]

    @property
    def data_dir(self) -> pathlib.Path:
        return pathlib.Path(self.node["data_dir"])

    def section(self, name: str) -> dict[str, Any] | None:
        return self.sections.get(name)

    def get(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        values = self.sections.get(section)
        if values is None or (key and key not in values):
            raise ConfigError(dotted, "unknown key")
        return values[key] if key else values

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self.sections)

    def with_changes(self, changes: Mapping[str, Any]) -> DaemonConfig:
        """A new config with dotted-key `changes` applied as local overrides; validated, not saved."""
        local = copy.deepcopy(self.local_values)
        for dotted, value in changes.items():
            section, sep, key = dotted.partition(".")
            if not sep or not section or not key:
                raise ConfigError(dotted, "expected a key of the form section.key")
            if section == "node" and key == "data_dir":
                raise ConfigError(dotted, "cannot be changed at run time")
            local.setdefault(section, {})
            if not isinstance(local[section], dict):
                raise ConfigError(section, "expected a table")
            local[section][key] = value
        sections = validate(merge(self.file_values, local))
        return DaemonConfig(sections, self.path, self.file_values, local)

    def save_local(self) -> pathlib.Path:
        """Write the local overrides atomically to <data_dir>/config.local.toml (0600)."""
        target = self.data_dir / LOCAL_CONFIG_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, dump_toml(self.local_values).encode("utf-8"))
        return target


def load(path: str | os.PathLike[str], data_dir: str | None = None) -> DaemonConfig:
    """Read, merge (file < local overrides) and validate. `data_dir` overrides node.data_dir."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    file_values = parse_toml(text, str(path))
    if data_dir is not None:
        file_values = merge(file_values, {"node": {"data_dir": data_dir}})
    first = validate(file_values)
    local_path = pathlib.Path(first["node"]["data_dir"]) / LOCAL_CONFIG_NAME
    local_values: dict[str, Any] = {}
    # a failsafe boot (docs/ota.md) runs the image's config without the run-time overrides
    if local_path.exists() and os.environ.get("X0NODE_IGNORE_LOCAL_CONFIG") != "1":
        try:
            local_values = parse_toml(local_path.read_text(encoding="utf-8"), str(local_path))
        except OSError as exc:
            raise ConfigError("", f"cannot read {local_path}: {exc.strerror}") from None
        local_values.get("node", {}).pop("data_dir", None)
    sections = validate(merge(file_values, local_values)) if local_values else first
    return DaemonConfig(sections, path, file_values, local_values)


# --- a small TOML writer for the value types this config uses -------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError("", f"cannot store a {_type_name(value)} in TOML")


def dump_toml(doc: Mapping[str, Any]) -> str:
    """Serialise a document of tables whose values are scalars, lists or inline tables."""
    lines = ["# Written by x0node: settings changed at run time. Merged over the main config file."]
    for section, values in doc.items():
        lines.append(f"\n[{_toml_key(section)}]")
        for key, value in values.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
