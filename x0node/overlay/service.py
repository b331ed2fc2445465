"""Daemon service `[overlay]`: end-to-end encryption, NAT links and the managed yggdrasil, with status,
events (bus topic "overlay") and `/metrics`.

    [overlay]
    encrypt = true                 # seal mesh-to-mesh traffic end to end (default)
    destinations = []              # prefixes to seal; empty = the whole mesh prefix
    drop_clear = true              # refuse clear-text mesh-to-mesh packets that bypass the overlay
    cipher = "auto"                # AES-256-GCM with AES instructions, else ChaCha20-Poly1305; or either
    esp = "auto"                   # kernel ESP where the kernel has it (else the userspace path); "off"
    mtu = 60000                    # of the TUN device; see docs/overlay.md for the trade-off
    ifname = "x0ov"
    port = 6721                    # UDP port of sealed datagrams between mesh addresses
    table = 6465                   # routing table of the overlay routes
    rule_priority = 990            # our rules use six priorities from here, all below kernel.rule_priority
    fwmark = 0x6b14                # mark of the overlay's own socket

    [overlay.nat]                  # see natlink.py
    [overlay.yggdrasil]            # see yggdrasil.py

Rules: the section is validated completely before anything starts (ConfigError names the key relative
to the section, e.g. `nat.rendezvous[0]`); the service reads the router only through its identity,
trust store, neighbour view and reachable node ids; each part that fails to start is reported in
`status()` and the others go on.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from x0node.daemon.config import ConfigError
from x0node.daemon.exposure import Exposure, Interface, Listen
from x0node.overlay import handshake as hs
from x0node.proto.protocol import MESH_ULA_PREFIX, OVERLAY_UDP_PORT

log = logging.getLogger("x0node.overlay")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "encrypt": True,
    "destinations": [],
    "drop_clear": True,
    "cipher": "auto",
    "esp": "auto",
    "mtu": 60000,
    "ifname": "x0ov",
    "port": OVERLAY_UDP_PORT,
    "table": 6465,
    "rule_priority": 990,
    "fwmark": 0x6B14,
}
EXPOSURE = Exposure(listens=(Listen("mesh", "udp", "port", when="encrypt"),),
                    interfaces=(Interface("mesh", "ifname", when="encrypt"),),
                    subsections=(("nat", "x0node.overlay.natlink"), ("yggdrasil", "x0node.overlay.yggdrasil")))
"""Sealed datagrams between mesh addresses arrive over the mesh; the overlay's own interface carries
authenticated mesh traffic, so it has the mesh role (x0node/daemon/exposure.py)."""
MAX_DESTINATIONS = 16
CIPHERS = ("auto", *hs.CIPHER_NAMES.values())
ESP_MODES = ("auto", "off")
MTU_MIN = 1280
MTU_MAX = 65535 - 40 - 8 - hs.OVERHEAD_BYTES  # the sealed datagram must fit one IPv6 payload


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(key, f"expected an integer {lo}..{hi}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, "expected true or false")
    return value


def _ifname(key: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 15 or not value.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(key, "expected an interface name of 1..15 characters")
    return value


def validate_config(section: dict) -> dict:
    known = set(DEFAULTS) | {"nat", "yggdrasil"}
    for k in section:
        if k not in known:
            raise ConfigError(k, "unknown key")
    out = {**DEFAULTS, **{k: v for k, v in section.items() if k in DEFAULTS}}
    for k in ("enabled", "encrypt", "drop_clear"):
        _bool(k, out[k])
    dests = out["destinations"]
    if not isinstance(dests, list) or len(dests) > MAX_DESTINATIONS:
        raise ConfigError("destinations", f"expected a list of at most {MAX_DESTINATIONS} IPv6 prefixes")
    clean = []
    for i, d in enumerate(dests):
        try:
            net = ipaddress.IPv6Network(d, strict=True) if isinstance(d, str) else None
        except ValueError as exc:
            raise ConfigError(f"destinations[{i}]", f"not an IPv6 prefix: {exc}") from None
        if net is None or net.is_link_local or net.is_multicast:
            raise ConfigError(f"destinations[{i}]", "expected a unicast IPv6 prefix")
        clean.append(str(net))
    out["destinations"] = clean or [MESH_ULA_PREFIX]
    if out["cipher"] not in CIPHERS:
        raise ConfigError("cipher", f"choose one of {', '.join(CIPHERS)}")
    if out["esp"] not in ESP_MODES:
        raise ConfigError("esp", f"choose one of {', '.join(ESP_MODES)}")
    _int("mtu", out["mtu"], MTU_MIN, MTU_MAX)
    _ifname("ifname", out["ifname"])
    _int("port", out["port"], 1, 65535)
    _int("table", out["table"], 1, 2**32 - 1)
    if out["table"] in (253, 254, 255):
        raise ConfigError("table", "reserved by the kernel")
    _int("rule_priority", out["rule_priority"], 1, 32760)
    _int("fwmark", out["fwmark"], 1, 2**32 - 1)
    if "nat" in section:
        from x0node.overlay import natlink

        try:
            out["nat"] = natlink.validate_config(section["nat"])
        except ConfigError as exc:
            raise ConfigError(f"nat.{exc.key}".rstrip("."), exc.message) from None
    if "yggdrasil" in section:
        from x0node.overlay import yggdrasil

        try:
            out["yggdrasil"] = yggdrasil.validate_config(section["yggdrasil"])
        except ConfigError as exc:
            raise ConfigError(f"yggdrasil.{exc.key}".rstrip("."), exc.message) from None
    return out


class OverlayService:
    def __init__(self, section: dict) -> None:
        self.section = validate_config(section)
        self.e2e: Any = None
        self.nat: Any = None
        self.ygg: Any = None
        self.failed: dict[str, str] = {}
        self.ctx: Any = None

    async def start(self, ctx: Any) -> None:
        self.ctx = ctx
        c = self.section
        kernel = ctx.config.kernel
        identity, trust = ctx.router.identity, ctx.router.trust
        if c["encrypt"]:
            from x0node.overlay.policy import RULE_SPAN

            if c["rule_priority"] + RULE_SPAN > kernel["rule_priority"]:
                self.failed["e2e"] = f"overlay.rule_priority + {RULE_SPAN - 1} must be below kernel.rule_priority"
            else:
                from x0node.overlay.datapath import E2EDatapath

                ygg = c.get("yggdrasil")
                cfg = {**c, "exempt_tcp_port": ygg["port"] if ygg and ygg["enabled"] else None}
                dp = E2EDatapath(identity, trust, cfg, kernel["table"], kernel["protocol"], on_event=self._event)
                try:
                    await dp.start()
                    self.e2e = dp
                except Exception as exc:  # noqa: BLE001 - reported, the rest goes on
                    log.exception("overlay e2e failed to start")
                    self.failed["e2e"] = f"{type(exc).__name__}: {exc}"
        if "nat" in c and c["nat"]["enabled"]:
            from x0node.overlay.natlink import NatLinks

            nat = NatLinks(identity, trust, c["nat"], on_event=self._publish)
            try:
                await nat.start()
                self.nat = nat
            except Exception as exc:  # noqa: BLE001
                log.exception("overlay nat failed to start")
                self.failed["nat"] = f"{type(exc).__name__}: {exc}"
        if "yggdrasil" in c and c["yggdrasil"]["enabled"]:
            from x0node.overlay.yggdrasil import ManagedYggdrasil

            ygg = ManagedYggdrasil(identity, trust, ctx.router, ctx.data_dir, c["yggdrasil"])
            try:
                await ygg.start()
                self.ygg = ygg
            except Exception as exc:  # noqa: BLE001
                log.exception("overlay yggdrasil failed to start")
                self.failed["yggdrasil"] = f"{type(exc).__name__}: {exc}"
        if ctx.registry is not None:
            try:
                ctx.registry.register(_Collector(self))
            except ValueError:
                pass

    def _event(self, ev: Any) -> None:
        from x0node.overlay.datapath import describe_event

        d = describe_event(ev)
        log.info("%s peer=%s node=%s %s", d["kind"], d["peer"], d["node_id"][:8], d.get("reason", d.get("cipher", "")))
        if self.ctx is not None:
            self.ctx.bus.publish("overlay", d)

    def _publish(self, d: dict) -> None:
        if self.ctx is not None:
            self.ctx.bus.publish("overlay", d)

    async def stop(self) -> None:
        for part in (self.ygg, self.nat, self.e2e):
            if part is not None:
                try:
                    await part.stop()
                except Exception:  # noqa: BLE001
                    log.exception("overlay part failed to stop")
        self.ygg = self.nat = self.e2e = None

    def status(self) -> dict:
        out: dict[str, Any] = {"failed": dict(self.failed)}
        if self.e2e is not None:
            out["e2e"] = self.e2e.status()
        if self.nat is not None:
            out["nat"] = self.nat.status()
        if self.ygg is not None:
            out["yggdrasil"] = self.ygg.status()
        return out


class _Collector:
    def __init__(self, service: OverlayService) -> None:
        self.service = service

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.service.status()
        sessions = GaugeMetricFamily("x0node_overlay_sessions", "established overlay sessions", labels=["part"])
        peer_bytes = CounterMetricFamily("x0node_overlay_peer_bytes", "payload bytes per overlay peer",
                                         labels=["part", "peer", "direction"])
        drops = CounterMetricFamily("x0node_overlay_drops", "overlay drops by reason", labels=["part", "reason"])
        datapath = GaugeMetricFamily("x0node_overlay_datapath", "1 for the end-to-end datapath that is live",
                                     labels=["path"])
        e2e = st.get("e2e")
        if e2e:
            for path in ("kernel-esp", "userspace"):
                datapath.add_metric([path], 1.0 if e2e.get("datapath") == path else 0.0)
            yield datapath
        for part in ("e2e", "nat"):
            p = st.get(part)
            if not p:
                continue
            peers = p.get("peers", [])
            sessions.add_metric([part], float(sum(1 for x in peers if x.get("established"))))
            for x in peers:
                name = x.get("node_id") or x.get("key")
                peer_bytes.add_metric([part, name, "rx"], float(x.get("rx_bytes", 0) + x.get("esp_rx_bytes", 0)))
                peer_bytes.add_metric([part, name, "tx"], float(x.get("tx_bytes", 0) + x.get("esp_tx_bytes", 0)))
            for reason, n in p.get("drops", {}).items():
                drops.add_metric([part, reason], float(n))
        y = st.get("yggdrasil")
        if y:
            up = GaugeMetricFamily("x0node_overlay_yggdrasil_up", "1 if the managed yggdrasil answers")
            up.add_metric([], 1.0 if y.get("running") else 0.0)
            yield up
            peers = GaugeMetricFamily("x0node_overlay_yggdrasil_peers", "yggdrasil peers")
            peers.add_metric([], float(len(y.get("peers", []))))
            yield peers
            for x in y.get("peers", []):
                peer_bytes.add_metric(["yggdrasil", x.get("key", ""), "rx"], float(x.get("bytes_recvd", 0)))
                peer_bytes.add_metric(["yggdrasil", x.get("key", ""), "tx"], float(x.get("bytes_sent", 0)))
        yield sessions
        yield peer_bytes
        yield drops


def create_service(section: dict) -> OverlayService:
    return OverlayService(section)
