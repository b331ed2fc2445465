"""Services: optional parts of the daemon (web UI, telemetry, anomaly detection, ...) that plug in.

Contract (see docs/daemon.md):
- A service lives in the module listed in `SERVICES` under its config section name. The module exposes
  `create_service(section: dict) -> Service` and may expose `validate_config(section: dict) -> dict`
  (returns the section with defaults filled in, raises `ConfigError` naming the key, relative to the
  section, e.g. "port" -> reported as "web.port").
- A service is enabled when its section is present in the config and its `enabled` key is not false.
  Its module is imported only then, so heavy libraries are loaded only for enabled services.
- `Service.start(ctx)` is awaited in `SERVICES` order after the node is up (routes, sockets, router);
  `stop()` in reverse order before the node leaves the mesh. `status()` (optional) returns a small
  JSON-ready dict merged into the node status under the service's name.
- A service that fails to start is logged and left out; the node keeps routing. A service never blocks
  the loop: long work goes to `asyncio.to_thread` or its own tasks.
- After calling a Router method that may queue output (e.g. `leave`, `receive`), a service calls
  `ctx.wake()` so the driver sends what is queued without waiting for the next timer.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from x0node.daemon.config import ConfigError

if TYPE_CHECKING:
    from x0node.daemon.bus import EventBus
    from x0node.daemon.config import DaemonConfig
    from x0node.proto.router import Router

log = logging.getLogger("x0node.daemon.services")

# config section -> module providing create_service (and optionally validate_config). Only services
# that exist are listed; a section for anything else is refused as unknown.
SERVICES: dict[str, str] = {
    "web": "x0node.web.service",
    "telemetry": "x0node.telemetry.service",
    "anomaly": "x0node.anomaly.service",
    "healing": "x0node.healing.service",
    "state": "x0node.state.service",
    "transport": "x0node.transport.service",
    "overlay": "x0node.overlay.service",
    "coord": "x0node.coord.service",
    "ota": "x0node.ota.service",
}
SERVICE_STOP_TIMEOUT_S = 5.0


@runtime_checkable
class Service(Protocol):
    async def start(self, ctx: ServiceContext) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceContext:
    """What a service may use. Everything here belongs to the daemon; services do not replace it."""

    router: Router  # read it through its views (x0node/proto/views.py)
    config: DaemonConfig
    data_dir: pathlib.Path
    registry: Any  # prometheus_client.CollectorRegistry served at /metrics
    bus: EventBus
    interfaces: list[str]
    node_id: str
    mesh_addr: str
    provider: Any  # x0node.daemon.provider.DaemonStateProvider (implements the web NodeStateProvider)
    wake: Callable[[], None] = lambda: None
    # Apply dotted-key config changes at run time: validated, persisted to config.local.toml.
    set_config: Callable[[Mapping[str, Any]], None] = lambda changes: None
    # Apply a signed revocation list now (x0node.proto.trust.RevocationList): None when applied, else why
    # it was refused. The revoked nodes' adjacencies and routes are gone when it returns.
    apply_revocations: Callable[[Any], str | None] = lambda crl: "unavailable"
    extras: dict[str, Any] = field(default_factory=dict)

    def logger(self, name: str) -> logging.Logger:
        return logging.getLogger(f"x0node.{name}")


def is_enabled(section: Mapping[str, Any] | None) -> bool:
    return section is not None and section.get("enabled", True) is not False


def _module(name: str) -> Any:
    return importlib.import_module(SERVICES[name])


def validate_section(name: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a service's section with its module's validate_config; keys reported as name.key."""
    values = dict(section)
    if "enabled" in values and not isinstance(values["enabled"], bool):
        raise ConfigError(f"{name}.enabled", "expected true or false")
    if not is_enabled(values):
        return values
    try:
        module = _module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and SERVICES[name].startswith(exc.name):
            raise ConfigError(name, f"service {name!r} is not part of this build") from None
        raise
    check = getattr(module, "validate_config", None)
    if check is None:
        return values
    try:
        out = check(values)
    except ConfigError as exc:
        key = exc.key if exc.key.startswith(f"{name}.") or exc.key == name else f"{name}.{exc.key}".rstrip(".")
        raise ConfigError(key, exc.message) from None
    return dict(out)


class ServiceManager:
    """Starts enabled services in order, stops them in reverse, collects their status."""

    def __init__(self, config: DaemonConfig) -> None:
        self._config = config
        self.running: dict[str, Service] = {}
        self.failed: dict[str, str] = {}

    def enabled(self) -> list[str]:
        return [name for name in SERVICES if is_enabled(self._config.section(name))]

    async def start_all(self, ctx: ServiceContext) -> None:
        for name in self.enabled():
            try:
                service = _module(name).create_service(self._config.section(name))
                await service.start(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken service must not take routing down
                log.exception("service %s failed to start", name)
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            self.running[name] = service
            log.info("service started name=%s", name)

    async def restart(self, name: str, ctx: ServiceContext) -> None:
        """Stop a running service and start a fresh one from its section (the healing loop's restart of a
        subsystem). Raises what the new start raises; the service is then listed as failed."""
        old = self.running.pop(name, None)
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), SERVICE_STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a hung stop must not prevent the restart
                log.exception("service %s failed to stop cleanly", name)
        self.failed.pop(name, None)
        try:
            service = _module(name).create_service(self._config.section(name))
            await service.start(ctx)
        except Exception as exc:
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            raise
        self.running[name] = service
        self.running = {k: self.running[k] for k in SERVICES if k in self.running}  # stop order stays SERVICES'
        log.info("service restarted name=%s", name)

    async def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            service = self.running.pop(name)
            try:
                await asyncio.wait_for(service.stop(), SERVICE_STOP_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                log.exception("service %s failed to stop cleanly", name)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, service in self.running.items():
            entry: dict[str, Any] = {"running": True}
            status = getattr(service, "status", None)
            if status is not None:
                try:
                    entry.update(status())
                except Exception as exc:  # noqa: BLE001
                    entry["error"] = f"{type(exc).__name__}: {exc}"
            out[name] = entry
        for name, reason in self.failed.items():
            out[name] = {"running": False, "error": reason}
        return out
