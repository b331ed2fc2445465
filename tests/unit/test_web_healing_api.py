"""/api/v1/healing routes and the Incidents page's pure views: the timeline steps and the causal graph
from the knowledge store's records, its Graphviz DOT (parsed by Graphviz's own `dot`), and the API
over a real healing service: 503 without it, 4xx for bad input with nothing changed, the feedback
bound, a switch that cannot be stored changes nothing."""

from __future__ import annotations

import errno
import shutil
import subprocess  # nosec B404 - runs Graphviz's dot on a file we wrote

import pytest

from tests.ui.healing_node import HealingNode
from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.web import healing_api
from x0node.web.healing_api import FEEDBACK_PER_INCIDENT_MAX, add_routes, causal_graph, graph_dot, steps

TIMELINE = [
    {"wall": 1.0, "type": "IncidentOpened", "incident_id": 3, "symptoms": ["link_loss@link:aa~bb", "forwarding_loss@node:cc"]},
    {"wall": 1.0, "type": "Diagnosed", "incident_id": 3, "candidates": [["node:cc", "node_blackhole", 0.4]],
     "evidence": ["forwarding@node:cc['aa']=0.40"]},
    {"wall": 2.0, "type": "Diagnosed", "incident_id": 3,
     "candidates": [["link:aa~bb", "link_lossy", 0.7], ["node:cc", "node_blackhole", 0.2]],
     "evidence": ["hello_loss@link:aa~bb['aa', 'bb']=0.30", "not evidence"]},
    {"wall": 2.0, "type": "Decided", "incident_id": 3, "action": "penalise_link", "target": "link:aa~bb",
     "outcome": "observe_only", "reason": "observe", "mode": "observe"},
    {"wall": 3.0, "type": "Decided", "incident_id": 3, "action": "penalise_link", "target": "link:aa~bb",
     "outcome": "requested", "reason": "r", "mode": "active"},
    {"wall": 3.0, "type": "ActionDone", "incident_id": 3, "request_id": 1, "action": "penalise_link",
     "target": "link:aa~bb", "undo": False, "ok": True, "detail": "done"},
    {"wall": 9.0, "type": "Verified", "incident_id": 3, "request_id": 1, "fault": "link_lossy",
     "action": "penalise_link", "target": "link:aa~bb", "success": False, "reason": "symptoms remain"},
    {"wall": 9.0, "type": "ActionDone", "incident_id": 3, "request_id": 2, "action": "penalise_link",
     "target": "link:aa~bb", "undo": True, "ok": True, "detail": "lifted"},
    {"wall": 9.5, "type": "Feedback", "incident_id": 3, "right": False, "note": 'really "cc"\n{x}'},
    {"type": "Diagnosed", "candidates": "garbage"},  # skipped, never an error
    "not a record",
]


def test_steps_tell_the_incident_in_order():
    got = steps(TIMELINE)
    assert [s["phase"] for s in got] == ["detected", "root_cause", "root_cause", "decision", "decision", "action",
                                         "not_verified", "undone", "feedback"]
    assert got[2]["text"] == "link_lossy at link:aa~bb" and got[2]["confidence"] == 0.7
    assert "node_blackhole@node:cc (20%)" in got[2]["detail"]
    assert got[3]["title"] == "Would act (observe mode)" and got[4]["title"] == "Action chosen"
    assert got[7]["title"] == "Undone" and got[8]["text"] == "wrong"
    assert steps([{"type": "Diagnosed", "candidates": []}])[0]["text"] == "no cause found"


def test_causal_graph_links_causes_evidence_symptoms_and_actions():
    g = causal_graph(TIMELINE)
    by_id = {n["id"]: n for n in g["nodes"]}
    lossy, hole = by_id["cause:link_lossy@link:aa~bb"], by_id["cause:node_blackhole@node:cc"]
    assert lossy["current"] and lossy["confidence"] == 0.7 and lossy["rank"] == 1
    assert hole["superseded"] and not hole["current"] and hole["rank"] == 2  # first guess, now an alternative
    edges = {(e["from"], e["to"], e["kind"]) for e in g["edges"]}
    ev = "evidence:hello_loss@link:aa~bb"
    assert (lossy["id"], ev, "shows") in edges
    assert (ev, "symptom:link_loss@link:aa~bb", "observed_as") in edges  # the evidence is that symptom
    assert (lossy["id"], "symptom:forwarding_loss@node:cc", "explains") in edges  # no evidence names it
    assert (hole["id"], "symptom:forwarding_loss@node:cc", "could_explain") in edges
    act = by_id["action:penalise_link@link:aa~bb"]
    assert act["result"] == "undone" and (act["id"], lossy["id"], "acts_on") in edges
    assert {n["kind"] for n in g["nodes"]} == {"cause", "evidence", "symptom", "action"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz missing: `make deps` installs it")
def test_dot_is_valid_graphviz_and_escapes_names(tmp_path):
    timeline = [dict(r) for r in TIMELINE if isinstance(r, dict)]
    timeline[0] = {**timeline[0], "symptoms": ['x@node:a"]; evil -> pwn [label="', "y@node:b\\\n}"]}
    text = graph_dot(3, causal_graph(timeline))
    assert text.startswith("digraph incident_3 {")
    path = tmp_path / "g.dot"
    path.write_text(text)
    out = subprocess.run(["dot", "-Tjson", str(path)], capture_output=True, text=True, timeout=60, check=False)  # nosec B603 B607
    assert out.returncode == 0, out.stderr
    import json

    drawn = json.loads(out.stdout)
    labels = [o.get("label", "") for o in drawn["objects"]]
    assert len(drawn["objects"]) == len(causal_graph(timeline)["nodes"])
    assert any('"]; evil -> pwn' in x for x in labels)  # kept as text inside one label


@pytest.fixture
async def api(aiohttp_client, tmp_path):
    node = HealingNode(tmp_path)
    svc: list = [None]
    app = make_app(tmp_path)
    add_routes(app, lambda: svc[0])
    client = await aiohttp_client(app)
    yield client, node, svc, tmp_path
    if svc[0] is not None:
        await node.service.stop()


async def _until_incident(client):
    import asyncio

    for _ in range(200):
        rows = await (await client.get("/api/v1/healing/incidents")).json()
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no incident")


async def test_routes_refuse_bad_input_and_change_nothing(api, monkeypatch):
    client, node, svc, tmp_path = api
    assert (await client.get("/api/v1/healing")).status == 401
    token = await do_setup(client, tmp_path)
    h = {"X-CSRF-Token": token}
    assert (await client.get("/api/v1/healing")).status == 503
    assert (await client.put("/api/v1/healing/mode", json={"mode": "active"}, headers=h)).status == 503
    await node.service.start(node.ctx)
    svc[0] = node.service
    inc = await _until_incident(client)
    assert inc["root_cause"] is None and inc["cause"].startswith("service_hung@service:telemetry")
    one = await (await client.get(f"/api/v1/healing/incidents/{inc['id']}")).json()
    assert one["steps"][0]["phase"] == "detected" and one["graph"]["nodes"]
    r = await client.get(f"/api/v1/healing/incidents/{inc['id']}/graph.dot")
    assert r.status == 200 and r.content_type == "text/vnd.graphviz"
    assert 'attachment; filename="incident-' in r.headers["Content-Disposition"]
    assert (await client.get("/api/v1/healing/incidents/0")).status == 404
    assert (await client.get("/api/v1/healing/incidents/12345")).status == 404
    assert (await client.get("/api/v1/healing/incidents/abc")).status in (401, 404)
    assert (await client.get("/api/v1/healing/incidents?limit=1000")).status == 400
    base = f"/api/v1/healing/incidents/{inc['id']}/feedback"
    for bad in ({}, {"right": 1}, {"right": None}, {"right": True, "note": 5}, {"right": True, "note": "n" * 501},
                {"right": True, "note": "\x1b[31m"}, {"right": True, "other": 1}):
        r = await client.post(base, json=bad, headers=h)
        assert r.status == 400, (bad, await r.text())
    assert (await client.post(base, data="[1]", headers={**h, "Content-Type": "application/json"})).status == 400
    assert (await client.post(base, json={"right": True})).status == 403  # no CSRF token
    assert (await client.put("/api/v1/healing/mode", json={"mode": "on"}, headers=h)).status == 400
    assert (await client.put("/api/v1/healing/mode", json={}, headers=h)).status == 400
    # a full data partition: 507, the mode unchanged
    before = (await (await client.get("/api/v1/healing")).json())["pinned"]

    def full(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(node.service.store, "set_setting", full)
    assert (await client.put("/api/v1/healing/mode", json={"mode": "active"}, headers=h)).status == 507
    assert (await (await client.get("/api/v1/healing")).json())["pinned"] == before
    # a store that cannot be written: 503, and the answer is not written later behind the operator's back
    import asyncio
    import sqlite3

    def broken(*_a, **_k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.service.store, "write", broken)
    r = await client.post(base, json={"right": False, "note": "lost"}, headers=h)
    assert r.status == 503 and "not saved" in (await r.json())["error"]
    monkeypatch.undo()
    await asyncio.sleep(0.5)  # a few cycles write whatever else waited
    assert not [e for e in node.service.store.timeline(inc["id"]) if e["type"] == "Feedback"]
    # bounded: FEEDBACK_PER_INCIDENT_MAX answers, then 409
    monkeypatch.setattr(healing_api, "FEEDBACK_PER_INCIDENT_MAX", 3)
    for i in range(3):
        r = await client.post(base, json={"right": i % 2 == 0, "note": f"answer {i}\nsecond line"}, headers=h)
        assert r.status == 201, await r.text()
    assert len((await r.json())["feedback"]) == 3
    assert (await client.post(base, json={"right": True}, headers=h)).status == 409
    assert FEEDBACK_PER_INCIDENT_MAX == 20
    rows = node.service.store.timeline(inc["id"])
    assert [r["note"] for r in rows if r["type"] == "Feedback"] == [f"answer {i}\nsecond line" for i in range(3)]
    r = await client.put("/api/v1/healing/mode", json={"mode": "observe"}, headers=h)
    assert r.status == 200 and (await r.json())["pinned"] == "observe"
    assert node.service.store.get_setting("operator_mode") == "observe"
