"""/api/v1/anomaly routes over a real anomaly service (its engine, observe mode and observe.json): the
detector's alarms and the operator's verdicts; 503 without it, 4xx for bad input with nothing changed,
a verdict that cannot be written is not kept. And the Incidents page's "right" on an incident at this
node reaching the detector's observe mode as a confirmed fault (healing_api)."""

from __future__ import annotations

import asyncio
import errno
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.ui.healing_node import ME, HealingNode
from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.anomaly import service as anomaly_service
from x0node.anomaly.alarm import AlarmPolicy
from x0node.anomaly.features import FEATURES, NEUTRAL_RAW
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.web.anomaly_api import add_routes
from x0node.web.healing_api import add_routes as add_healing_routes
from x0node.web.healing_api import concerns_node


class _Router:
    def neighbours(self):
        return ()


def _detector(tmp_path):
    ctx = ServiceContext(router=_Router(), config=None, data_dir=tmp_path, registry=CollectorRegistry(),
                         bus=EventBus(), interfaces=["lo"], node_id=ME, mesh_addr="fd00::1", provider=None, extras={})
    return anomaly_service.create_service({"interval_s": 3600, "seed": 1}), ctx


async def _raise_alarm(s) -> int:
    bad = NEUTRAL_RAW.copy()
    for name, value in (("fwd_ratio", 0.01), ("loss_max", 0.9), ("link_changes", 8.0), ("rtt_ms", 900.0)):
        bad[FEATURES.index(name)] = value
    assert await s.wait_loaded()
    s.engine.alarm_policy = AlarmPolicy()
    for layer in ("gbt", "gbt_self", "gnn", "self"):  # the rules judge: the alarm does not hang on a model
        s.engine.chain.layers[layer].live = False
    s._features.update = lambda *a, **k: np.asarray(bad)  # noqa: SLF001 - this node black-holes transit
    await s.tick()
    return s.alarms()[0]["id"]


@pytest.fixture
async def api(aiohttp_client, tmp_path):
    det, ctx = _detector(tmp_path)
    svc: list = [None]
    healing = HealingNode(tmp_path)
    app = make_app(tmp_path)
    add_routes(app, lambda: svc[0])
    add_healing_routes(app, lambda: healing.ctx.extras.get("healing"), lambda: svc[0])
    client = await aiohttp_client(app)
    yield client, det, ctx, svc, healing, tmp_path
    if svc[0] is not None:
        await det.stop()
    if healing.ctx.extras.get("healing") is not None:
        await healing.service.stop()


def test_an_incident_concerns_this_node_at_its_node_its_links_and_its_own_parts():
    assert concerns_node("node:AA", "aa") and not concerns_node("node:bb", "aa")
    assert concerns_node("link:aa~bb", "aa") and concerns_node("link:bb~aa", "aa") and not concerns_node("link:bb~cc", "aa")
    assert concerns_node("service:telemetry", "aa") and concerns_node("interface:eth1", "aa")
    assert not concerns_node("uplink:wan", "aa") and not concerns_node(None, "aa") and not concerns_node("node:aa", "")


async def test_alarm_routes_judge_refuse_bad_input_and_keep_nothing_unsaved(api, monkeypatch):
    client, det, ctx, svc, _healing, tmp_path = api
    assert (await client.get("/api/v1/anomaly/alarms")).status == 401
    token = await do_setup(client, tmp_path)
    h = {"X-CSRF-Token": token}
    assert (await client.get("/api/v1/anomaly/alarms")).status == 503
    assert (await client.post("/api/v1/anomaly/alarms/1/feedback", json={"fault": True}, headers=h)).status == 503
    await det.start(ctx)
    await det.wait_loaded()
    svc[0] = det
    body = await (await client.get("/api/v1/anomaly/alarms")).json()
    assert body["alarms"] == [] and body["observe"]["phase"] == "observe" and body["observe"]["precision"] is None
    aid = await _raise_alarm(det)
    body = await (await client.get("/api/v1/anomaly/alarms?limit=5")).json()
    assert body["alarms"][0]["id"] == aid and body["alarms"][0]["fault"] is None
    assert (await client.get("/api/v1/anomaly/alarms?limit=0")).status == 400
    base = f"/api/v1/anomaly/alarms/{aid}/feedback"
    for bad in ({}, {"fault": 1}, {"fault": "yes"}, {"fault": None}, {"fault": True, "note": "x"}):
        r = await client.post(base, json=bad, headers=h)
        assert r.status == 400, (bad, await r.text())
    assert (await client.post(base, data="[1]", headers={**h, "Content-Type": "application/json"})).status == 400
    assert (await client.post(base, json={"fault": True})).status == 403  # no CSRF token
    assert (await client.post(f"/api/v1/anomaly/alarms/{aid + 7}/feedback", json={"fault": True}, headers=h)).status == 404
    assert (await client.post("/api/v1/anomaly/alarms/0/feedback", json={"fault": True}, headers=h)).status == 404
    assert det.alarms()[0]["fault"] is None and det.status()["observe"]["outcomes"] == 0

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(anomaly_service, "write_atomic", full)
    r = await client.post(base, json={"fault": False}, headers=h)
    assert r.status == 507 and "not saved" in (await r.json())["error"]
    assert det.alarms()[0]["fault"] is None
    monkeypatch.undo()
    r = await client.post(base, json={"fault": False}, headers=h)
    assert r.status == 201, await r.text()
    got = await r.json()
    assert got["alarm"]["fault"] is False and got["alarm"]["source"] == "operator" and got["observe"]["precision"] == 0.0
    saved = json.loads((tmp_path / "anomaly" / "observe.json").read_text())
    assert [a[3:] for a in saved["alarms"] if a[0] == aid] == [[False, "operator"]]
    r = await client.post(base, json={"fault": True}, headers=h)  # changed mind: the last verdict counts
    assert r.status == 201 and (await r.json())["observe"]["precision"] == 1.0


async def test_a_right_incident_at_this_node_is_a_fault_the_detector_learns_from(api):
    client, det, ctx, svc, healing, tmp_path = api
    token = await do_setup(client, tmp_path)
    h = {"X-CSRF-Token": token}
    await det.start(ctx)
    await det.wait_loaded()
    svc[0] = det
    aid = await _raise_alarm(det)  # raised just before the incident opens: inside its look-back
    await healing.service.start(healing.ctx)  # the stuck telemetry service: an incident at service:telemetry
    for _ in range(200):
        rows = await (await client.get("/api/v1/healing/incidents")).json()
        if rows:
            break
        await asyncio.sleep(0.05)
    iid = rows[0]["id"]
    base = f"/api/v1/healing/incidents/{iid}/feedback"
    assert (await client.post(base, json={"right": False}, headers=h)).status == 201
    assert det.status()["observe"]["faults"] == 0  # "wrong" says nothing about whether something was wrong
    assert (await client.post(base, json={"right": True}, headers=h)).status == 201
    st = det.status()["observe"]
    assert st["faults"] == 1 and st["missed"] == 0 and st["recall"] == 1.0
    assert det.alarms()[0] == {**det.alarms()[0], "id": aid, "fault": True, "source": "incident"}
    assert json.loads((tmp_path / "anomaly" / "observe.json").read_text())["faults"][0][2] is True
