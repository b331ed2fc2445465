"""A real healing service (x0node/healing/service.py: engine, sqlite knowledge store, actuator) on the
threaded web server's loop, watching a small node whose views the test controls: a telemetry service
that reports itself stuck until the healing loop restarts it, and a neighbour whose link loses hellos
while `lossy` is set. The web app gets the /api/v1/healing routes as the daemon's web service adds them."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.healing import service as healing_service
from x0node.web.healing_api import add_routes

ME, A, B = "aa" * 8, "bb" * 8, "cc" * 8
CONF = {"interval_s": 0.2, "probes": False, "guard_after_boot_s": 0, "guard_after_start_s": 0, "seed": 1,
        "auto_activate": False}


class Router:
    """The routing core's read model (x0node/proto/views.py) of a node with two neighbours."""

    def __init__(self) -> None:
        self.loss_a = 0.0

    def neighbours(self):  # type: ignore[no-untyped-def]
        from x0node.proto.views import NeighbourView

        return (NeighbourView(A, "eth1", "fe80::a", "up", 1.0, self.loss_a, None, "good", 10, 0.1, 9.0),
                NeighbourView(B, "eth2", "fe80::b", "up", 1.0, 0.0, None, "good", 10, 0.1, 9.0))

    def routes(self):  # type: ignore[no-untyped-def]
        from x0node.proto.views import RouteView

        return (RouteView("fd00::b/128", "fe80::a", "eth1", 10, A),)

    def topology(self):  # type: ignore[no-untyped-def]
        from x0node.proto.views import LinkView, NodeView, TopologyView

        return TopologyView((NodeView(ME, "fd00::1", True, True, (), None, None, None),
                             NodeView(A, "fd00::a", False, True, (), None, 10, 1)), (LinkView(ME, A, 10, "good"),))

    def stats(self):  # type: ignore[no-untyped-def]
        from x0node.proto.views import DropsView, InterfaceView, StatsView

        return StatsView(ME, "fd00::1", (InterfaceView("eth1", True, 0), InterfaceView("eth2", True, 0)), 2, 2, 2, 1,
                         DropsView({}, {}), {}, 0, None, 0.0, 0, {})


class Services:
    """The service manager as the healing loop sees it: telemetry is stuck until restarted."""

    def __init__(self) -> None:
        self.healthy = False
        self.restarts = 0
        self.running = {"telemetry": object()}

    def status(self) -> dict[str, Any]:
        tel = {"running": True} if self.healthy else {"running": True, "error": "RuntimeError: stuck"}
        return {"telemetry": tel, "healing": {"running": True}}

    async def restart(self, name: str, ctx: Any) -> None:
        self.restarts += 1
        self.healthy = True


class HealingNode:
    def __init__(self, data_dir: pathlib.Path, conf: dict[str, Any] | None = None) -> None:
        self.data_dir = data_dir
        self.router = Router()
        self.services = Services()
        self.service = healing_service.create_service({**CONF, **(conf or {})})
        self.ctx = ServiceContext(router=self.router, config=None, data_dir=data_dir, registry=CollectorRegistry(),
                                  bus=EventBus(), interfaces=["eth1", "eth2"], node_id=ME, mesh_addr="fd00::1",
                                  provider=None, extras={"services": self.services})

    def setup(self, app: web.Application, anomaly: Any = None) -> None:
        """ThreadedServer's hook: runs on the server's loop before it serves. `anomaly()`: the anomaly
        service the Incidents page's answers reach, as in the daemon."""
        asyncio.get_event_loop().run_until_complete(self.service.start(self.ctx))
        add_routes(app, lambda: self.ctx.extras.get("healing"), anomaly)

        async def stop(_app: web.Application) -> None:
            await self.service.stop()

        app.on_cleanup.append(stop)
