"""systemd watchdog: the daemon's loop tells systemd it is alive (sd_notify), so a hung daemon is restarted.

Rules and invariants:
- Readiness (`READY=1`, `STOPPING=1`) is sent whenever `NOTIFY_SOCKET` is set: the unit is
  Type=notify, so systemd counts the start against TimeoutStartSec (a slow board may take minutes to
  import and load) and starts the watchdog clock only once the daemon is ready.
- The watchdog is active only when systemd asks for it: `NOTIFY_SOCKET` and `WATCHDOG_USEC` are set
  and, if `WATCHDOG_PID` is set, it is our pid. Otherwise petting is a no-op.
- `WATCHDOG=1` is sent from a timer on the event loop every quarter of the current watchdog interval
  (jittered +-25 %), and only while `alive()` says the routing core's timer is being served. A loop
  that stops (blocked, deadlocked, SIGSTOPped) stops petting, and systemd kills and restarts the
  daemon after WatchdogSec (sd_notify(3), systemd.service(5) WatchdogSec=).
- `ready()` sends `READY=1` and narrows the unit's WatchdogSec to the steady interval (STEADY_WATCHDOG_S,
  or the config's `node.watchdog_s`, which an emulated lab unit raises) with `WATCHDOG_USEC=`
  (systemd >= 236), so a hang in steady state is caught within seconds; the pet timer
  starts over at once (pets at once, then every quarter of the new interval), never finishing a sleep
  sized for the start allowance past the new deadline.
- `hold(reason)` stops petting on purpose: the healing loop's last software rung before a reboot is a
  daemon restart by systemd.
- Datagrams only (AF_UNIX/SOCK_DGRAM, non-blocking); a send error is counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping

from x0node.proto.timers import jittered

log = logging.getLogger("x0node.daemon.watchdog")

STEADY_WATCHDOG_S = 6.0  # hang detected within 6 s; + abort + RestartSec + start stays under 15 s
PET_FRACTION = 0.25


class Watchdog:
    def __init__(self, env: Mapping[str, str] | None = None, alive: Callable[[], bool] = lambda: True,
                 steady_s: float = STEADY_WATCHDOG_S) -> None:
        env = os.environ if env is None else env
        self.steady_s = steady_s
        self.socket_path = env.get("NOTIFY_SOCKET", "")
        pid = env.get("WATCHDOG_PID", "")
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
        except ValueError:
            usec = 0
        ours = not pid or pid == str(os.getpid())
        self.notifying = bool(self.socket_path) and ours
        self.enabled = self.notifying and usec > 0
        self.interval_s = usec / 1e6
        self.alive = alive
        self.held: str | None = None
        self.pets = 0
        self.skipped = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()  # jitter of the pet timer, not a secret # nosec B311

    def _address(self) -> str | bytes:
        path = self.socket_path
        return b"\0" + path[1:].encode() if path.startswith("@") else path

    def notify(self, message: str) -> bool:
        if not self.notifying:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self._address())
            return True
        except OSError as exc:
            self.errors += 1
            log.debug("sd_notify %r failed: %s", message, exc)
            return False

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")
            log.info("systemd watchdog on: %.1f s", self.interval_s)

    def ready(self) -> None:
        """The daemon is up: tell systemd and narrow the interval to the steady one."""
        self.notify("READY=1")
        if self.enabled and self.interval_s != self.steady_s:
            if self.notify(f"WATCHDOG_USEC={int(self.steady_s * 1e6)}"):
                self.interval_s = self.steady_s
                self._restart_timer()

    def _restart_timer(self) -> None:
        """The pet timer may be asleep for a quarter of the start allowance (up to 9.4 s of a 30 s one),
        longer than the narrowed interval: pet now and start over at the new pace."""
        if self._task is None:
            return
        self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    def hold(self, reason: str) -> bool:
        """Stop petting so systemd restarts us. False when no watchdog is running (nobody would)."""
        if not self.enabled:
            return False
        self.held = reason
        log.warning("watchdog held (systemd will restart the daemon): %s", reason)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.notify("STOPPING=1")
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def pet(self) -> bool:
        if not self.enabled or self.held is not None:
            return False
        try:
            ok = self.alive()
        except Exception:  # noqa: BLE001 - a failing check means not alive
            ok = False
        if not ok:
            self.skipped += 1
            return False
        if self.notify("WATCHDOG=1"):
            self.pets += 1
            return True
        return False

    async def _run(self) -> None:
        while True:
            self.pet()
            await asyncio.sleep(jittered(self.interval_s * PET_FRACTION, self._rng))

    def status(self) -> dict[str, object]:
        return {"enabled": self.enabled, "interval_s": self.interval_s, "pets": self.pets, "skipped": self.skipped,
                "errors": self.errors, "held": self.held}
