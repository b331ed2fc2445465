"""Data-plane probe adapter: ICMPv6 echo requests pinned through a chosen neighbour, answers matched.

Rules and invariants:
- Link probes (destination = the neighbour, at its link-local address) go out through the raw ICMPv6
  socket with the interface as scope: the kernel picks our link-local source and the checksum, and
  the answer cannot leave the link. Every other probe is pinned:
- Send: one AF_PACKET/SOCK_DGRAM socket (protocol 0, so it receives nothing). Each probe is a whole
  IPv6 packet, our mesh address -> the destination's mesh address, carrying an ICMPv6 echo request,
  handed to the kernel with the *neighbour's* link-layer address; the kernel adds the link-layer
  header. The neighbour forwards it like any transit packet, whatever our own routes say, so a
  neighbour that drops forwarded traffic drops our probes too (Linux has no IPV6_NEXTHOP for raw or
  datagram sockets, hence the packet socket). Needs CAP_NET_RAW (the unit grants it).
- The neighbour's link-layer address comes from the kernel neighbour cache for its link-local
  address (our hellos keep the entry fresh), read over netlink in a worker thread and cached for
  LLADDR_CACHE_S. A probe that cannot be sent (no cache entry, interface gone, send error) is
  reported unsent, never as lost, and counted by reason.
- Receive: one raw ICMPv6 socket whose ICMP6_FILTER passes only echo replies (RFC 3542 section 3.2).
  A reply counts only if its identifier is ours and its payload starts with our random token and the
  probe id; everything else is counted and ignored. At most MAX_READS_PER_WAKEUP datagrams are read
  per wakeup, so a flood cannot starve the loop.
- An answer's time is the kernel's receive timestamp (SO_TIMESTAMPNS), not the moment the loop got
  round to reading it, and the owner calls `drain()` before it times probes out: a daemon whose loop
  was held up (a busy host) does not count answers that were waiting in the socket as lost.
- Checksums follow RFC 4443 section 2.3 over the RFC 8200 section 8.1 pseudo-header.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

from x0node.healing.probe import ProbeRequest

log = logging.getLogger("x0node.healing.probe")

ETH_P_IPV6 = 0x86DD
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
ICMP6_FILTER = 1  # <netinet/icmp6.h>
HOP_LIMIT = 64
PAYLOAD_BYTES = 24  # token (8) + probe id (2) + padding; 64-byte packets in all
LLADDR_CACHE_S = 30.0
MAX_READS_PER_WAKEUP = 64
MAX_LLADDR_CACHE = 1024
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # <asm-generic/socket.h>
MAX_TIMESTAMP_AGE_S = 60.0  # older than this (or from the future): a clock step, use now


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_packet(src: str, dst: str, ident: int, seq: int, payload: bytes) -> bytes:
    """An IPv6 packet carrying an ICMPv6 echo request, checksum filled in."""
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    icmp = struct.pack("!BBHHH", ICMP6_ECHO_REQUEST, 0, 0, ident, seq) + payload
    pseudo = s + d + struct.pack("!I3xB", len(icmp), socket.IPPROTO_ICMPV6)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 6 << 28, len(icmp), socket.IPPROTO_ICMPV6, HOP_LIMIT) + s + d
    return header + icmp


def parse_reply(data: bytes, ident: int, token: bytes) -> int | None:
    """The probe id of an echo reply that is ours (ICMPv6 message, no IPv6 header), else None."""
    if len(data) < 8 + len(token) + 2:
        return None
    kind, _code, _csum, rid, seq = struct.unpack("!BBHHH", data[:8])
    if kind != ICMP6_ECHO_REPLY or rid != ident or data[8:8 + len(token)] != token:
        return None
    (pid,) = struct.unpack("!H", data[8 + len(token):10 + len(token)])
    return pid if pid == seq else None


def _echo_filter() -> bytes:
    words = [0xFFFFFFFF] * 8  # block everything ...
    words[ICMP6_ECHO_REPLY >> 5] &= ~(1 << (ICMP6_ECHO_REPLY & 31))  # ... but echo replies
    return struct.pack("=8I", *words)


class NeighbourCache:
    """Link-local address -> link-layer address from the kernel's neighbour table (netlink)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cache: collections.OrderedDict[tuple[str, str], tuple[bytes | None, float]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._ipr = None

    def lookup_cached(self, ifname: str, address: str) -> bytes | None | bool:
        """The cached answer; False when it must be (re)read."""
        hit = self._cache.get((ifname, address))
        if hit is None or self._clock() - hit[1] > LLADDR_CACHE_S:
            return False
        return hit[0]

    def read(self, ifname: str, address: str) -> bytes | None:
        """Blocking netlink read (call from a worker thread)."""
        from pyroute2 import IPRoute

        mac: bytes | None = None
        with self._lock:
            try:
                if self._ipr is None:
                    self._ipr = IPRoute()
                idx = socket.if_nametoindex(ifname)
                for msg in self._ipr.get_neighbours(family=socket.AF_INET6, ifindex=idx, dst=address):
                    ll = msg.get_attr("NDA_LLADDR")
                    if ll and msg["state"] not in (0x01, 0x20):  # INCOMPLETE, FAILED
                        mac = bytes.fromhex(ll.replace(":", ""))
                        break
            except (OSError, ValueError) as exc:
                log.debug("neighbour lookup %s%%%s failed: %s", address, ifname, exc)
        self._cache[(ifname, address)] = (mac, self._clock())
        while len(self._cache) > MAX_LLADDR_CACHE:
            self._cache.popitem(last=False)
        return mac

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None


class IcmpProber:
    """Sends ProbeRequests and calls `on_answer(probe_id, now)` for each matching echo reply."""

    def __init__(self, source: str, on_answer: Callable[[int, float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = str(ipaddress.IPv6Address(source))
        self._on_answer = on_answer
        self._clock = clock
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.token = os.urandom(8)
        self.neighbours = NeighbourCache(clock)
        self.drops: collections.Counter[str] = collections.Counter()
        self._tx: socket.socket | None = None
        self._rx: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self._tx.setblocking(False)
        self._rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self._rx.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _echo_filter())
        self._rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._rx.setblocking(False)
        loop.add_reader(self._rx.fileno(), self.drain)

    def close(self) -> None:
        if self._rx is not None and self._loop is not None:
            self._loop.remove_reader(self._rx.fileno())
        for s in (self._tx, self._rx):
            if s is not None:
                s.close()
        self._tx = self._rx = None
        self.neighbours.close()

    async def send(self, req: ProbeRequest) -> str | None:
        """Send one probe; None when sent, else the reason it was not (also counted in `drops`)."""
        t = req.target
        if t.via and t.dest == t.via:  # link probe: to the neighbour's link-local address, answered over the link
            return self._send_link(req)
        mac = self.neighbours.lookup_cached(t.ifname, t.via_address)
        if mac is False:
            mac = await asyncio.to_thread(self.neighbours.read, t.ifname, t.via_address)
        if not mac:
            return self._unsent("no_lladdr")
        if self._tx is None:
            return self._unsent("closed")
        payload = self.token + struct.pack("!H", req.probe_id)
        payload += b"\0" * (PAYLOAD_BYTES - len(payload))
        try:
            pkt = echo_packet(self.source, t.dest_address, self.ident, req.probe_id, payload)
        except ValueError:
            return self._unsent("bad_address")
        try:
            self._tx.sendto(pkt, (t.ifname, ETH_P_IPV6, 0, 0, mac))
        except OSError as exc:
            return self._unsent(f"send_{type(exc).__name__}")
        return None

    def _send_link(self, req: ProbeRequest) -> str | None:
        """An echo request to a link-local address on the probe's interface, through the raw ICMPv6
        socket: the kernel picks our link-local source and fills in the checksum (RFC 3542 section
        3.1), and the answer comes back to that source, over the same link."""
        t = req.target
        if self._rx is None:
            return self._unsent("closed")
        try:
            addr = ipaddress.IPv6Address(t.dest_address.split("%", 1)[0])
            if not addr.is_link_local:
                return self._unsent("bad_address")
            scope = socket.if_nametoindex(t.ifname)
        except (ValueError, OSError):
            return self._unsent("bad_address")
        payload = self.token + struct.pack("!H", req.probe_id)
        payload += b"\0" * (PAYLOAD_BYTES - len(payload))
        icmp = struct.pack("!BBHHH", ICMP6_ECHO_REQUEST, 0, 0, self.ident, req.probe_id) + payload
        try:
            self._rx.sendto(icmp, (str(addr), 0, 0, scope))
        except OSError as exc:
            return self._unsent(f"send_{type(exc).__name__}")
        return None

    def _unsent(self, reason: str) -> str:
        self.drops[reason] += 1
        return reason

    def drain(self) -> None:
        """Read the answers waiting in the socket (at most MAX_READS_PER_WAKEUP)."""
        if self._rx is None:
            return
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data, anc, _flags, _addr = self._rx.recvmsg(2048, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.drops["recv_error"] += 1
                return
            pid = parse_reply(data, self.ident, self.token)
            if pid is None:
                self.drops["not_ours"] += 1
                continue
            self._on_answer(pid, self._received_at(anc))

    def _received_at(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        """The kernel's receive time on our monotonic clock (now, when it is missing or odd)."""
        now = self._clock()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack("=qq", data[:16])
                age = time.time() - (sec + nsec / 1e9)
                if 0.0 <= age <= MAX_TIMESTAMP_AGE_S:
                    return now - age
        return now
