"""Managed yggdrasil (Debian 0.4.7) as an optional overlay: process, config file, admin socket.

    [overlay.yggdrasil]
    binary = "/usr/sbin/yggdrasil"
    port = 6720                     # yggdrasil's peering port on the mesh interfaces
    ifname = "ygg0"                 # its TUN ("none": no TUN, routing only)
    mtu = 65535
    reconcile_s = 2.0               # how often peers are compared with the mesh neighbours
    restart_min_s = 30.0            # a new certified node is allowed in by a restart at most this often

Decisions are in yggdrasil_plan.py; this module writes the config (0600, io/atomicfile),
starts yggdrasil (killed by PID on stop), talks JSON to its admin socket (bounded reads, one request
per connection as yggdrasilctl does) and reconciles peers every `reconcile_s` (+-25 %). Router state
is read through the neighbour view, the LSDB origins and their keys, and the trust store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import random
import time
from typing import Any

from x0node.daemon.config import ConfigError
from x0node.daemon.exposure import Exposure, Listen
from x0node.io.atomicfile import write_atomic
from x0node.overlay import yggdrasil_plan as plan
from x0node.proto.protocol import YGGDRASIL_TCP_PORT

log = logging.getLogger("x0node.overlay.yggdrasil")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "binary": "/usr/sbin/yggdrasil",
    "port": YGGDRASIL_TCP_PORT,
    "ifname": "ygg0",
    "mtu": 65535,
    "reconcile_s": 2.0,
    "restart_min_s": plan.RESTART_MIN_INTERVAL_S,
}
EXPOSURE = Exposure(listens=(Listen("mesh", "tcp", "port"),))
"""yggdrasil peers between mesh addresses, over the mesh (x0node/daemon/exposure.py)."""
ADMIN_TIMEOUT_S = 3.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def validate_config(section: dict) -> dict:
    for k in section:
        if k not in DEFAULTS:
            raise ConfigError(k, "unknown key")
    out = {**DEFAULTS, **section}
    if not isinstance(out["enabled"], bool):
        raise ConfigError("enabled", "expected true or false")
    if not isinstance(out["binary"], str) or not out["binary"].startswith("/") or "\x00" in out["binary"]:
        raise ConfigError("binary", "expected an absolute path")
    port = out["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError("port", "expected an integer 1..65535")
    name = out["ifname"]
    if not isinstance(name, str) or not 1 <= len(name) <= 15 or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("ifname", "expected an interface name of 1..15 characters or \"none\"")
    mtu = out["mtu"]
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 1280 <= mtu <= 65535:
        raise ConfigError("mtu", "expected an integer 1280..65535")
    r = out["reconcile_s"]
    if isinstance(r, bool) or not isinstance(r, int | float) or not 0.2 <= r <= 60:
        raise ConfigError("reconcile_s", "expected seconds 0.2..60")
    out["reconcile_s"] = float(r)
    m = out["restart_min_s"]
    if isinstance(m, bool) or not isinstance(m, int | float) or not 1 <= m <= 3600:
        raise ConfigError("restart_min_s", "expected seconds 1..3600")
    out["restart_min_s"] = float(m)
    return out


def mesh_nodes(router: Any) -> list[tuple[bytes, bytes]]:
    """(node id, public key) of every origin the routing core holds a live LSA of."""
    return [(e.origin, e.public_key) for e in router.lsdb.entries() if e.lsa is not None]


async def admin_request(sock_path: str, request: str, **arguments: Any) -> Any:
    """One JSON request to the admin socket; the parsed answer (bounded read)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(sock_path), ADMIN_TIMEOUT_S)
    try:
        body: dict[str, Any] = {"request": request, "keepalive": False}
        if arguments:
            body["arguments"] = arguments
        writer.write(json.dumps(body).encode())
        await writer.drain()
        data = b""
        while len(data) < plan.MAX_ADMIN_BYTES:
            chunk = await asyncio.wait_for(reader.read(65536), ADMIN_TIMEOUT_S)
            if not chunk:
                break
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue
        raise ValueError("no complete answer from the admin socket")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class ManagedYggdrasil:
    def __init__(self, identity: Any, trust: Any, router: Any, data_dir: pathlib.Path, cfg: dict[str, Any]) -> None:
        self.identity = identity
        self.trust = trust
        self.router = router
        self.cfg = validate_config(cfg)
        self.dir = pathlib.Path(data_dir) / "yggdrasil"
        self.socket = str(self.dir / "admin.sock")
        self.proc: asyncio.subprocess.Process | None = None
        self.allowed: frozenset[bytes] = frozenset()
        self.peers: list[dict[str, Any]] = []
        self.added: set[str] = set()
        self.self_info: dict[str, str] = {}
        self.restarts = 0
        self.errors = 0
        self._last_start_s = -1e18
        self._task: asyncio.Task | None = None
        self._rng = random.Random()  # restart backoff jitter, not a secret # nosec B311

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        await self._launch()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _config_text(self) -> str:
        self.allowed = plan.allowed_keys(mesh_nodes(self.router), self.trust.revoked)
        conf = plan.render_config(self.identity.seed, self.identity.public_key, self.allowed,
                                  self.identity.mesh_address, self.cfg["port"], self.socket, self.cfg["ifname"],
                                  self.cfg["mtu"])
        return json.dumps(conf, indent=1)

    async def _launch(self) -> None:
        conf = self.dir / "yggdrasil.conf"
        write_atomic(conf, self._config_text().encode(), 0o600)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        logf = open(self.dir / "yggdrasil.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(self.cfg["binary"], "-useconffile", str(conf),
                                                             stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf)
        finally:
            logf.close()
        self._last_start_s = time.monotonic()
        self.added.clear()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"yggdrasil exited with {self.proc.returncode} (see {self.dir / 'yggdrasil.log'})")
            try:
                self.self_info = plan.parse_self(await admin_request(self.socket, "getself"))
                if self.self_info:
                    log.info("yggdrasil up pid=%d address=%s allowed_keys=%d", self.proc.pid,
                             self.self_info.get("address"), len(self.allowed))
                    return
            except (TimeoutError, OSError, ValueError):
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("yggdrasil admin socket did not answer")

    async def _terminate(self) -> None:
        p = self.proc
        self.proc = None
        if p is None or p.returncode is not None:
            return
        p.terminate()
        try:
            await asyncio.wait_for(p.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            p.kill()
            await p.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._terminate()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg["reconcile_s"] * self._rng.uniform(0.75, 1.25))
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                self.errors += 1
                log.warning("yggdrasil reconcile failed: %s", exc)

    async def reconcile(self) -> None:
        now = time.monotonic()
        wanted = plan.allowed_keys(mesh_nodes(self.router), self.trust.revoked)
        dead = self.proc is None or self.proc.returncode is not None
        revoked = bool(self.allowed - wanted)  # a key that lost its place is shut out at once
        due = now - self._last_start_s >= self.cfg["restart_min_s"]
        if dead or revoked or (wanted != self.allowed and due):
            log.info("yggdrasil %s", "restarting after exit" if dead else "restarting: allowed keys changed")
            await self._terminate()
            self.restarts += 1
            await self._launch()
        desired = plan.desired_peers(self.router.neighbours(), self.cfg["port"])
        add, remove = plan.reconcile(desired, self.added)
        for uri in remove:
            await admin_request(self.socket, "removepeer", uri=uri, interface="")
            self.added.discard(uri)
        for uri in add:
            answer = await admin_request(self.socket, "addpeer", uri=uri, interface="")
            if isinstance(answer, dict) and answer.get("status") == "success":
                self.added.add(uri)
        self.peers = plan.parse_peers(await admin_request(self.socket, "getpeers"))

    def status(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.returncode is None
        return {"running": running, "pid": self.proc.pid if running and self.proc else None, **self.self_info,
                "allowed_keys": len(self.allowed), "configured_peers": sorted(self.added), "peers": list(self.peers),
                "restarts": self.restarts, "errors": self.errors}
