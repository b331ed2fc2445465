"""Daemon service `[transport]`: TAP tunnels run inside x0node, with status and metrics.

    [transport]
    [[transport.tunnels]]
    role = "client"                       # "client" dials `server`; "server" listens on `listen`
    server = "203.0.113.5:443"
    tap = "x0t0"                          # listed in [node] interfaces too
    psk_file = "tunnel.psk"               # base64 PSK file (relative to the data dir), or `password`
    method = "2022-blake3-chacha20-poly1305"
    faketls_sni = "www.example.com"       # client; server side: faketls_fallback = "HOST:PORT"
    shape = "browsing"                    # none | browsing | video | gaming
    mtu = 1400
    addresses = []                        # extra addresses on the TAP

Rules: the section is validated completely before anything starts (ConfigError names the key, e.g.
`tunnels[0].tap`); at most MAX_TUNNELS tunnels; secrets come from a file readable only by its owner
or from the config; a tunnel that fails to start is reported in `status()` and the others go on.
The TAP exists while the daemon runs; the daemon treats it like any mesh interface that appears.
"""

from __future__ import annotations

import logging
import pathlib
import stat
from typing import Any

from x0node.daemon.config import ConfigError
from x0node.daemon.exposure import Exposure, Listen
from x0node.transport.cli import parse_hostport
from x0node.transport.crypto import DEFAULT_METHOD, METHODS, get_method, master_key
from x0node.transport.shaping import PROFILES

log = logging.getLogger("x0node.transport")
EXPOSURE = Exposure(listens=(Listen("any", "tcp", "tunnels", form="tables", where=(("role", "server"),), field="listen"),))
"""Tunnel servers answer on every interface: they authenticate first and resist probes."""

MAX_TUNNELS = 16
TUNNEL_KEYS = {"role", "server", "listen", "tap", "psk_file", "password", "method", "faketls_sni",
               "faketls_fallback", "shape", "mtu", "addresses"}


def _hostport(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, "expected a string HOST:PORT")
    try:
        parse_hostport(value)
    except Exception as exc:  # argparse.ArgumentTypeError
        raise ConfigError(key, str(exc)) from None
    return value


def validate_config(section: dict) -> dict:
    out: dict[str, Any] = {"enabled": section.get("enabled", True), "tunnels": []}
    unknown = set(section) - {"enabled", "tunnels"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown key")
    tunnels = section.get("tunnels", [])
    if not isinstance(tunnels, list) or len(tunnels) > MAX_TUNNELS:
        raise ConfigError("tunnels", f"expected a list of at most {MAX_TUNNELS} tables")
    taps: set[str] = set()
    for i, t in enumerate(tunnels):
        k = f"tunnels[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(k, "expected a table")
        bad = set(t) - TUNNEL_KEYS
        if bad:
            raise ConfigError(f"{k}.{sorted(bad)[0]}", "unknown key")
        role = t.get("role")
        if role not in ("client", "server"):
            raise ConfigError(f"{k}.role", "must be 'client' or 'server'")
        need = "server" if role == "client" else "listen"
        if need not in t:
            raise ConfigError(f"{k}.{need}", "required for role " + role)
        tap = t.get("tap")
        if not isinstance(tap, str) or not 1 <= len(tap) <= 15 or not tap.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{k}.tap", "expected an interface name of 1..15 characters")
        if tap in taps:
            raise ConfigError(f"{k}.tap", "used by another tunnel")
        taps.add(tap)
        method = t.get("method", DEFAULT_METHOD)
        if method not in METHODS:
            raise ConfigError(f"{k}.method", f"unknown method; choose one of {', '.join(METHODS)}")
        if ("psk_file" in t) == ("password" in t):
            raise ConfigError(f"{k}.psk_file", "give exactly one of psk_file or password")
        if "password" in t:
            try:
                master_key(get_method(method), t["password"])
            except ValueError as exc:
                raise ConfigError(f"{k}.password", str(exc)) from None
        shape = t.get("shape", "none")
        if shape != "none" and shape not in PROFILES:
            raise ConfigError(f"{k}.shape", f"choose none, {', '.join(PROFILES)}")
        mtu = t.get("mtu", 1400)
        if not isinstance(mtu, int) or not 1280 <= mtu <= 9000:
            raise ConfigError(f"{k}.mtu", "expected an integer 1280..9000 (IPv6 needs >= 1280)")
        addresses = t.get("addresses", [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f"{k}.addresses", "expected a list of CIDR strings")
        v = {"role": role, "tap": tap, "method": method, "shape": shape, "mtu": mtu, "addresses": addresses}
        v[need] = _hostport(f"{k}.{need}", t[need])
        for opt in ("psk_file", "password", "faketls_sni"):
            if opt in t:
                if not isinstance(t[opt], str) or not t[opt]:
                    raise ConfigError(f"{k}.{opt}", "expected a non-empty string")
                v[opt] = t[opt]
        if "faketls_fallback" in t:
            v["faketls_fallback"] = _hostport(f"{k}.faketls_fallback", t["faketls_fallback"])
        if role == "client" and "faketls_fallback" in t or role == "server" and "faketls_sni" in t:
            raise ConfigError(k, "faketls_sni is for clients, faketls_fallback for servers")
        out["tunnels"].append(v)
    return out


def read_psk_file(path: pathlib.Path) -> str:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path}: readable by group/other; chmod 600 it")
    return path.read_text().strip()


class TransportService:
    def __init__(self, section: dict) -> None:
        self.section = validate_config(section)
        self.endpoints: list[tuple[str, Any]] = []
        self.failed: dict[str, str] = {}

    async def start(self, ctx) -> None:
        from x0node.transport.tunnel import TapPort, TunnelClient, TunnelServer, get_profile

        for t in self.section["tunnels"]:
            name = t["tap"]
            try:
                method = get_method(t["method"])
                secret = t.get("password") or read_psk_file(pathlib.Path(ctx.data_dir) / t["psk_file"])
                key = master_key(method, secret)
                tap = TapPort(name, t["mtu"], tuple(t["addresses"]))
                profile = get_profile(t["shape"])
                if t["role"] == "server":
                    ep = TunnelServer(method, key, parse_hostport(t["listen"]), tap, profile,
                                      fallback=parse_hostport(t["faketls_fallback"]) if "faketls_fallback" in t else None)
                else:
                    ep = TunnelClient(method, key, parse_hostport(t["server"]), tap, profile, sni=t.get("faketls_sni"))
                await ep.start()
            except (OSError, ValueError) as exc:
                log.error("transport tunnel %s failed to start: %s", name, exc)
                self.failed[name] = str(exc)
                continue
            self.endpoints.append((name, ep))
            log.info("transport tunnel up tap=%s role=%s", name, t["role"])
        if ctx.registry is not None:
            try:
                ctx.registry.register(_Collector(self))
            except ValueError:  # already registered (restart within one process)
                pass

    async def stop(self) -> None:
        for _, ep in reversed(self.endpoints):
            await ep.stop()
        self.endpoints.clear()

    def status(self) -> dict:
        return {
            "tunnels": {
                name: {"link_up": ep.link is not None and not ep.link.closed, **dict(ep.stats), **dict(ep.tap.stats)}
                for name, ep in self.endpoints
            },
            "failed": dict(self.failed),
        }


class _Collector:
    def __init__(self, service: TransportService) -> None:
        self.service = service

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        events = CounterMetricFamily("x0node_transport_tunnel_events", "tunnel events and drops by reason",
                                     labels=["tap", "reason"])
        up = GaugeMetricFamily("x0node_transport_tunnel_link_up", "1 if the tunnel's stream is up", labels=["tap"])
        for name, ep in self.service.endpoints:
            up.add_metric([name], 1.0 if ep.link is not None and not ep.link.closed else 0.0)
            for reason, n in {**dict(ep.stats), **dict(ep.tap.stats)}.items():
                events.add_metric([name, reason], float(n))
        yield events
        yield up


def create_service(section: dict) -> TransportService:
    return TransportService(section)
