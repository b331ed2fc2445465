"""NAT link adapter: one UDP socket on the underlay, one TAP device, the event loop's readers and one timer.

    [overlay.nat]
    listen = "0.0.0.0:6719"            # the underlay socket (a rendezvous needs a reachable one)
    rendezvous = ["198.51.100.1:6719"] # rendezvous nodes to register with (empty: none)
    serve = true                       # introduce and relay for sites that register here
    interface = "x0nat"                # the TAP; list it in [node] interfaces to make it a mesh link
    mtu = 1380                         # of the TAP: frame + 29 B seal + UDP/IP must fit the uplink
    keepalive_s = 15.0                 # NAT mappings are held by a datagram at least this often
    punch_timeout_s = 3.0              # then the link goes through the rendezvous' relay

Every decision is in punch.py (NatCore); this module only moves datagrams and frames and counts what
it could not move. The TAP exists while the daemon runs; the daemon treats it like any mesh interface
that appears (hellos, routing, the end-to-end overlay and transports all apply to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

from x0node.daemon.config import ConfigError
from x0node.daemon.exposure import Exposure, Listen
from x0node.overlay.punch import MAX_NAT_DATAGRAM_BYTES, NatConfig, NatCore, normalise
from x0node.proto.identity import Identity
from x0node.proto.protocol import NAT_UDP_PORT
from x0node.proto.trust import TrustStore

log = logging.getLogger("x0node.overlay.nat")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "listen": f"0.0.0.0:{NAT_UDP_PORT}",
    "rendezvous": [],
    "serve": True,
    "interface": "x0nat",
    "mtu": 1380,
    "keepalive_s": 15.0,
    "punch_timeout_s": 3.0,
}
EXPOSURE = Exposure(listens=(Listen("uplink", "udp", "listen", form="endpoint"),))
"""NAT links arrive on the underlay (the uplink), never on a mesh or LAN port (x0node/daemon/exposure.py)."""
MAX_RENDEZVOUS = 8
BATCH = 64
TIMER_MIN_S = 0.01


def link_mac(node_id: bytes, ifname: str) -> str:
    """Locally administered unicast MAC from our node id and the interface name: stable across
    restarts (neighbours' caches stay valid) and distinct between nodes."""
    d = hashlib.blake2b(node_id + ifname.encode(), digest_size=5, person=b"x0node-natlink").digest()
    return "02:" + ":".join(f"{b:02x}" for b in d)


def parse_endpoint(key: str, value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError(key, "expected a string HOST:PORT (an IP address; IPv6 in brackets)")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"expected an IP address, got {host!r}") from None
    return host, int(port)


def validate_config(section: dict) -> dict:
    for k in section:
        if k not in DEFAULTS:
            raise ConfigError(k, "unknown key")
    out = {**DEFAULTS, **section}
    for k in ("enabled", "serve"):
        if not isinstance(out[k], bool):
            raise ConfigError(k, "expected true or false")
    parse_endpoint("listen", out["listen"])
    rv = out["rendezvous"]
    if not isinstance(rv, list) or len(rv) > MAX_RENDEZVOUS:
        raise ConfigError("rendezvous", f"expected a list of at most {MAX_RENDEZVOUS} HOST:PORT strings")
    for i, e in enumerate(rv):
        parse_endpoint(f"rendezvous[{i}]", e)
    name = out["interface"]
    if not isinstance(name, str) or not 1 <= len(name) <= 15 or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("interface", "expected an interface name of 1..15 characters")
    mtu = out["mtu"]
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 1280 <= mtu <= 9000:
        raise ConfigError("mtu", "expected an integer 1280..9000 (IPv6 needs >= 1280)")
    for k, lo, hi in (("keepalive_s", 1.0, 120.0), ("punch_timeout_s", 0.5, 60.0)):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ConfigError(k, f"expected a number of seconds {lo:g}..{hi:g}")
        out[k] = float(v)
    return out


class NatLinks:
    def __init__(self, identity: Identity, trust: TrustStore, cfg: dict[str, Any],
                 on_event: Callable[[dict[str, Any]], None] = lambda ev: None) -> None:
        self.on_event = on_event
        self.node_id = identity.node_id
        self.cfg = validate_config(cfg)
        ncfg = NatConfig(tuple(parse_endpoint("", e) for e in self.cfg["rendezvous"]), self.cfg["serve"],
                         self.cfg["keepalive_s"], self.cfg["punch_timeout_s"])
        self.core = NatCore(identity, trust, random.SystemRandom(), time.monotonic(), ncfg,
                            wall=lambda now: time.time())
        self.errors: dict[str, int] = {"send_error": 0, "tap_write_error": 0}
        self._sock: socket.socket | None = None
        self._tap = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def _configure_tap(self) -> None:
        """MTU, a MAC of our own (two sites' TAPs share a name, so a MAC from the name alone would give
        both ends the same IPv6 link-local address), then up. Blocking: run in a worker thread."""
        from x0node.overlay.datapath import with_ipr

        name, mtu, mac = self.cfg["interface"], self.cfg["mtu"], link_mac(self.node_id, self.cfg["interface"])

        def work(ipr: Any) -> None:
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, mtu=mtu, address=mac)
            ipr.link("set", index=idx, state="up")

        with_ipr(work)

    async def start(self) -> None:
        from x0node.transport.tap import open_tap

        self._loop = asyncio.get_running_loop()
        host, port = parse_endpoint("listen", self.cfg["listen"])
        fam = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((host, port))
        s.setblocking(False)
        self._sock = s
        self._family = fam
        try:
            self._tap = open_tap(self.cfg["interface"])
            await asyncio.to_thread(self._configure_tap)
        except BaseException:
            await self.stop()
            raise
        self._loop.add_reader(s.fileno(), self._on_socket)
        self._loop.add_reader(self._tap, self._on_tap)
        self._pump()
        log.info("overlay nat up listen=%s rendezvous=%s interface=%s", self.cfg["listen"],
                 ",".join(self.cfg["rendezvous"]) or "-", self.cfg["interface"])

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None:
            if self._sock is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._sock.fileno())
            if self._tap >= 0:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._tap)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tap >= 0:
            os.close(self._tap)
            self._tap = -1

    # --- I/O ---------------------------------------------------------------------------------------------

    def _addr(self, ep: tuple[str, int]) -> tuple[str, int]:
        if self._family == socket.AF_INET6 and ":" not in ep[0]:
            return "::ffff:" + ep[0], ep[1]
        return ep

    def _set_ttl(self, ttl: int) -> None:
        """Hop limit of the next datagrams (0: back to the system default)."""
        s = self._sock
        assert s is not None
        value = ttl if ttl else -1
        if self._family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, value)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, value)

    def _pump(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for ev in self.core.events():
            log.info("%s node=%s %s", ev["kind"], ev["node_id"],
                     " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("kind", "node_id")))
            self.on_event(ev)
        for ep, data, ttl in self.core.datagrams_to_send():
            try:
                if ttl:
                    self._set_ttl(ttl)
                sock.sendto(data, self._addr(ep))
            except OSError:
                self.errors["send_error"] += 1
            finally:
                if ttl:
                    self._set_ttl(0)
        due = self.core.next_timer()
        if due == self._due and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = due
        if due is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(TIMER_MIN_S, due - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._due = None
        self.core.tick(time.monotonic())
        self._pump()

    def _on_socket(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(BATCH):
            try:
                data, src = sock.recvfrom(MAX_NAT_DATAGRAM_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            frame = self.core.datagram_in(normalise((src[0], src[1])), data, time.monotonic())
            if frame is not None:
                try:
                    os.write(self._tap, frame)
                except OSError:
                    self.errors["tap_write_error"] += 1
        self._pump()

    def _on_tap(self) -> None:
        for _ in range(BATCH):
            try:
                frame = os.read(self._tap, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.core.frame_out(frame, time.monotonic())
        self._pump()

    def status(self) -> dict[str, Any]:
        v = self.core.view(time.monotonic())
        v["interface"] = self.cfg["interface"]
        v["errors"] = {k: n for k, n in self.errors.items() if n}
        return v
