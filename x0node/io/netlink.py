"""Netlink adapter (pyroute2, asyncio): our mesh address, our routes and rule, and link events.

Rules and invariants:
- Everything we install carries our protocol number (`protocol`) and lives in our table (`table`),
  plus one IPv6 rule `from all lookup <table>` tagged with the same protocol. We never modify, replace
  or flush anything without both marks; `flush_stale()` and `withdraw_all()` select by both.
- Route changes are applied in order per destination; several pending changes for one destination
  collapse into the last one (the kernel only needs the final state). A change of metric alone is not
  written: every route of ours carries the same kernel priority, so the kernel route would not change.
- A failed kernel call is logged and counted, never raised into the daemon's loop: routing goes on
  and the next change for that destination retries.
- Link events for the configured mesh interfaces are reported as transitions of "usable"
  (administratively up and carrier present) and reported at once.
- Per-interface settings written under /proc/sys/net/ipv6/conf/<if>/ are only those a mesh interface
  needs; they are read from and written to the network namespace the daemon runs in.
- Route writes are the hot path (a topology change rewrites many routes at once, on every node): they
  go out as raw rtnetlink requests encoded here (`RouteWriter`), many per datagram, on the loop's own
  thread. The kernel handles a request to itself inside `send`, so every acknowledgement is waiting
  when `send` returns and is read at once: no thread, no round trip through the loop. Everything else
  (addresses, the rule, dumps, link events) is rare and goes through pyroute2.
- Threads: pyroute2's asyncio sockets do not run on uvloop, so every other rtnetlink request goes
  through one worker thread owning one synchronous socket (requests stay ordered), and link events are
  read by one reader thread that hands them to the loop with `call_soon_threadsafe`. No other state is
  shared.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import pathlib
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("x0node.io.netlink")

RTMGRP_LINK = 0x1
ROUTE_BATCH_MAX = 256  # route requests per netlink datagram
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
AF_INET6 = 10
FR_ACT_TO_TBL = 1  # fib rule action "lookup table"
SYSCTL_ROOT = pathlib.Path("/proc/sys/net/ipv6/conf")
# Settings a mesh interface needs: forward, take no router advertisements, no DAD delay before the
# link-local address is usable, and do not use routes whose interface has lost carrier.
MESH_IF_SYSCTLS: dict[str, str] = {
    "forwarding": "1",
    "accept_ra": "0",
    "accept_dad": "0",
    "ignore_routes_with_linkdown": "1",
}


@dataclass(frozen=True)
class KernelRoute:
    dest: str  # "addr/len"
    ifname: str
    via: str | None  # link-local next hop; None = on-link
    metric: int


def write_sysctl(ifname: str, key: str, value: str, root: pathlib.Path = SYSCTL_ROOT) -> bool:
    path = root / ifname / key
    try:
        if path.read_text().strip() == value:
            return True
        path.write_text(value)
        return True
    except OSError as exc:
        log.warning("sysctl %s=%s failed: %s", path, value, exc.strerror)
        return False


def configure_interface(ifname: str, root: pathlib.Path = SYSCTL_ROOT) -> None:
    """IPv6 settings for a mesh interface, and global forwarding in this namespace."""
    write_sysctl("all", "forwarding", "1", root)
    for key, value in MESH_IF_SYSCTLS.items():
        write_sysctl(ifname, key, value, root)


# rtnetlink framing (RFC 3549 section 2.3.2; layouts from linux/netlink.h and linux/rtnetlink.h)
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTA = struct.Struct("=HH")  # attribute length, type
_NLMSGERR = struct.Struct("=i")
NLMSG_ERROR = 2
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTN_UNICAST = 1
RT_TABLE_UNSPEC = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements carry the request's header only
NETLINK_SOCKET_BUFFER = 1 << 20


def _rta(kind: int, value: bytes) -> bytes:
    # every attribute here is 4 or 16 bytes long: already aligned to NLA_ALIGNTO (4)
    return _RTA.pack(_RTA.size + len(value), kind) + value


def encode_route_request(seq: int, op: str, dest: str, table: int, protocol: int, priority: int,
                         oif: int = 0, via: str | None = None, prefsrc: str | None = None) -> bytes:
    """One RTM_NEWROUTE (op "replace": create or replace) or RTM_DELROUTE (op "del") request for an
    IPv6 destination "addr/len", acknowledged. A table above 255 goes in RTA_TABLE."""
    addr, _, plen = dest.partition("/")
    attrs = [_rta(RTA_DST, socket.inet_pton(socket.AF_INET6, addr)), _rta(RTA_PRIORITY, struct.pack("=I", priority))]
    if table > 255:
        attrs.append(_rta(RTA_TABLE, struct.pack("=I", table)))
    if op == "del":
        kind, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    else:
        kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        attrs.append(_rta(RTA_OIF, struct.pack("=I", oif)))
        if via:
            attrs.append(_rta(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, via.split("%", 1)[0])))
        if prefsrc:
            attrs.append(_rta(RTA_PREFSRC, socket.inet_pton(socket.AF_INET6, prefsrc)))
    body = _RTMSG.pack(AF_INET6, int(plen or 128), 0, 0, table if table <= 255 else RT_TABLE_UNSPEC, protocol,
                       0, RTN_UNICAST, 0) + b"".join(attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def decode_acks(data: bytes) -> list[tuple[int, int]]:
    """(sequence, errno) of every acknowledgement in a datagram from the kernel (errno 0 = done).
    A truncated or malformed tail is ignored."""
    out = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            break
        if kind == NLMSG_ERROR and length >= _NLMSGHDR.size + _NLMSGERR.size:
            (err,) = _NLMSGERR.unpack_from(data, off + _NLMSGHDR.size)
            out.append((seq, -err))
        off += (length + 3) & ~3
    return out


class RouteWriter:
    """Our route changes as raw rtnetlink requests on one socket, applied synchronously."""

    def __init__(self, table: int, protocol: int, priority: int) -> None:
        self.table = table
        self.protocol = protocol
        self.priority = priority
        self._seq = 0
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, NETLINK_SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NETLINK_SOCKET_BUFFER)
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                pass  # older kernels echo the whole request; decode_acks reads both forms
            sock.bind((0, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def apply(self, work: list[tuple[str, str, int, str | None, str | None]]) -> list[int]:
        """Apply (op, dest, oif, via, prefsrc) changes in order; errno per change (0 = done)."""
        results = [0] * len(work)
        for start in range(0, len(work), ROUTE_BATCH_MAX):
            chunk = work[start:start + ROUTE_BATCH_MAX]
            seqs: dict[int, int] = {}
            parts = []
            for i, (op, dest, oif, via, prefsrc) in enumerate(chunk, start):
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                seqs[self._seq] = i
                parts.append(encode_route_request(self._seq, op, dest, self.table, self.protocol, self.priority,
                                                  oif, via, prefsrc))
            try:
                self.sock.send(b"".join(parts))
            except OSError as exc:
                for i in seqs.values():
                    results[i] = exc.errno or errno.EIO
                continue
            # the kernel handled the requests inside send(): their acknowledgements are queued now
            while seqs:
                try:
                    data = self.sock.recv(NETLINK_SOCKET_BUFFER)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ENOBUFS: acknowledgements lost; the outcome is unknown
                    log.warning("route acknowledgements lost: %s", exc.strerror)
                    break
                for seq, err in decode_acks(data):
                    i = seqs.pop(seq, None)
                    if i is not None:
                        results[i] = err
        return results

    def close(self) -> None:
        self.sock.close()


class NetlinkAdapter:
    """Our routes, rule and mesh address in the kernel, through one rtnetlink socket."""

    def __init__(self, table: int, protocol: int, rule_priority: int, route_priority: int) -> None:
        self.table = table
        self.protocol = protocol
        self.rule_priority = rule_priority
        self.route_priority = route_priority
        self._ipr: Any = None
        self._pool: Any = None
        self._ifindex: dict[str, int] = {}
        self.installed: dict[str, KernelRoute] = {}
        self._pending: dict[str, tuple[str, KernelRoute]] = {}
        self._writer: RouteWriter | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._unsure: set[str] = set()  # installed, but the kernel may have dropped them since
        self.mesh_addr: str | None = None
        self._lo_addr_added = False
        self._rule_added = False
        self.errors = 0
        self.applied = 0

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one rtnetlink request on the worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def open(self) -> None:
        from pyroute2 import IPRoute

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")

        def make() -> None:
            self._ipr = IPRoute()

        await self._call(make)
        self._writer = RouteWriter(self.table, self.protocol, self.route_priority)

    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._ipr is not None:
            ipr = self._ipr
            await self._call(ipr.close)
            self._ipr = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def ifindex_now(self, ifname: str, refresh: bool = False) -> int | None:
        """The interface's index in our namespace (cached; `refresh` asks the kernel again), None if
        it does not exist. A name-to-index lookup is one ioctl: no trip to the netlink thread."""
        if not refresh and ifname in self._ifindex:
            return self._ifindex[ifname]
        try:
            idx = socket.if_nametoindex(ifname)
        except OSError:
            self._ifindex.pop(ifname, None)
            return None
        self._ifindex[ifname] = idx
        return idx

    async def ifindex(self, ifname: str, refresh: bool = False) -> int | None:
        return self.ifindex_now(ifname, refresh)

    def forget_ifindex(self, ifname: str) -> None:
        self._ifindex.pop(ifname, None)

    async def link_state(self, ifname: str) -> bool | None:
        """True if the interface is up with carrier, False if not, None if it does not exist."""
        idx = await self.ifindex(ifname, refresh=True)
        if idx is None:
            return None
        msgs = await self._call(lambda: list(self._ipr.link("get", index=idx)))
        for msg in msgs:
            flags = msg["flags"]
            return bool(flags & IFF_UP and flags & IFF_LOWER_UP)
        return None

    # --- mesh address and rule -------------------------------------------------------------------

    async def add_mesh_address(self, addr: str) -> None:
        """Put addr/128 on lo (lo is brought up if needed)."""
        lo = await self.ifindex("lo")
        assert lo is not None
        await self._call(lambda: self._ipr.link("set", index=lo, state="up"))
        self.mesh_addr = addr
        try:
            await self._call(lambda: self._ipr.addr("add", index=lo, address=addr, prefixlen=128))
            self._lo_addr_added = True
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", None) != errno.EEXIST:
                raise
            self._lo_addr_added = True  # ours from a previous run of this node (same key)

    async def remove_mesh_address(self) -> None:
        if not self._lo_addr_added or self.mesh_addr is None:
            return
        lo = await self.ifindex("lo")
        try:
            addr = self.mesh_addr
            await self._call(lambda: self._ipr.addr("del", index=lo, address=addr, prefixlen=128))
        except Exception as exc:  # noqa: BLE001
            log.debug("removing mesh address: %s", exc)
        self._lo_addr_added = False

    async def add_rule(self) -> None:
        await self._delete_our_rules()
        await self._call(lambda: self._ipr.rule(
            "add", family=AF_INET6, table=self.table, priority=self.rule_priority,
            action=FR_ACT_TO_TBL, protocol=self.protocol,
        ))
        self._rule_added = True

    async def _delete_our_rules(self) -> None:
        rules = await self._call(lambda: list(self._ipr.rule("dump", family=AF_INET6)))
        for msg in rules:
            if msg.get("protocol") == self.protocol and msg.get("table") == self.table:
                prio = msg.get("priority")
                try:
                    await self._call(lambda prio=prio: self._ipr.rule(
                        "del", family=AF_INET6, table=self.table, priority=prio, protocol=self.protocol,
                    ))
                except Exception as exc:  # noqa: BLE001
                    log.debug("removing rule: %s", exc)

    # --- routes ----------------------------------------------------------------------------------

    async def our_routes(self) -> list[dict[str, Any]]:
        """Routes in the kernel carrying both our table and our protocol."""
        msgs = await self._call(lambda: list(self._ipr.route("dump", family=AF_INET6, table=self.table)))
        return [m for m in msgs if m["proto"] == self.protocol and m.get("table") == self.table]

    async def flush_stale(self) -> int:
        """Remove our routes left in the kernel by an earlier run that did not exit cleanly."""
        count = 0
        for msg in await self.our_routes():
            dst = msg.get("dst")
            if dst is None:
                continue
            try:
                await self._del_route(f"{dst}/{msg['dst_len']}", msg.get("priority"))
                count += 1
            except Exception as exc:  # noqa: BLE001
                log.debug("stale route %s: %s", dst, exc)
        return count

    async def _del_route(self, dest: str, priority: int | None) -> None:
        await self._call(lambda: self._ipr.route(
            "del", dst=dest, table=self.table, proto=self.protocol, priority=priority, family=AF_INET6,
        ))

    def submit(self, op: str, route: KernelRoute) -> None:
        """Queue a change ("add", "replace" or "del"); applied in order, once the current loop step
        ends (changes queued in one step for one destination collapse into the last)."""
        if op not in ("add", "replace", "del"):
            raise ValueError(f"unknown route op {op!r}")
        ipaddress.IPv6Network(route.dest, strict=False)  # local misuse raises here, not in the flush
        self._pending.pop(route.dest, None)
        self._pending[route.dest] = (op, route)
        if self._flush_handle is None and self._writer is not None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    async def settle(self) -> None:
        """Apply every submitted change now."""
        self.flush()

    def link_changed(self, ifname: str) -> None:
        """The interface went down or up: the kernel may have dropped our routes through it, so the
        next change for each of them is written even if it looks like no change."""
        self._unsure.update(d for d, r in self.installed.items() if r.ifname == ifname)

    def flush(self) -> None:
        """Write the pending changes to the kernel and account for each outcome."""
        self._flush_handle = None
        if not self._pending or self._writer is None:
            return
        batch = list(self._pending.values())
        self._pending.clear()
        work: list[tuple[str, str, int, str | None, str | None]] = []
        routes: list[KernelRoute] = []
        for op, route in batch:
            if op == "del":
                if self.installed.pop(route.dest, None) is None:
                    continue
                work.append(("del", route.dest, 0, None, None))
                routes.append(route)
                continue
            have = self.installed.get(route.dest)
            if have is not None and (have.ifname, have.via) == (route.ifname, route.via) \
                    and route.dest not in self._unsure:
                self.installed[route.dest] = route  # only the metric moved: the kernel route is the same
                continue
            oif = self.ifindex_now(route.ifname)
            if oif is None:
                self.errors += 1
                self.installed.pop(route.dest, None)
                log.warning("route %s %s: no interface %s", op, route.dest, route.ifname)
                continue
            work.append(("replace", route.dest, oif, route.via, self.mesh_addr))
            routes.append(route)
        results = self._writer.apply(work)
        for (op, *_), route, err in zip(work, routes, results, strict=True):
            self._unsure.discard(route.dest)
            if err == 0:
                self.applied += 1
                if op != "del":
                    self.installed[route.dest] = route
                continue
            if op == "del" and err in (errno.ESRCH, errno.ENOENT):
                continue  # the kernel already dropped it (interface went down)
            if err == errno.ENODEV:
                self.forget_ifindex(route.ifname)  # recreated interfaces get a new index
            self.errors += 1
            if op != "del":
                self.installed.pop(route.dest, None)
            log.warning("route %s %s via %s dev %s failed: %s", op, route.dest, route.via, route.ifname,
                        os.strerror(err))

    async def withdraw_all(self) -> None:
        """Remove every route, the rule and the mesh address we installed (used at exit)."""
        self._pending.clear()
        for msg in await self.our_routes():
            dst = msg.get("dst")
            if dst is None:
                continue
            try:
                await self._del_route(f"{dst}/{msg['dst_len']}", msg.get("priority"))
            except Exception as exc:  # noqa: BLE001
                log.debug("withdraw %s: %s", dst, exc)
        self.installed.clear()
        if self._rule_added:
            await self._delete_our_rules()
            self._rule_added = False
        await self.remove_mesh_address()


class LinkMonitor:
    """Reports usable/unusable transitions of the mesh interfaces from rtnetlink link messages."""

    def __init__(self, ifnames: list[str], on_change: Callable[[str, bool], None]) -> None:
        self._ifnames = set(ifnames)
        self._on_change = on_change
        self.state: dict[str, bool] = {}
        self._ipr: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False

    async def open(self, initial: dict[str, bool]) -> None:
        from pyroute2 import IPRoute

        self.state = dict(initial)
        self._loop = asyncio.get_running_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                self._ipr = IPRoute()
                self._ipr.bind(groups=RTMGRP_LINK)
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                ready.set()
                return
            ready.set()
            while self._running:
                try:
                    msgs = list(self._ipr.get())
                except Exception:  # noqa: BLE001 - socket closed at shutdown, or a garbled message
                    if not self._running:
                        return
                    log.exception("link event read failed")
                    continue
                for msg in msgs:
                    if self._loop is not None and self._running:
                        self._loop.call_soon_threadsafe(self.handle, msg)

        self._running = True
        self._thread = threading.Thread(target=reader, name="netlink-links", daemon=True)
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait)
        if failure:
            raise failure[0]

    async def close(self) -> None:
        self._running = False
        self._loop = None
        # the reader thread is a daemon blocked in recv; it ends with the process

    def handle(self, msg: Any) -> None:
        event = msg.get("event") if hasattr(msg, "get") else None
        if event not in ("RTM_NEWLINK", "RTM_DELLINK") or not self._running:
            return
        name = msg.get("ifname")
        if name not in self._ifnames:
            return
        usable = event == "RTM_NEWLINK" and bool(msg["flags"] & IFF_UP and msg["flags"] & IFF_LOWER_UP)
        if self.state.get(name) == usable:
            return
        self.state[name] = usable
        self._on_change(name, usable)
