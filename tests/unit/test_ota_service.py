"""The OTA service as the daemon's service manager and the healing loop see it: an idle service is
healthy (no `service_hung@service:ota` incident), the running release is still in the OTA view, and a
service whose loop ended is unhealthy."""

from __future__ import annotations

import asyncio
import socket

from prometheus_client import CollectorRegistry

from tests.integration.ota_mesh import write_release
from tests.unit.test_healing_service import CONF, Clock, Router
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext, ServiceManager
from x0node.healing import service as healing
from x0node.ota import keys
from x0node.ota import service as ota

ME = "aa" * 8


def _free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


async def _idle_ota(tmp_path) -> tuple[ota.OtaService, ServiceContext, ServiceManager]:
    kd = tmp_path / "keys"
    keys.init(kd)
    rel = write_release(tmp_path / "release.json", "1.0", 10)
    manager = ServiceManager(None)  # type: ignore[arg-type]
    ctx = ServiceContext(router=Router(), config=None, data_dir=tmp_path, registry=CollectorRegistry(),
                         bus=EventBus(), interfaces=["eth1", "eth2"], node_id=ME, mesh_addr="fd00::1", provider=None,
                         extras={"services": manager})
    svc = ota.create_service({"installer": "none", "release_file": str(rel), "port": _free_port(),
                              "keys_file": str(kd / keys.RELEASE_KEYS_FILE), "keyring": str(kd / "ca.cert.pem")})
    await svc.start(ctx)
    manager.running["ota"] = svc
    return svc, ctx, manager


async def test_an_idle_ota_service_is_healthy_and_opens_no_incident(tmp_path, monkeypatch):
    svc, ctx, manager = await _idle_ota(tmp_path)
    clock = Clock()
    monkeypatch.setattr(healing, "time", clock)
    h = healing.create_service(CONF)
    try:
        await h.start(ctx)
        st = manager.status()["ota"]
        assert st["running"] is True and "error" not in st and st["phase"] == "idle", st
        assert st["release"]["version"] == "1.0"
        assert svc.view()["running"]["version"] == "1.0"  # the OTA API and CLI keep the running release
        for _ in range(20):
            clock.t += 1.0
            await h.tick()
        causes = [i["cause"] for i in h.status()["open"]]
        assert not [c for c in causes if "service:ota" in c], causes
    finally:
        await h.stop()
        await svc.stop()


async def test_an_ota_service_whose_loop_ended_is_unhealthy(tmp_path):
    svc, _ctx, manager = await _idle_ota(tmp_path)
    try:
        svc._tasks[0].cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        st = manager.status()["ota"]
        assert st["error"] == "the OTA loop ended", st
    finally:
        await svc.stop()


class _MarkingInstaller:
    """A device's slot manager as the service sees it: slot A booted, every mark recorded and accepted."""

    reason = ""

    def __init__(self) -> None:
        self.marks: list[tuple[str, str]] = []

    def booted(self) -> str | None:
        return "A"

    def mark(self, what: str, slot: str = "booted") -> tuple[bool, str]:
        self.marks.append((what, slot))
        return True, ""


async def test_a_normal_boot_marks_its_slot_good_after_the_start_not_during_it(tmp_path, monkeypatch):
    # the daemon's ready line waits for every service's start(): the mark-good (a subprocess writing the
    # ESP's grubenv, seconds under emulation) runs in the service's loop instead, once
    installer = _MarkingInstaller()
    monkeypatch.setattr(ota, "NoInstaller", lambda: installer)
    svc, _ctx, _manager = await _idle_ota(tmp_path)
    try:
        assert installer.marks == []  # start() returned without it
        assert svc._unconfirmed
        for _ in range(50):
            await asyncio.sleep(0.02)
            if installer.marks:
                break
        await asyncio.sleep(0.1)
        assert installer.marks == [("mark-good", "booted")]
        assert not svc._unconfirmed
    finally:
        await svc.stop()
