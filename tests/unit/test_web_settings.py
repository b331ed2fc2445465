"""The Settings page's descriptions (x0node/web/settings.py, GET /api/v1/config/schema): every key of
the daemon's config and its services' sections gets a label that is not its raw name, a unit where the
name has one, the ranges the validators enforce, and read-only marks exactly where the API refuses."""

from __future__ import annotations

import importlib

from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.daemon import config as daemon_config
from x0node.daemon import services
from x0node.web.app import WEB_READ_ONLY
from x0node.web.settings import SETTINGS, describe, fallback


def _daemon_defaults():
    from x0node.daemon.provider import _routing_effective

    cfg = dict(daemon_config.validate({}))
    cfg["routing"] = _routing_effective({})  # the effective timers, as the daemon's provider serves them
    for name, module in services.SERVICES.items():
        validate = getattr(importlib.import_module(module), "validate_config", None)
        if validate is not None:
            cfg[name] = validate({})
    return cfg


def test_every_daemon_key_is_described_in_words():
    cfg = _daemon_defaults()
    out = describe(cfg, WEB_READ_ONLY)
    for dotted, meta in out["settings"].items():
        key = dotted.split(".", 1)[1]
        assert meta["label"] and meta["label"] != key and "_" not in meta["label"], dotted
    assert set(out["sections"]) == {k for k, v in cfg.items() if isinstance(v, dict)}
    assert out["settings"]["routing.hello_interval_s"] == {
        "label": "Hello interval", "unit": "s", "description": SETTINGS["routing.hello_interval_s"].description,
        "min": 0.01, "max": 10, "read_only": False}
    assert out["sections"]["trust"]["read_only"] and out["settings"]["trust.anchors"]["read_only"]
    assert out["settings"]["web.enabled"]["read_only"] and not out["settings"]["web.port"]["read_only"]
    assert out["settings"]["healing.interval_s"]["min"] == 0.1 and out["settings"]["healing.interval_s"]["max"] == 60


def test_fallback_names_the_unit():
    assert fallback("peer_ttl_ms") == ("Peer ttl", "ms", "", None, None)
    assert fallback("max_bytes").unit == "bytes" and fallback("rate_bps").unit == "bit/s"


async def test_schema_route_uses_the_providers_ranges(aiohttp_client, tmp_path):
    client = await aiohttp_client(make_app(tmp_path))
    assert (await client.get("/api/v1/config/schema")).status == 401
    await do_setup(client, tmp_path)
    body = await (await client.get("/api/v1/config/schema")).json()
    hello = body["settings"]["routing.hello_interval_s"]
    assert (hello["min"], hello["max"], hello["unit"]) == (0.1, 60.0, "s")  # the in-memory provider's range
