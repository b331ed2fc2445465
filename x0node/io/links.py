"""Link events of the mesh interfaces: usable (administratively up with carrier) or not.

Rules:
- Only the configured mesh interfaces are reported, and only transitions of "usable" (a repeated
  state is not reported again); a removed interface is unusable.
- One reader thread owns one rtnetlink socket bound to link events (pyroute2's asyncio sockets do not
  run on uvloop) and hands each message to the loop with `call_soon_threadsafe`; `handle` runs on the
  loop thread. No other state is shared.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("x0node.io.links")

RTMGRP_LINK = 0x1
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


def usable(flags: int) -> bool:
    return bool(flags & IFF_UP and flags & IFF_LOWER_UP)


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
        now_usable = event == "RTM_NEWLINK" and usable(msg["flags"])
        if self.state.get(name) == now_usable:
            return
        self.state[name] = now_usable
        self._on_change(name, now_usable)
