"""Local action adapter: what this node can do without the routing core's command API.

Rules and invariants (adapter, implements actions.ActionAdapter):
- reset_interface: link down, RESET_DOWN_S, link up, over netlink (pyroute2, in a worker thread);
  its undo only brings the link up (idempotent). Only the daemon's mesh interfaces are touched.
- restart_subsystem: the daemon's ServiceManager.restart(name) for the services listed in
  actions.RESTARTABLE_SERVICES; never the healing service itself.
- restart_daemon: holds the systemd watchdog (x0node/daemon/watchdog.py) so systemd restarts the
  daemon within its watchdog interval; refused when no watchdog runs (nobody would restart us).
- reboot: first appends {time, reason, incident} to `<data_dir>/healing/reboots.json` (at most
  MAX_REBOOT_RECORDS, written with io/atomicfile.write_atomic), then runs REBOOT_COMMAND. The
  file is the reason kept on flash (as gluon keeps its reboot reasons) and feeds the reboot rate limit
  after the reboot (`past_reboots`).
- penalise_link, drain_link, steer_around_node, mark_self_sick: refused with ROUTER_PENDING until the
  routing core has its command API; move_uplink_obfuscated: refused until the transport service
  offers a switch. A refusal is an answer: the engine escalates or waits, it never assumes success.
- Every call returns an ActionResult; nothing raises into the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from x0node.healing.actions import RESTARTABLE_SERVICES, ActionKind, ActionRequest, ActionResult
from x0node.healing.knowledge import PastAction
from x0node.io.atomicfile import write_atomic

log = logging.getLogger("x0node.healing.actuator")

RESET_DOWN_S = 1.0
REBOOT_COMMAND = ("systemctl", "reboot")
REBOOT_FILE = "reboots.json"
MAX_REBOOT_RECORDS = 32
MAX_REBOOT_FILE_BYTES = 64 * 1024
ROUTER_PENDING = "the routing core has no command API yet"
LOCAL_ACTIONS = frozenset({ActionKind.RESET_INTERFACE, ActionKind.RESTART_SUBSYSTEM, ActionKind.RESTART_DAEMON,
                           ActionKind.REBOOT})


def read_reboots(path: pathlib.Path) -> list[dict[str, Any]]:
    """The kept reboot records; a missing, oversized or malformed file reads as none."""
    try:
        if path.stat().st_size > MAX_REBOOT_FILE_BYTES:
            return []
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [r for r in data if isinstance(r, dict) and isinstance(r.get("time"), int | float)
            and isinstance(r.get("reason"), str)][-MAX_REBOOT_RECORDS:]


def past_reboots(path: pathlib.Path, window_s: float, wall: float) -> list[PastAction]:
    return [PastAction(ActionKind.REBOOT.value, str(r.get("target", "")), wall - r["time"], True, True)
            for r in read_reboots(path) if 0.0 <= wall - r["time"] <= window_s]


def _set_link(ifname: str, up: bool) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = socket.if_nametoindex(ifname)
        ipr.link("set", index=idx, state="up" if up else "down")


class LocalActuator:
    def __init__(
        self,
        state_dir: pathlib.Path,
        interfaces: Sequence[str],
        services: Any = None,  # the daemon's ServiceManager
        ctx: Any = None,  # the ServiceContext services are started with
        watchdog: Any = None,
        reboot_command: Sequence[str] = REBOOT_COMMAND,
        set_link: Callable[[str, bool], None] = _set_link,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = state_dir
        self.interfaces = frozenset(interfaces)
        self.services = services
        self.ctx = ctx
        self.watchdog = watchdog
        self.reboot_command = tuple(reboot_command)
        self._set_link = set_link
        self._wall = wall

    def supports(self, action: ActionKind) -> bool:
        return action in LOCAL_ACTIONS

    async def perform(self, req: ActionRequest) -> ActionResult:
        try:
            if req.action is ActionKind.RESET_INTERFACE:
                return await self._reset(req)
            if req.action is ActionKind.RESTART_SUBSYSTEM:
                return await self._restart_service(req)
            if req.action is ActionKind.RESTART_DAEMON:
                return self._restart_daemon(req)
            if req.action is ActionKind.REBOOT:
                return await self._reboot(req)
        except Exception as exc:  # noqa: BLE001 - a failing action is an answer, not a crash
            log.exception("action %s on %s failed", req.action.value, req.target)
            return ActionResult(req.request_id, False, f"{type(exc).__name__}: {exc}")
        if req.action is ActionKind.MOVE_UPLINK_OBFUSCATED:
            return ActionResult(req.request_id, False, "the transport service offers no uplink switch yet")
        return ActionResult(req.request_id, False, ROUTER_PENDING)

    async def _reset(self, req: ActionRequest) -> ActionResult:
        ifname = str(req.param("ifname", ""))
        if ifname not in self.interfaces:
            return ActionResult(req.request_id, False, f"{ifname!r} is not a mesh interface of this daemon")
        if req.undo:
            await asyncio.to_thread(self._set_link, ifname, True)
            return ActionResult(req.request_id, True, f"{ifname} up")
        log.warning("resetting interface %s: %s", ifname, req.reason)
        await asyncio.to_thread(self._set_link, ifname, False)
        await asyncio.sleep(RESET_DOWN_S)
        await asyncio.to_thread(self._set_link, ifname, True)
        return ActionResult(req.request_id, True, f"{ifname} down {RESET_DOWN_S:g} s and up")

    async def _restart_service(self, req: ActionRequest) -> ActionResult:
        name = str(req.param("service", ""))
        if name not in RESTARTABLE_SERVICES:
            return ActionResult(req.request_id, False, f"service {name!r} is not restartable")
        if self.services is None or name not in getattr(self.services, "running", {}):
            return ActionResult(req.request_id, False, f"service {name!r} is not running here")
        log.warning("restarting service %s: %s", name, req.reason)
        await self.services.restart(name, self.ctx)
        return ActionResult(req.request_id, True, f"{name} restarted")

    def _restart_daemon(self, req: ActionRequest) -> ActionResult:
        if self.watchdog is None or not self.watchdog.hold(req.reason):
            return ActionResult(req.request_id, False, "no systemd watchdog: nothing would restart the daemon")
        return ActionResult(req.request_id, True, "watchdog held; systemd restarts the daemon")

    async def _reboot(self, req: ActionRequest) -> ActionResult:
        path = self.state_dir / REBOOT_FILE
        records = read_reboots(path)
        records.append({"time": self._wall(), "reason": req.reason[:500], "incident": req.incident_id,
                        "target": str(req.target)})
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_atomic, path, json.dumps(records[-MAX_REBOOT_RECORDS:]).encode())
        log.warning("rebooting: %s", req.reason)
        proc = await asyncio.create_subprocess_exec(*self.reboot_command, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            return ActionResult(req.request_id, False, f"reboot command failed: {err.decode(errors='replace')[:200]}")
        return ActionResult(req.request_id, True, "reboot requested")
