"""UDP adapter: one IPv6 socket per mesh interface, link-local multicast for hellos, unicast on demand.

Rules and invariants:
- Each socket is bound to its interface (SO_BINDTODEVICE) and to the mesh port, joined to the mesh
  link-local multicast group on that interface only; our own multicast is not looped back.
- Every datagram is sent with hop limit 255 and a received datagram is accepted only if it arrives
  with hop limit 255 and from an IPv6 link-local source (GTSM, RFC 5082): routing messages never
  come from further than one link away. Anything else is dropped and counted by reason.
- A read callback handles at most `MAX_DATAGRAMS_PER_WAKEUP` datagrams before yielding to the loop;
  a datagram larger than `MAX_DATAGRAM_BYTES` is truncated by the kernel and dropped here.
- Send errors (interface down, no buffer) are counted and dropped, never raised: the routing core
  recovers through its own timers.
- With `rx_timestamps`, each socket asks the kernel for receive timestamps (SO_TIMESTAMPNS: taken when
  the datagram entered the stack, before it waited in the socket) and `deliver` gets the stamp as a
  fourth argument (seconds, CLOCK_REALTIME; None when the kernel gave none). The routing core uses
  only differences of stamps (probe trains), so the clock's epoch does not matter.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("x0node.io.udp")

MAX_DATAGRAM_BYTES = 9000
MAX_DATAGRAMS_PER_WAKEUP = 64
GTSM_HOP_LIMIT = 255
SOCKET_RCVBUF_BYTES = 1 << 20
IPV6_HOPLIMIT_CMSG = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # SCM_TIMESTAMPNS has the same value
TIMESPEC = struct.Struct("@qq")

Receiver = Callable[..., None]  # (ifname, source link-local, payload[, kernel receive stamp or None])


class MeshSocket:
    """The socket of one mesh interface."""

    def __init__(self, ifname: str, ifindex: int, port: int, group: str, drops: collections.Counter[str],
                 rx_timestamps: bool = False) -> None:
        self.ifname = ifname
        self.ifindex = ifindex
        self.port = port
        self.group = group
        self.drops = drops
        self.rx_timestamps = rx_timestamps
        self._cmsg_size = socket.CMSG_SPACE(4) + (socket.CMSG_SPACE(TIMESPEC.size) if rx_timestamps else 0)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            if rx_timestamps:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RCVBUF_BYTES)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, GTSM_HOP_LIMIT)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, GTSM_HOP_LIMIT)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.bind(("::", port))
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def send(self, dst: str | None, payload: bytes) -> bool:
        addr = (dst or self.group).split("%", 1)[0]
        try:
            self.sock.sendto(payload, (addr, self.port, 0, self.ifindex))
            return True
        except OSError as exc:
            self.drops[f"send_{errno.errorcode.get(exc.errno or 0, 'error').lower()}"] += 1
            return False

    def read_batch(self, deliver: Receiver) -> int:
        n = 0
        while n < MAX_DATAGRAMS_PER_WAKEUP:
            try:
                data, ancdata, flags, addr = self.sock.recvmsg(MAX_DATAGRAM_BYTES + 1, self._cmsg_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.drops[f"recv_{errno.errorcode.get(exc.errno or 0, 'error').lower()}"] += 1
                break
            n += 1
            if flags & socket.MSG_TRUNC or len(data) > MAX_DATAGRAM_BYTES:
                self.drops["too_large"] += 1
                continue
            hops = stamp = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT_CMSG and len(value) >= 4:
                    hops = struct.unpack("@i", value[:4])[0]
                elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
                    sec, nsec = TIMESPEC.unpack(value[: TIMESPEC.size])
                    stamp = sec + nsec * 1e-9
            if hops != GTSM_HOP_LIMIT:
                self.drops["hop_limit"] += 1
                continue
            src = addr[0].split("%", 1)[0]
            if not src.lower().startswith("fe80:"):
                self.drops["not_link_local"] += 1
                continue
            if self.rx_timestamps:
                deliver(self.ifname, src, data, stamp)
            else:
                deliver(self.ifname, src, data)
        return n

    def close(self) -> None:
        self.sock.close()


class MeshTransport:
    """All mesh sockets of the node. `deliver(ifname, src, data)` is called for every accepted
    datagram; `after_batch()` once per read wake-up (the driver pumps the core there)."""

    def __init__(self, port: int, group: str, deliver: Receiver, after_batch: Callable[[], None],
                 rx_timestamps: bool = False) -> None:
        self.port = port
        self.group = group
        self.rx_timestamps = rx_timestamps
        self._deliver = deliver
        self._after_batch = after_batch
        self.sockets: dict[str, MeshSocket] = {}
        self.drops: collections.Counter[str] = collections.Counter()
        self.sent_datagrams = 0
        self.sent_bytes = 0
        self.received_datagrams = 0

    def open_interface(self, ifname: str, ifindex: int) -> bool:
        old = self.sockets.get(ifname)
        if old is not None and old.ifindex == ifindex:
            return True
        self.close_interface(ifname)
        try:
            ms = MeshSocket(ifname, ifindex, self.port, self.group, self.drops, self.rx_timestamps)
        except OSError as exc:
            log.warning("cannot open mesh socket on %s: %s", ifname, exc)
            return False
        self.sockets[ifname] = ms
        asyncio.get_running_loop().add_reader(ms.sock.fileno(), self._on_readable, ms)
        return True

    def close_interface(self, ifname: str) -> None:
        ms = self.sockets.pop(ifname, None)
        if ms is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(ms.sock.fileno())
        except RuntimeError:
            pass
        ms.close()

    def _counted_deliver(self, ifname: str, src: str, data: bytes, *stamp: float | None) -> None:
        self.received_datagrams += 1
        self._deliver(ifname, src, data, *stamp)

    def _on_readable(self, ms: MeshSocket) -> None:
        if ms.read_batch(self._counted_deliver):
            self._after_batch()

    def drain(self) -> int:
        """Read whatever waits on every socket now (without waiting for the loop to report it)."""
        n = 0
        for ms in list(self.sockets.values()):
            n += ms.read_batch(self._counted_deliver)
        return n

    def send(self, ifname: str, dst: str | None, payload: bytes) -> bool:
        ms = self.sockets.get(ifname)
        if ms is None:
            self.drops["send_no_socket"] += 1
            return False
        ok = ms.send(dst, payload)
        if ok:
            self.sent_datagrams += 1
            self.sent_bytes += len(payload)
        return ok

    def close(self) -> None:
        for name in list(self.sockets):
            self.close_interface(name)
