"""Configuration through the web API, over the daemon's own provider and validation: keys that can keep
the node (or the UI) from starting are refused before anything is stored, secrets never leave the
device, and a write the storage refuses is a 507/503 that changes nothing."""

from __future__ import annotations

import base64
import errno
import json
import socket

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.test_daemon_provider import NodeUnderTest
from tests.unit.test_web_support import do_setup, fast_argon2  # noqa: F401
from x0node.daemon import config as cfg
from x0node.daemon.node import load_trust
from x0node.daemon.provider import DaemonStateProvider
from x0node.web import app as web_app
from x0node.web.app import create_app
from x0node.web.config import WebConfig

PSK = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def daemon(tmp_path):
    path = tmp_path / "x0node.toml"
    path.write_text(f"""
[node]
interfaces = ["m1"]
[routing]
hello_interval_s = 0.5
[web]
listen = "127.0.0.1"
port = 0
[transport]
[[transport.tunnels]]
role = "client"
server = "192.0.2.1:443"
tap = "x0t9"
password = "{PSK}"
""")
    node = NodeUnderTest(cfg.load(path, data_dir=str(tmp_path / "data")))
    node.config_path = path
    return node


@pytest.fixture
async def client(aiohttp_client, daemon, tmp_path):
    web_cfg = WebConfig.from_mapping(daemon.config.section("web"))
    c = await aiohttp_client(create_app(DaemonStateProvider(daemon), web_cfg, tmp_path / "data", CollectorRegistry()))
    c.csrf = await do_setup(c, tmp_path / "data")
    return c


async def _patch(c, changes):
    r = await c.patch("/api/v1/config", data=json.dumps(changes), headers={
        "X-CSRF-Token": c.csrf, "Content-Type": "application/json"})
    return r, await r.json()


def _local(daemon):
    path = daemon.config.data_dir / cfg.LOCAL_CONFIG_NAME
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize("changes,key", [
    ({"trust": {"anchors": ["/nonexistent/anchor.pub"]}}, "trust.anchors"),
    ({"trust": {"certificate": "/etc/hostname"}}, "trust.certificate"),
    ({"trust": {"allowed_keys": ["00" * 32]}}, "trust.allowed_keys"),
    ({"kernel": {"table": 100}}, "kernel.table"),
    ({"kernel": {"rule_priority": 1}}, "kernel.rule_priority"),
    ({"node": {"data_dir": "/tmp/elsewhere"}}, "node.data_dir"),
    ({"web": {"enabled": False}}, "web.enabled"),
    ({"routing": {"hello_interval_s": 0.4}, "trust": {"revocations": "/x"}}, "trust.revocations"),
])
async def test_startup_keys_are_not_writable_from_the_web(client, daemon, changes, key):
    r, body = await _patch(client, changes)
    assert r.status == 403 and body["key"] == key, body
    assert _local(daemon) is None
    # the node still starts as it did: the stored config loads and its trust material too
    load_trust(cfg.load(daemon.config_path, data_dir=str(daemon.config.data_dir)))


async def test_a_config_that_would_fail_at_the_next_start_is_refused(client, daemon):
    # the routing core takes at most MAX_INTERFACES interfaces; a longer list used to be stored
    from x0node.proto.protocol import MAX_INTERFACES

    names = [f"m{i}" for i in range(MAX_INTERFACES + 1)]
    r, body = await _patch(client, {"node": {"interfaces": names}})
    assert r.status == 400 and body["key"] == "node.interfaces", body
    # the web UI would not come back on an address this device does not have
    r, body = await _patch(client, {"web": {"listen": "192.0.2.77"}})
    assert r.status == 400 and body["key"] == "web.listen", body
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r, body = await _patch(client, {"web": {"port": taken.getsockname()[1]}})
    assert r.status == 400 and body["key"] == "web.port", body
    assert _local(daemon) is None
    r, body = await _patch(client, {"node": {"interfaces": names[:MAX_INTERFACES]}, "web": {"listen": "127.0.0.1"}})
    assert r.status == 200, body
    assert cfg.load(daemon.config_path, data_dir=str(daemon.config.data_dir)).node["interfaces"] == names[:MAX_INTERFACES]


async def test_secrets_are_never_returned(client):
    for path in ("/api/v1/config", "/api/v1/status"):
        text = await (await client.get(path)).text()
        assert PSK not in text, path
    cfg_view = await (await client.get("/api/v1/config")).json()
    assert cfg_view["transport"]["tunnels"][0]["password"] == web_app.SECRET_PLACEHOLDER
    r, body = await _patch(client, {"routing": {"hello_interval_s": 0.4}})
    assert r.status == 200 and PSK not in json.dumps(body)
    # sending the placeholder back would store it as the key: refused
    tunnel = {k: v for k, v in cfg_view["transport"]["tunnels"][0].items() if k != "addresses"}
    r, body = await _patch(client, {"transport": {"tunnels": [tunnel]}})
    assert r.status == 400 and body["key"].startswith("transport.tunnels"), body


@pytest.mark.parametrize("code,status", [(errno.ENOSPC, 507), (errno.EIO, 503)])
async def test_storage_failure_is_reported_and_changes_nothing(client, daemon, monkeypatch, code, status):
    def refuse(*args, **kwargs):
        raise OSError(code, "refused")

    monkeypatch.setattr(cfg, "write_atomic", refuse)
    r, body = await _patch(client, {"routing": {"hello_interval_s": 0.4}})
    assert r.status == status and "not saved" in body["error"]
    assert daemon.config.routing["hello_interval_s"] == 0.5
    assert (await (await client.get("/api/v1/config")).json())["routing"]["hello_interval_s"] == 0.5
