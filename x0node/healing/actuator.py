"""Action adapters: the routing core's command API (RoutingActuator) and what the node does itself
(LocalActuator).

Rules and invariants (adapters, implement actions.ActionAdapter):
- penalise_link, drain_link, steer_around_node, mark_self_sick go to the routing core's command API
  (x0node/proto/commands.py) through `RoutingActuator`: `Router.penalise_link` (the request's factor,
  our links to the neighbour on every interface), `drain_link`, `steer_around` (factor DRAIN_FACTOR:
  wherever a loop-free alternate exists), `set_sick`; the undo is `lift_command`. Each command is issued
  with COMMAND_TTL_S and renewed by `renew(now)` (the service calls it every cycle) once a third of it
  has passed, so a mitigation lasts exactly as long as the loop that set it runs: if the healing
  service stops or hangs, the core lifts it by itself within COMMAND_TTL_S. The core's answer (ok,
  or refused with its reason) is the action's result; after each call the daemon is woken to flood
  and install what changed. Verification reads the effect through the core's views (routes, the
  commands in force, the sick flag of our own LSA).
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
- move_uplink_obfuscated: refused with NO_UPLINK_SWITCH: the transport service runs configured
  tunnels and offers no switch between a plain and an obfuscated uplink (and nothing observes an
  uplink yet, so the symptom that plans it is never raised). A refusal is an answer: the engine
  escalates or waits, it never assumes success.
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

from x0node.healing.actions import (
    DRAIN_FACTOR,
    PENALTY_FACTOR,
    RESTARTABLE_SERVICES,
    ActionKind,
    ActionRequest,
    ActionResult,
)
from x0node.healing.knowledge import PastAction
from x0node.io.atomicfile import write_atomic

log = logging.getLogger("x0node.healing.actuator")

RESET_DOWN_S = 1.0
REBOOT_COMMAND = ("systemctl", "reboot")
REBOOT_FILE = "reboots.json"
MAX_REBOOT_RECORDS = 32
MAX_REBOOT_FILE_BYTES = 64 * 1024
NO_UPLINK_SWITCH = "the transport service offers no uplink switch"
NO_ADAPTER = "no adapter on this node carries out this action"
COMMAND_TTL_S = 60.0
"""Routing commands are issued for this long and renewed while the loop runs (a third of it before)."""
ROUTING_ACTIONS = frozenset({ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK, ActionKind.STEER_AROUND_NODE,
                             ActionKind.MARK_SELF_SICK})
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
            return ActionResult(req.request_id, False, NO_UPLINK_SWITCH)
        return ActionResult(req.request_id, False, NO_ADAPTER)

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


class RoutingActuator:
    """The routing core's command API as an action adapter (rules above)."""

    def __init__(self, router: Any, wake: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, ttl_s: float = COMMAND_TTL_S) -> None:
        self.router = router
        self.wake = wake
        self._clock = clock
        self.ttl_s = ttl_s
        # (kind, target hex, ifname) -> (factor, when last issued): what we keep in force
        self.held: dict[tuple[str, str, str], tuple[float, float]] = {}
        self.renew_failures = 0

    def supports(self, action: ActionKind) -> bool:
        return action in ROUTING_ACTIONS and hasattr(self.router, "lift_command")

    def _command(self, req: ActionRequest) -> tuple[str, str, float]:
        """(core command kind, target node id hex, factor) of a request."""
        me = self.router.me.hex()
        if req.action is ActionKind.MARK_SELF_SICK:
            return "sick", me, 1.0
        target = str(req.param("neighbour", "") or req.target.id).lower()
        if req.action is ActionKind.PENALISE_LINK:
            return "penalty", target, float(req.param("factor", PENALTY_FACTOR))
        if req.action is ActionKind.DRAIN_LINK:
            return "drain", target, 1.0
        return "steer", target, float(req.param("factor", DRAIN_FACTOR))

    def _issue(self, kind: str, target: str, factor: float, now: float) -> Any:
        r = self.router
        if kind == "penalty":
            return r.penalise_link(target, factor, self.ttl_s, now)
        if kind == "drain":
            return r.drain_link(target, self.ttl_s, now)
        if kind == "steer":
            return r.steer_around(target, self.ttl_s, now, factor=factor)
        return r.set_sick(self.ttl_s, now)

    async def perform(self, req: ActionRequest) -> ActionResult:
        try:
            kind, target, factor = self._command(req)
            now = self._clock()
            key = (kind, target, "")
            if req.undo:
                self.held.pop(key, None)
                res = self.router.lift_command(kind, target, now)
            else:
                log.warning("routing command %s on %s (x%g): %s", kind, target[:16], factor, req.reason)
                res = self._issue(kind, target, factor, now)
                if res.ok:
                    self.held[key] = (factor, now)
        except Exception as exc:  # noqa: BLE001 - a failing action is an answer, not a crash
            log.exception("routing command %s on %s failed", req.action.value, req.target)
            return ActionResult(req.request_id, False, f"{type(exc).__name__}: {exc}")
        finally:
            self.wake()
        return ActionResult(req.request_id, bool(res.ok), str(res.detail))

    def renew(self, now: float | None = None) -> int:
        """Issue again every command held for a third of its TTL; returns how many were renewed."""
        now = self._clock() if now is None else now
        renewed = 0
        for (kind, target, _), (factor, at) in list(self.held.items()):
            if now - at < self.ttl_s / 3:
                continue
            try:
                res = self._issue(kind, target, factor, now)
            except Exception:  # noqa: BLE001 - retried next cycle
                log.exception("renewing routing command %s on %s failed", kind, target[:16])
                res = None
            if res is not None and res.ok:
                self.held[(kind, target, "")] = (factor, now)
                renewed += 1
            else:
                self.renew_failures += 1
        if renewed:
            self.wake()
        return renewed

    def lift_all(self) -> None:
        """Take back every command we hold (the service stops cleanly)."""
        now = self._clock()
        for kind, target, ifname in list(self.held):
            try:
                self.router.lift_command(kind, target, now, ifname=ifname)
            except Exception:  # noqa: BLE001 - the core's expiry lifts it anyway
                log.exception("lifting routing command %s on %s failed", kind, target[:16])
        self.held.clear()
        self.wake()


class Actuators:
    """The first adapter that supports an action carries it out."""

    def __init__(self, *adapters: Any) -> None:
        self.adapters = adapters

    def supports(self, action: ActionKind) -> bool:
        return any(a.supports(action) for a in self.adapters)

    async def perform(self, req: ActionRequest) -> ActionResult:
        for a in self.adapters:
            if a.supports(req.action):
                return await a.perform(req)
        if req.action is ActionKind.MOVE_UPLINK_OBFUSCATED:
            return ActionResult(req.request_id, False, NO_UPLINK_SWITCH)
        return ActionResult(req.request_id, False, NO_ADAPTER)
