"""The web UI as a daemon service (section `[web]`, see docs/daemon.md and docs/web.md).

`validate_config` checks the section with `WebConfig.from_mapping` and reports errors as the daemon's
`ConfigError` (key relative to the section). `WebService.start(ctx)` builds the app over the daemon's
`NodeStateProvider` (`ctx.provider`), its Prometheus registry and data directory, and listens on
`listen`:`port`; `stop()` closes live streams and the listener. API requests are traced through the
daemon's tracing pipeline when there is one (x0node/web/tracing.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from x0node.web.app import K_STATE, create_app
from x0node.web.config import WebConfig
from x0node.web.provider import ConfigError as WebConfigError
from x0node.web.state_api import add_routes as add_state_routes

log = logging.getLogger(__name__)


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    try:
        cfg = WebConfig.from_mapping(section)
    except WebConfigError as exc:
        key = exc.key[len("web."):] if exc.key.startswith("web.") else exc.key
        raise ConfigError(key, exc.message) from None
    out = dataclasses.asdict(cfg)
    for key in ("metrics_allow", "allowed_hosts"):  # TOML and from_mapping speak lists
        out[key] = list(out[key])
    return out


class WebService:
    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url: str | None = None

    async def start(self, ctx: Any) -> None:
        self.app = create_app(ctx.provider, self.config, ctx.data_dir, ctx.registry)
        add_state_routes(self.app, lambda: ctx.extras.get("state"))
        from x0node.web.tracing import middleware as tracing_middleware

        self.app.middlewares.insert(0, tracing_middleware(ctx.extras))  # API request spans (web/tracing.py)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.listen, self.config.port)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        log.info("web UI listening url=%s", self.url)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.app is not None:
            out["password_set"] = self.app[K_STATE].credentials.password_set()
        return out


def create_service(section: dict[str, Any]) -> WebService:
    return WebService(WebConfig.from_mapping(section))
