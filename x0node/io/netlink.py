"""Netlink adapter (pyroute2, asyncio): our mesh address, our routes and rule, and link events.

Rules and invariants:
- Everything we install carries our protocol number (`protocol`) and lives in our table (`table`),
  plus one IPv6 rule `from all lookup <table>` tagged with the same protocol. We never modify, replace
  or flush anything without both marks; `flush_stale()` and `withdraw_all()` select by both.
- Route changes are applied in order per destination; several pending changes for one destination
  collapse into the last one (the kernel only needs the final state).
- A failed kernel call is logged and counted, never raised into the daemon's loop: routing goes on
  and the next change for that destination retries.
- Link events for the configured mesh interfaces are reported as transitions of "usable"
  (administratively up and carrier present) and reported at once.
- Per-interface settings written under /proc/sys/net/ipv6/conf/<if>/ are only those a mesh interface
  needs; they are read from and written to the network namespace the daemon runs in.
- Threads: pyroute2's asyncio sockets do not run on uvloop, so every rtnetlink request goes through one
  worker thread owning one synchronous socket (requests stay ordered), and link events are read by one
  reader thread that hands them to the loop with `call_soon_threadsafe`. No other state is shared.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import pathlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("x0node.io.netlink")

RTMGRP_LINK = 0x1
ROUTE_BATCH_MAX = 256  # route changes applied per trip to the netlink thread
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
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
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
        self._task = asyncio.get_running_loop().create_task(self._apply_loop(), name="netlink-routes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._ipr is not None:
            ipr = self._ipr
            await self._call(ipr.close)
            self._ipr = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def ifindex(self, ifname: str, refresh: bool = False) -> int | None:
        if not refresh and ifname in self._ifindex:
            return self._ifindex[ifname]
        found = await self._call(lambda: self._ipr.link_lookup(ifname=ifname))
        if not found:
            self._ifindex.pop(ifname, None)
            return None
        self._ifindex[ifname] = found[0]
        return found[0]

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
        """Queue a change ("add", "replace" or "del"); applied in the background, in order."""
        if op not in ("add", "replace", "del"):
            raise ValueError(f"unknown route op {op!r}")
        ipaddress.IPv6Network(route.dest, strict=False)  # local misuse raises here, not in the task
        self._pending.pop(route.dest, None)
        self._pending[route.dest] = (op, route)
        self._idle.clear()
        self._wakeup.set()

    async def settle(self) -> None:
        """Wait until every submitted change has been applied."""
        await self._idle.wait()

    async def _apply_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = list(self._pending.values())[:ROUTE_BATCH_MAX]
                for _, route in batch:
                    del self._pending[route.dest]
                await self._apply_batch(batch)
            self._idle.set()

    async def _apply_batch(self, batch: list[tuple[str, KernelRoute]]) -> None:
        """Apply changes in one trip to the worker thread (a storm of changes costs one handoff)."""
        idx: dict[str, int | None] = {}
        for _, route in batch:
            if route.ifname not in idx:
                idx[route.ifname] = self._ifindex.get(route.ifname)
        for name in [n for n, i in idx.items() if i is None]:
            idx[name] = await self.ifindex(name)
        work = []
        for op, route in batch:
            if op == "del":
                if self.installed.pop(route.dest, None) is None:
                    continue
                work.append(("del", route, dict(
                    dst=route.dest, table=self.table, proto=self.protocol, priority=self.route_priority,
                    family=AF_INET6,
                )))
                continue
            if idx.get(route.ifname) is None:
                self.errors += 1
                self.installed.pop(route.dest, None)
                log.warning("route %s %s: no interface %s", op, route.dest, route.ifname)
                continue
            kwargs: dict[str, Any] = dict(
                dst=route.dest, oif=idx[route.ifname], table=self.table, proto=self.protocol,
                priority=self.route_priority, family=AF_INET6,
            )
            if route.via:
                kwargs["gateway"] = route.via.split("%", 1)[0]
            if self.mesh_addr:
                kwargs["prefsrc"] = self.mesh_addr
            work.append(("replace", route, kwargs))

        def run() -> list[BaseException | None]:
            results: list[BaseException | None] = []
            for op, _, kwargs in work:
                try:
                    self._ipr.route(op, **kwargs)
                    results.append(None)
                except Exception as exc:  # noqa: BLE001 - reported below, per route
                    results.append(exc)
            return results

        results = await self._call(run)
        for (op, route, _), exc in zip(work, results, strict=True):
            if exc is None:
                self.applied += 1
                if op != "del":
                    self.installed[route.dest] = route
                continue
            code = getattr(exc, "code", None)
            if op == "del" and code in (errno.ESRCH, errno.ENOENT):
                continue  # the kernel already dropped it (interface went down)
            self.errors += 1
            if op != "del":
                self.installed.pop(route.dest, None)
            log.warning("route %s %s via %s dev %s failed: %s", op, route.dest, route.via, route.ifname, exc)

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
