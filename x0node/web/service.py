"""The web UI as a daemon service (section `[web]`, see docs/daemon.md and docs/web.md).

`validate_config` checks the section with `WebConfig.from_mapping` and reports errors as the daemon's
`ConfigError` (key relative to the section). `WebService.start(ctx)` builds the app over the daemon's
`NodeStateProvider` (`ctx.provider`), its Prometheus registry and data directory, and listens on
`listen`:`port` — over HTTPS when `tls_cert`/`tls_key` are set, with a plain-HTTP redirect listener on
`http_port` (x0node.web.tls); `stop()` closes live streams and the listeners. API requests are traced
through the daemon's tracing pipeline when there is one (x0node/web/tracing.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from x0node.coord.api import add_routes as add_coord_routes
from x0node.daemon.exposure import Exposure, Listen
from x0node.web.anomaly_api import add_routes as add_anomaly_routes
from x0node.web.app import K_STATE, create_app
from x0node.web.config import WebConfig
from x0node.web.firmware import add_ota_routes
from x0node.web.healing_api import add_routes as add_healing_routes
from x0node.web.provider import ConfigError as WebConfigError
from x0node.web.state_api import add_routes as add_state_routes
from x0node.web.tls import TLS_KEYS, TlsConfig

log = logging.getLogger(__name__)
EXPOSURE = Exposure(listens=(Listen("ui", "tcp", "port"), Listen("ui", "tcp", "http_port")),
                    defaults=(("http_port", TlsConfig.http_port),))
"""The UI on the LAN side (and the mesh with web_on_mesh); http_port 0 is no redirect listener."""


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    try:
        cfg, tls = _parse(section)
    except WebConfigError as exc:
        key = exc.key[len("web."):] if exc.key.startswith("web.") else exc.key
        raise ConfigError(key, exc.message) from None
    out = dataclasses.asdict(cfg)
    for key in ("metrics_allow", "allowed_hosts"):  # TOML and from_mapping speak lists
        out[key] = list(out[key])
    return out | tls.as_mapping()


def _parse(section: dict[str, Any]) -> tuple[WebConfig, TlsConfig]:
    rest = {k: v for k, v in section.items() if k not in TLS_KEYS}
    cfg = WebConfig.from_mapping(rest)
    return cfg, TlsConfig.from_mapping(section, cfg.port)


class WebService:
    def __init__(self, config: WebConfig, tls: TlsConfig | None = None) -> None:
        self.config = config
        self.tls = tls or TlsConfig()
        self.runner: web.AppRunner | None = None
        self.redirect_runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url: str | None = None
        self.tls_sha256: str | None = None

    async def start(self, ctx: Any) -> None:
        from x0node.web import tls

        ssl_context = tls.server_context(self.tls, ctx.data_dir) if self.tls.enabled else None
        self.app = create_app(ctx.provider, self.config, ctx.data_dir, ctx.registry)
        add_state_routes(self.app, lambda: ctx.extras.get("state"))
        add_coord_routes(self.app, lambda: ctx.extras.get("coord"))
        add_ota_routes(self.app, lambda: ctx.extras.get("ota"))
        add_healing_routes(self.app, lambda: ctx.extras.get("healing"), lambda: ctx.extras.get("anomaly"))
        add_anomaly_routes(self.app, lambda: ctx.extras.get("anomaly"))
        from x0node.web.tracing import middleware as tracing_middleware

        self.app.middlewares.insert(0, tracing_middleware(getattr(ctx, "extras", {})))  # API spans (web/tracing.py)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.SockSite(self.runner, tls.listen_socket(self.config.listen, self.config.port),
                            ssl_context=ssl_context)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"
        if ssl_context is not None:
            self.tls_sha256 = tls.fingerprint(self.tls, ctx.data_dir)
            if self.tls.http_port:
                redirect = tls.redirect_app(port, self.app[K_STATE].allowed_hosts)
                self.redirect_runner = web.AppRunner(redirect, access_log=None, shutdown_timeout=1.0)
                await self.redirect_runner.setup()
                await web.SockSite(self.redirect_runner, tls.listen_socket(self.config.listen, self.tls.http_port)).start()
        log.info("web UI listening url=%s tls_sha256=%s", self.url, self.tls_sha256 or "-")

    async def stop(self) -> None:
        for runner in (self.redirect_runner, self.runner):
            if runner is not None:
                await runner.cleanup()
        self.runner = self.redirect_runner = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "tls_sha256": self.tls_sha256}
        if self.app is not None:
            out["password_set"] = self.app[K_STATE].credentials.password_set()
        return out


def create_service(section: dict[str, Any]) -> WebService:
    return WebService(*_parse(section))
