"""End-to-end datapath adapter: a TUN device, one marked UDP socket, rules and routes, two worker threads,
and kernel ESP where the kernel has it.

Two paths, measured in docs/overlay.md: where the kernel has ESP with the session's AEAD (probed at
start, `esp = "auto"`), a third thread programs transport-mode xfrm states from each session's keys
(esp_plan.py decides, xfrm.py does) and packets never pass through Python; otherwise, and for every
packet until a peer's ESP states are in, the userspace path: TUN, AEAD in this process, UDP. The
adapter only moves bytes; every decision is in `Channels` (channel.py), `EspPlanner` and policy.py.

Rules and invariants:
- Two threads do the per-packet work so that no packet waits for the event loop: the sender reads the
  TUN, seals (lock-free fast path) and sends; the receiver reads the socket, opens under the lock and
  writes the TUN. Everything else that touches `Channels` (the slow path, timers, status) holds the
  same lock. libsodium, read, write and sendto release the GIL, so the two threads overlap.
- Kernel state is ours only: our rules (our protocol, our priorities), routes in our table, one
  nftables table, the TUN (gone when its fd closes). `stop()` removes all of it; `start()` first removes
  leftovers of an earlier run at the same priorities.
- Drops are counted by reason (`drops`): not_mesh (a TUN packet not from our mesh address), bad_inner
  (a decrypted packet not from the peer's address to ours), send_error, plus the core's reasons.
- The ESP thread plans under the lock and calls the kernel outside it; each result goes back to the
  plan (`done`), so the status never claims a state the kernel refused. On stop it removes its routes,
  policies and states in that order, then anything else carrying our reqid or policy priorities.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import pathlib
import random
import selectors
import socket
import struct
import subprocess  # nft with a fixed argv, never a shell # nosec B404
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from x0node.overlay import esp_plan, policy
from x0node.overlay.channel import Channels, SessionDown, SessionUp
from x0node.overlay.handshake import CIPHER_NAMES, OVERHEAD_BYTES, PURPOSE_E2E, T_DATA
from x0node.proto.identity import Identity, mesh_address_of
from x0node.proto.trust import Credential, TrustStore

log = logging.getLogger("x0node.overlay")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
READ_BYTES = 65536
BATCH_PACKETS = 64
POLL_S = 0.2
SOCKET_BUFFER_BYTES = 4 << 20
TIMER_MIN_S = 0.02
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
ESP_RECONCILE_S = 0.5
"""How often the ESP thread compares the sessions with the kernel (sooner when an offer arrives)."""
ESP_STOP_S = 15.0
ESP_TRAFFIC_S = 2.0
"""How often it reads the states' byte counters (rekey needs to know a peer is busy; status shows them)."""


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd


def cpu_has_aes(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """x86 `flags` or arm64 `Features` list AES instructions."""
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(line.split(":", 1)[0].strip() in ("flags", "Features") and " aes" in f" {line.split(':', 1)[1]} "
               for line in text.splitlines() if ":" in line)


def cipher_id(name: str) -> int:
    """The configured cipher; "auto" = AES-256-GCM where the CPU has AES instructions, else ChaCha20."""
    if name == "auto":
        name = "aes-256-gcm" if cpu_has_aes() else "chacha20-poly1305"
    return {v: k for k, v in CIPHER_NAMES.items()}[name]


def address_key(cred: Credential) -> bytes:
    return ipaddress.IPv6Address(mesh_address_of(cred.node_id)).packed


def with_ipr(fn: Callable[[Any], Any]) -> Any:
    """Run fn(IPRoute) on a private selector loop (pyroute2's sync API cannot run on uvloop)."""
    from pyroute2 import IPRoute

    loop = asyncio.SelectorEventLoop()
    try:
        with IPRoute(use_event_loop=loop) as ipr:
            return fn(ipr)
    finally:
        loop.close()


class KernelSetup:
    """Rules, routes and the nftables table of the overlay (see policy.py)."""

    def __init__(self, cfg: dict[str, Any], mesh_table: int, protocol: int, my_addr: str) -> None:
        self.cfg = cfg
        self.mesh_table = mesh_table
        self.protocol = protocol
        self.my_addr = my_addr

    def _rules(self) -> list[policy.Rule]:
        c = self.cfg
        return policy.rules(c["rule_priority"], c["fwmark"], self.mesh_table, c["table"], c.get("exempt_tcp_port"))

    def _remove_rules(self, ipr: Any) -> None:
        base = self.cfg["rule_priority"]
        prios = set(range(base, base + policy.RULE_SPAN))
        for msg in list(ipr.rule("dump", family=socket.AF_INET6)):
            if msg.get("priority") in prios and msg.get("protocol") == self.protocol:
                with contextlib.suppress(Exception):
                    ipr.rule("del", family=socket.AF_INET6, priority=msg.get("priority"), protocol=self.protocol)

    def apply(self) -> None:
        c = self.cfg

        def work(ipr: Any) -> None:
            idx = ipr.link_lookup(ifname=c["ifname"])[0]
            ipr.link("set", index=idx, mtu=c["mtu"], state="up")
            self._remove_rules(ipr)
            for prefix in c["destinations"]:
                net = ipaddress.IPv6Network(prefix)
                ipr.route("replace", family=socket.AF_INET6, dst=str(net.network_address), dst_len=net.prefixlen,
                          oif=idx, table=c["table"], prefsrc=self.my_addr, proto=self.protocol)
            for r in self._rules():
                kw: dict[str, Any] = {"family": socket.AF_INET6, "priority": r.priority, "action": r.action,
                                      "protocol": self.protocol}
                if r.table:
                    kw["table"] = r.table
                if r.fwmark is not None:
                    kw.update(fwmark=r.fwmark, fwmask=0xFFFFFFFF)
                if r.iifname is not None:
                    kw["iifname"] = r.iifname
                for name, port in (("dport_range", r.tcp_dport), ("sport_range", r.tcp_sport)):
                    if port is not None:
                        kw["ip_proto"] = socket.IPPROTO_TCP
                        kw[name] = f"{port}:{port}"
                ipr.rule("add", **kw)

        with_ipr(work)
        if c["drop_clear"]:
            script = policy.nft_script(c["ifname"], c["destinations"], c["port"], c.get("exempt_tcp_port"))
            subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True, timeout=10)  # fixed argv, no shell; nft from PATH # nosec B603 B607

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            with_ipr(self._remove_rules)
        subprocess.run(["nft", "delete", "table", "inet", policy.NFT_TABLE], capture_output=True, timeout=10)  # fixed argv, no shell; nft from PATH # nosec B603 B607

    @staticmethod
    def clear_drops() -> int:
        """Packets the drop-clear rule refused so far (0 when the table is absent)."""
        r = subprocess.run(["nft", "-j", "list", "table", "inet", policy.NFT_TABLE], capture_output=True, text=True,  # fixed argv, no shell; nft from PATH # nosec B603 B607
                           timeout=10)
        if r.returncode != 0:
            return 0
        import json

        total = 0
        for item in json.loads(r.stdout).get("nftables", []):
            for e in item.get("rule", {}).get("expr", []) or []:
                if "counter" in e:
                    total += int(e["counter"].get("packets", 0))
        return total


class E2EDatapath:
    def __init__(self, identity: Identity, trust: TrustStore, cfg: dict[str, Any], mesh_table: int, protocol: int,
                 on_event: Callable[[Any], None] = lambda ev: None) -> None:
        self.identity = identity
        self.cfg = cfg
        self.my_addr = policy.packed(identity.mesh_address)
        self.port = cfg["port"]
        self.core = Channels(identity, trust, random.SystemRandom(), time.monotonic(), PURPOSE_E2E, address_key,
                             cipher=cipher_id(cfg["cipher"]), wall=lambda now: time.time())
        self.kernel = KernelSetup(cfg, mesh_table, protocol, identity.mesh_address)
        self.lock = threading.Lock()
        self.on_event = on_event
        self.drops: dict[str, int] = {"not_mesh": 0, "bad_inner": 0, "send_error": 0}
        self.counters: dict[str, int] = {"tx_packets": 0, "rx_packets": 0}
        self._tun = -1
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dst_cache: dict[bytes, tuple[str, int]] = {}
        self._src_cache: dict[str, bytes] = {}
        self.esp: esp_plan.EspPlanner | None = None
        self.esp_reason = "off in the config" if cfg.get("esp", "auto") == "off" else "not probed"
        self._esp_wake = threading.Event()
        self._esp_bytes: dict[bytes, tuple[int, int]] = {}  # peer -> (rx, tx) bytes of its kernel states

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tun = open_tun(self.cfg["ifname"])
        try:
            await asyncio.to_thread(self.kernel.apply)
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.cfg["fwmark"])
            for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
            s.bind((self.identity.mesh_address, self.port))
            s.setblocking(False)
            self._sock = s
        except BaseException:
            await self.stop()
            raise
        targets = [("overlay-tx", self._tx_loop), ("overlay-rx", self._rx_loop)]
        if self.cfg.get("esp", "auto") == "auto":
            from x0node.overlay import xfrm

            reason = await asyncio.to_thread(xfrm.probe, self.core.cipher)
            if reason is None:
                self.esp = esp_plan.EspPlanner(self.my_addr, {self.core.cipher})
                targets.append(("overlay-esp", self._esp_loop))
            self.esp_reason = reason or ""
        for name, target in targets:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._arm()
        log.info("overlay e2e up ifname=%s mtu=%d cipher=%s destinations=%s datapath=%s%s", self.cfg["ifname"],
                 self.cfg["mtu"], CIPHER_NAMES[self.core.cipher], ",".join(self.cfg["destinations"]),
                 self.datapath, f" ({self.esp_reason})" if self.esp is None else "")

    @property
    def datapath(self) -> str:
        return "kernel-esp" if self.esp is not None else "userspace"

    async def stop(self) -> None:
        self._stop.set()
        self._esp_wake.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self._threads:  # the ESP thread removes its kernel state first: give it time
            await asyncio.to_thread(t.join, ESP_STOP_S if t.name == "overlay-esp" else 2 * POLL_S + 1)
        self._threads.clear()
        await asyncio.to_thread(self.kernel.remove)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tun >= 0:
            os.close(self._tun)
            self._tun = -1

    # --- the loop-side timer ---------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._loop is None or self._stop.is_set():
            return
        with self.lock:
            due = self.core.next_timer()
        delay = TIMER_MIN_S if due is None else max(TIMER_MIN_S, due - time.monotonic())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        with self.lock:
            self.core.tick(time.monotonic())
            self._flush()
            events = list(iter(self.core.next_event, None))
        for ev in events:
            self.on_event(ev)
        self._arm()

    # --- per-packet work (worker threads) -------------------------------------------------------------------

    def _dst(self, key: Hashable) -> tuple[str, int]:
        dst = self._dst_cache.get(key)  # type: ignore[arg-type]
        if dst is None:
            if len(self._dst_cache) > 65536:
                self._dst_cache.clear()
            dst = self._dst_cache[key] = (socket.inet_ntop(socket.AF_INET6, key), self.port)  # type: ignore[arg-type]
        return dst

    def _sendto(self, key: Hashable, data: bytes) -> None:
        try:
            self._sock.sendto(data, self._dst(key))  # type: ignore[union-attr]
        except OSError:
            self.drops["send_error"] += 1

    def _flush(self) -> None:
        """Send what the core queued (call with the lock held)."""
        for key, data in self.core.datagrams_to_send():
            self._sendto(key, data)

    def _readable(self, fileobj: Any) -> Any:
        """Yields each time `fileobj` is readable, until stop() (the caller then reads a batch)."""
        sel = selectors.DefaultSelector()
        sel.register(fileobj, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if sel.select(POLL_S):
                    yield
        finally:
            sel.close()

    def _tx_loop(self) -> None:
        core, my, tun = self.core, self.my_addr, self._tun
        rbuf = bytearray(READ_BYTES)
        view = memoryview(rbuf)
        sbuf = bytearray(READ_BYTES + OVERHEAD_BYTES)  # sealed datagrams are built here, sent at once
        for _ in self._readable(tun):
            for _ in range(BATCH_PACKETS):
                try:
                    n = os.readv(tun, [rbuf])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    return
                pkt = view[:n]
                if not policy.outbound_ok(pkt, my):
                    self.drops["not_mesh"] += 1
                    continue
                dst = bytes(pkt[24:40])
                now = time.monotonic()
                try:
                    data = core.seal(dst, pkt, now, sbuf)
                    if data is None:
                        with self.lock:
                            data = core.send(dst, bytes(pkt), now)  # may be held: a copy
                            self._flush()
                except Exception:  # noqa: BLE001 - a bug must not stop the datapath; counted, logged once
                    self._internal_error()
                    continue
                if data is None:
                    continue
                self.counters["tx_packets"] += 1
                self._sendto(dst, data)

    def _rx_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        core, my, tun, cache = self.core, self.my_addr, self._tun, self._src_cache
        rbuf = bytearray(READ_BYTES)
        view = memoryview(rbuf)
        obuf = bytearray(READ_BYTES)  # opened packets land here and go to the TUN at once
        for _ in self._readable(sock):
            for _ in range(BATCH_PACKETS):
                try:
                    n, src = sock.recvfrom_into(rbuf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    return
                src_key = cache.get(src[0])
                if src_key is None:
                    if len(cache) > 65536:
                        cache.clear()
                    try:
                        src_key = cache[src[0]] = socket.inet_pton(socket.AF_INET6, src[0].partition("%")[0])
                    except OSError:
                        continue
                with self.lock:
                    try:
                        got = core.receive(view[:n], time.monotonic(), src_key, obuf)
                    except Exception:  # noqa: BLE001 - a bug must not stop the datapath; counted, logged once
                        self._internal_error()
                        continue
                    if n and rbuf[0] != T_DATA:
                        self._flush()
                if got is None:
                    continue
                if esp_plan.is_control(got[1]):
                    if self.esp is not None:
                        with self.lock:
                            self.esp.on_offer(core, got[0], got[1])
                        self._esp_wake.set()
                    else:
                        self.drops["control_ignored"] = self.drops.get("control_ignored", 0) + 1
                    continue
                if not policy.inbound_ok(got[1], src_key, my):
                    self.drops["bad_inner"] += 1
                    continue
                self.counters["rx_packets"] += 1
                try:
                    os.write(tun, got[1])
                except OSError:
                    self.drops["send_error"] += 1

    # --- kernel ESP (its own thread: pyroute2's sync API runs its own event loop) -------------------------

    def _esp_loop(self) -> None:
        from x0node.overlay import xfrm

        esp = self.esp
        assert esp is not None
        ports = [(socket.IPPROTO_UDP, self.port)]
        if self.cfg.get("exempt_tcp_port"):
            ports.append((socket.IPPROTO_TCP, self.cfg["exempt_tcp_port"]))
        x = xfrm.Xfrm(self.cfg["table"], self.kernel.protocol, ports)
        try:
            x.remove_ours()
            x.add_bypass()
            traffic_due = 0.0
            while not self._stop.is_set():
                self._esp_wake.wait(ESP_RECONCILE_S)
                self._esp_wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self._esp_step(x, esp, time.monotonic() >= traffic_due)
                except Exception:  # noqa: BLE001 - counted, logged once; the userspace path goes on
                    self._internal_error()
                if time.monotonic() >= traffic_due:
                    traffic_due = time.monotonic() + ESP_TRAFFIC_S
        finally:
            with self.lock:
                actions = esp.removal()
            for a in actions:
                with contextlib.suppress(xfrm.XfrmError):
                    x.apply(a)
            with contextlib.suppress(Exception):
                x.remove_ours()
            x.close()

    def _esp_step(self, x: Any, esp: esp_plan.EspPlanner, read_traffic: bool) -> None:
        from x0node.overlay import xfrm

        now = time.monotonic()
        with self.lock:
            actions = esp.plan(self.core, now)
        for a in actions:
            try:
                x.apply(a)
                ok = True
            except xfrm.XfrmError as exc:
                ok = False
                log.warning("overlay esp: %s %s refused: %s", a.op, type(a.item).__name__, exc)
            with self.lock:
                esp.done(a, ok)
        if read_traffic:
            per: dict[bytes, list[int]] = {}
            for st in x.states():
                inbound = st["dst"] == self.my_addr
                peer = st["src"] if inbound else st["dst"]
                per.setdefault(peer, [0, 0])[0 if inbound else 1] += st["bytes"]
            with self.lock:
                for peer, (rx, tx) in per.items():
                    esp.note_traffic(peer, rx + tx, now)
                    self._esp_bytes[peer] = (rx, tx)
                for key in esp.rekeys(self.core, now):
                    self.core.connect(key, now)
                self._flush()
        with self.lock:
            for key, offer in esp.offers(self.core, now):
                data = self.core.send(key, offer, now)
                if data is not None:
                    self._sendto(key, data)
            self._flush()

    def _internal_error(self) -> None:
        self.drops["internal_error"] = self.drops.get("internal_error", 0) + 1
        if self.drops["internal_error"] == 1:
            log.exception("overlay datapath: packet dropped by an internal error (further ones only counted)")

    # --- views ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            peers = self.core.view(now)
            drops = {**{k: v for k, v in self.core.drops.items() if v}, **{k: v for k, v in self.drops.items() if v}}
            counters = {**self.core.counters, **self.counters}
            esp = self.esp
            if esp is not None:
                counters.update({f"esp_{k}": v for k, v in esp.counters.items()})
                for p in peers:
                    key = bytes.fromhex(p["key"])
                    p["path"] = esp.path_of(key)
                    p["esp_rx_bytes"], p["esp_tx_bytes"] = self._esp_bytes.get(key, (0, 0))
            else:
                for p in peers:
                    p["path"] = "userspace"
        return {"ifname": self.cfg["ifname"], "cipher": CIPHER_NAMES[self.core.cipher], "mtu": self.cfg["mtu"],
                "datapath": self.datapath, "esp_unavailable": self.esp_reason if esp is None else None,
                "destinations": list(self.cfg["destinations"]), "peers": peers, "drops": drops, "counters": counters}


def describe_event(ev: SessionUp | SessionDown) -> dict[str, Any]:
    key = ev.key
    addr = socket.inet_ntop(socket.AF_INET6, key) if isinstance(key, bytes) and len(key) == 16 else str(key)
    d: dict[str, Any] = {"kind": f"Overlay{type(ev).__name__}", "peer": addr, "node_id": ev.node_id}
    if isinstance(ev, SessionUp):
        d.update(cipher=ev.cipher, initiator=ev.initiator)
    else:
        d["reason"] = ev.reason
    return d
