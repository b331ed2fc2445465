"""Our marks in the kernel through pyroute2: the mesh address on lo, the policy rule to our table,
the dump of our routes, interface indexes and link state.

Rules and invariants:
- Everything we install carries our protocol number (`protocol`) and lives in our table (`table`),
  plus one IPv6 rule `from all lookup <table>` tagged with the same protocol. We never modify, replace
  or delete anything without both marks; `our_routes()` selects by both. Route writes themselves go
  through the route table seam (route_table.py, kernel_routes.py).
- These requests are rare (start, stop, link events): pyroute2's asyncio sockets do not run on uvloop,
  so every request goes through one worker thread owning one synchronous socket (requests stay in
  order). An interface index is one ioctl (`if_nametoindex`), cached, with no trip to the thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from x0node.io.links import usable

log = logging.getLogger("x0node.io.netlink")

AF_INET6 = 10
FR_ACT_TO_TBL = 1  # fib rule action "lookup table"


class NetlinkAdapter:
    """Our rule and mesh address in the kernel, and what it says about our routes and links."""

    def __init__(self, table: int, protocol: int, rule_priority: int) -> None:
        self.table = table
        self.protocol = protocol
        self.rule_priority = rule_priority
        self._ipr: Any = None
        self._pool: Any = None
        self._ifindex: dict[str, int] = {}
        self.mesh_addr: str | None = None
        self._lo_addr_added = False
        self._rule_added = False

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one rtnetlink request on the worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def open(self) -> None:
        from pyroute2 import IPRoute

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")

        def make() -> None:
            self._ipr = IPRoute()

        await self._call(make)

    async def close(self) -> None:
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
            return usable(msg["flags"])
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

    async def remove_rule(self) -> None:
        if self._rule_added:
            await self._delete_our_rules()
            self._rule_added = False
