"""The `[web]` section of the daemon config: where the UI listens and who may read `/metrics`.

Every key has a default here (the one place they are documented, mirrored in docs/web.md); unknown keys
and bad values raise `ConfigError` naming `web.<key>`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from x0node.web.provider import ConfigError

DEFAULT_LISTEN = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_SESSION_IDLE_S = 3600.0
DEFAULT_SESSION_MAX_S = 12 * 3600.0
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
# Loopback plus IPv6 unique-local addresses (RFC 4193), where the mesh addresses live.
DEFAULT_METRICS_ALLOW = ("127.0.0.0/8", "::1/128", "fc00::/7")
# Host names the UI answers to besides IP literals (always accepted) and the device's own host name
# (with .local and .lan). Anything else is refused: a page on another site whose name was made to
# resolve to the router (DNS rebinding) sends its own name in Host.
DEFAULT_ALLOWED_HOSTS = ("localhost",)
HOST_NAME_MAX = 253


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    listen: str = DEFAULT_LISTEN
    port: int = DEFAULT_PORT
    session_idle_s: float = DEFAULT_SESSION_IDLE_S
    session_max_s: float = DEFAULT_SESSION_MAX_S
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    metrics_allow: tuple[str, ...] = field(default=DEFAULT_METRICS_ALLOW)
    allowed_hosts: tuple[str, ...] = field(default=DEFAULT_ALLOWED_HOSTS)

    def metrics_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.metrics_allow]

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> WebConfig:
        data = dict(data or {})
        known = {f for f in cls.__dataclass_fields__}
        for key in data:
            if key not in known:
                raise ConfigError(f"web.{key}", "unknown setting")
        out: dict[str, Any] = {}
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise ConfigError("web.enabled", "expected true or false")
            out["enabled"] = data["enabled"]
        if "listen" in data:
            try:
                ipaddress.ip_address(data["listen"])
            except (ValueError, TypeError):
                raise ConfigError("web.listen", "expected an IP address") from None
            out["listen"] = data["listen"]
        for key, lo, hi in (("port", 0, 65535), ("max_request_bytes", 1024, 16 * 2**20)):
            if key in data:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ConfigError(f"web.{key}", f"expected an integer between {lo} and {hi}")
                out[key] = v
        for key in ("session_idle_s", "session_max_s"):
            if key in data:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, int | float) or not 60 <= v <= 30 * 86400:
                    raise ConfigError(f"web.{key}", "expected seconds between 60 and 2592000")
                out[key] = float(v)
        if "metrics_allow" in data:
            v = data["metrics_allow"]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError("web.metrics_allow", "expected a list of networks like \"127.0.0.0/8\"")
            for x in v:
                try:
                    ipaddress.ip_network(x, strict=False)
                except ValueError:
                    raise ConfigError("web.metrics_allow", f"not a network: {x!r}") from None
            out["metrics_allow"] = tuple(v)
        if "allowed_hosts" in data:
            v = data["allowed_hosts"]
            if not isinstance(v, list) or not all(
                isinstance(x, str) and 0 < len(x.rstrip(".")) <= HOST_NAME_MAX and (x == "*" or all(
                    c.isalnum() or c in "-." for c in x)) for x in v
            ):
                raise ConfigError("web.allowed_hosts", "expected a list of host names (or \"*\" for any)")
            out["allowed_hosts"] = tuple(x.lower().rstrip(".") for x in v)
        return cls(**out)
