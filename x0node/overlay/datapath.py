"""End-to-end datapath adapter: a TUN device, one marked UDP socket, rules and routes, two worker threads.

Why userspace and not kernel ESP: docs/overlay.md (this host's kernel has no ESP and no AEAD
templates; the measured userspace path with a large TUN MTU carries more than yggdrasil on the same
path). The adapter only moves bytes; every decision is in `Channels` (channel.py) and policy.py.

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

from x0node.overlay import policy
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
        for name, target in (("overlay-tx", self._tx_loop), ("overlay-rx", self._rx_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._arm()
        log.info("overlay e2e up ifname=%s mtu=%d cipher=%s destinations=%s", self.cfg["ifname"], self.cfg["mtu"],
                 CIPHER_NAMES[self.core.cipher], ",".join(self.cfg["destinations"]))

    async def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self._threads:
            await asyncio.to_thread(t.join, 2 * POLL_S + 1)
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
                if not policy.inbound_ok(got[1], src_key, my):
                    self.drops["bad_inner"] += 1
                    continue
                self.counters["rx_packets"] += 1
                try:
                    os.write(tun, got[1])
                except OSError:
                    self.drops["send_error"] += 1

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
        return {"ifname": self.cfg["ifname"], "cipher": CIPHER_NAMES[self.core.cipher], "mtu": self.cfg["mtu"],
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
