"""The `[web]` daemon service: config validation through the daemon's services contract, start/stop."""

from __future__ import annotations

import types

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.unit.test_web_support import fast_argon2  # noqa: F401
from x0node.daemon.config import ConfigError
from x0node.daemon.services import validate_section
from x0node.web import service
from x0node.web.memory_provider import demo_provider


def test_validate_config_via_daemon():
    out = validate_section("web", {"port": 0, "listen": "::1"})
    assert out["port"] == 0 and out["listen"] == "::1" and out["metrics_allow"]
    with pytest.raises(ConfigError) as exc:
        validate_section("web", {"port": "80"})
    assert exc.value.key == "web.port"
    with pytest.raises(ConfigError) as exc:
        validate_section("web", {"bogus": 1})
    assert exc.value.key == "web.bogus"


async def test_service_serves_and_stops(tmp_path):
    registry = CollectorRegistry()
    # a daemon metric of the same name is left to the daemon, not duplicated
    Counter("x0node_packets_dropped", "daemon's own", ["reason"], registry=registry).labels("x").inc()
    ctx = types.SimpleNamespace(provider=demo_provider(), data_dir=tmp_path, registry=registry)
    svc = service.create_service({"listen": "127.0.0.1", "port": 0})
    await svc.start(ctx)
    try:
        assert svc.status()["password_set"] is False
        async with aiohttp.ClientSession() as s:
            async with s.get(svc.url + "api/v1/auth/state") as r:
                assert r.status == 200 and (await r.json())["password_set"] is False
            async with s.get(svc.url + "metrics") as r:
                text = await r.text()
        assert text.count("# TYPE x0node_packets_dropped_total counter") == 1
        assert 'x0node_packets_dropped_total{reason="x"} 1.0' in text
        assert "mesh_peers_count 3.0" in text
    finally:
        await svc.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as s:
            await s.get(svc.url + "api/v1/auth/state")
