"""The Incidents page in a real browser (Debian's chromium, headless) over a real healing service (engine,
sqlite knowledge store, actuator; tests/ui/healing_node.py): a stuck service is diagnosed in observe
mode, the operator switches to active from the page and watches it repaired and verified, reads the
causal graph (selects boxes, downloads the DOT), answers "was this right?" (right: the anomaly detector's
observe mode learns a confirmed fault at this node) and judges the detector's alarm (false alarm); the
switch and the answers are in the knowledge store and the detector's observe.json and the switch holds across a restart of the service. Bad writes are refused
with 4xx and change nothing. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.ui.browser import launch
from tests.ui.healing_node import HealingNode
from tests.ui.web_server import ThreadedServer
from x0node.healing.store import FILE_NAME
from x0node.web import credentials
from x0node.web.memory_provider import demo_provider

PASSWORD = "a phone-friendly passphrase"


@pytest.fixture
def node(tmp_path):
    from tests.unit.test_web_anomaly_api import _detector, _raise_alarm
    from x0node.web.anomaly_api import add_routes as add_anomaly_routes

    credentials.Credentials(tmp_path / "web").set_password(PASSWORD)
    healing = HealingNode(tmp_path)
    detector, detector_ctx = _detector(tmp_path)

    def setup(app):
        loop = asyncio.get_event_loop()
        loop.run_until_complete(detector.start(detector_ctx))
        loop.run_until_complete(_raise_alarm(detector))  # raised before the incident opens
        healing.setup(app, lambda: detector)
        add_anomaly_routes(app, lambda: detector)

        async def stop(_app):
            await detector.stop()

        app.on_cleanup.append(stop)

    provider = demo_provider(persist_path=tmp_path / "cfg.json")
    provider.services = lambda: {"healing": healing.service.status(),
                                 "anomaly": {"running": True, "live_layer": "iforest", "evaluations": 12, "peers": 3,
                                             "observe": {"phase": "observe", "acting": False, "precision": None}}}
    with ThreadedServer(provider, tmp_path, setup=setup) as srv:
        srv.healing = healing
        srv.detector = detector
        yield srv


def _login(page, url):
    page.goto(url + "/login")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(url + "/", timeout=30_000)


def test_incident_is_diagnosed_repaired_explained_and_judged(node, artifacts_dir, tmp_path):
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                    and "Failed to load resource" not in m.text else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            _login(page, node.url)

            # the dashboard shows the detector's and the healing loop's state
            expect(page.locator("#dash-detector .value")).to_have_text("observing")
            expect(page.locator("#dash-detector .hint")).to_contain_text("phase observe, layer iforest")
            expect(page.locator("#dash-healing .value")).to_have_text("observing")
            expect(page.locator("#dash-healing .hint")).to_contain_text("1 open incident")
            page.screenshot(path=artifacts_dir / "01-dashboard-loops.png", full_page=True)

            # observe mode: diagnosed, the action only planned
            page.click("#dash-healing")
            expect(page).to_have_url(node.url + "/incidents")
            expect(page.locator("#mode-auto")).to_be_checked()
            expect(page.locator("#mode-now")).to_contain_text("observing")
            row = page.locator("#incident-list tbody tr").first
            expect(row).to_contain_text("service_unhealthy@service:telemetry")
            expect(row).to_contain_text("service_hung@service:telemetry")
            row.locator("a.incident-link").click()
            expect(page).to_have_url(node.url + "/incidents?id=1")
            steps = page.locator("#timeline li")
            expect(steps.nth(0)).to_have_attribute("data-phase", "detected")
            expect(steps.nth(1)).to_have_attribute("data-phase", "root_cause")
            expect(steps.nth(1)).to_contain_text("service_hung at service:telemetry")
            expect(steps.nth(1)).to_contain_text("confidence 91 %")
            expect(steps.nth(2)).to_contain_text("Would act (observe mode)")
            assert node.healing.services.restarts == 0
            page.screenshot(path=artifacts_dir / "02-incident-observed.png", full_page=True)

            # the operator's switch: active; the loop restarts the service and verifies it
            page.check("#mode-active")
            expect(page.locator("#mode-message")).to_contain_text("Switched to Active")
            expect(page.locator("#healing-mode")).to_have_attribute("data-mode", "active")
            expect(page.locator("#timeline li[data-phase=verified]")).to_have_count(1)
            expect(page.locator("#timeline li[data-phase=action]")).to_contain_text("restart_subsystem on service:telemetry")
            expect(page.locator("#timeline li[data-phase=closed]")).to_contain_text("recovered")
            expect(page.locator("#incident-detail h2")).to_contain_text("recovered")
            assert node.healing.services.restarts == 1
            page.screenshot(path=artifacts_dir / "03-incident-recovered.png", full_page=True)

            # the causal graph: the cause shows the evidence, the evidence is the symptom, the action acts on it
            graph = page.locator("svg.causal")
            expect(graph.locator("g.gnode")).to_have_count(4)
            cause = graph.locator("g.gnode.cause.current")
            expect(cause).to_contain_text("service_hung")
            cause.click()
            expect(page.locator("#graph-selected")).to_contain_text("91 %")
            expect(page.locator("#graph-info .links li")).to_have_count(2)
            expect(graph.locator("g.gnode.dim")).to_have_count(1)  # the symptom is reached through the evidence
            graph.locator("g.gnode.action").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#graph-selected")).to_contain_text("verified")
            page.screenshot(path=artifacts_dir / "04-causal-graph.png", full_page=True)
            with page.expect_download() as dl:
                page.click("#graph-dot")
            dot = dl.value.path().read_text()
            assert dl.value.suggested_filename == "incident-1.dot"
            assert dot.startswith("digraph incident_1 {") and dot.rstrip().endswith("}")
            assert "service_hung" in dot and "acts on verified" in dot and "->" in dot

            # was this right?
            page.fill("#feedback-note", "yes: telemetry was wedged")
            page.click("#feedback-yes")
            expect(page.locator("#feedback-message")).to_contain_text("stored")
            expect(page.locator("#timeline li[data-phase=feedback]")).to_contain_text("right")
            expect(page.locator(".feedback-list li")).to_contain_text("telemetry was wedged")
            page.screenshot(path=artifacts_dir / "05-feedback.png", full_page=True)

            # the detector's alarm: "right" at this node confirmed a fault it caught; the operator says
            # its alarm was a false alarm after all (the operator's own verdict on an alarm is final)
            alarms = page.locator("#detector-alarms")
            expect(alarms.locator("#observe-now")).to_contain_text("1 of 1 confirmed faults caught")
            row = alarms.locator("tbody tr").first
            expect(row.locator(".verdict")).to_have_text("real fault (incident)")
            row.locator("button.alarm-false").click()
            expect(alarms.locator("#alarm-message")).to_contain_text("stored as a false alarm")
            expect(alarms.locator("tbody tr").first.locator(".verdict")).to_have_text("false alarm (operator)")
            expect(alarms.locator("#observe-now")).to_contain_text("0 % of 1 judged alarms were real faults")
            page.screenshot(path=artifacts_dir / "05b-detector-alarms.png", full_page=True)
            # on a phone: no sideways scrolling of the page (the graph scrolls inside its box)
            page.set_viewport_size({"width": 390, "height": 844})
            expect(page.locator("#causal-graph svg.causal")).to_be_visible()
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=artifacts_dir / "06-phone-incident.png", full_page=True)
            page.set_viewport_size({"width": 1200, "height": 900})

            # bad input is refused with 4xx and changes nothing
            csrf = page.evaluate("() => fetch('/api/v1/auth/state').then(r => r.json()).then(j => j.csrf_token)")
            api = page.request
            base = node.url + "/api/v1/healing"
            hdr = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
            assert api.put(base + "/mode", data={"mode": "observe"},
                           headers={"Content-Type": "application/json"}).status == 403  # no CSRF token
            assert api.put(base + "/mode", data={"mode": "reboot"}, headers=hdr).status == 400
            for bad in ({"right": "yes"}, {"note": "x"}, {"right": True, "note": "x" * 501},
                        {"right": True, "note": "bell\x07"}, {"right": True, "extra": 1}):
                assert api.post(base + "/incidents/1/feedback", data=bad, headers=hdr).status == 400, bad
            assert api.post(base + "/incidents/999/feedback", data={"right": True}, headers=hdr).status == 404
            assert api.get(base + "/incidents/999").status == 404
            assert api.get(base + "/incidents?limit=0").status == 400
            for bad in ({"fault": "no"}, {}, {"fault": True, "right": True}):
                assert api.post(node.url + "/api/v1/anomaly/alarms/1/feedback", data=bad, headers=hdr).status == 400
            assert api.post(node.url + "/api/v1/anomaly/alarms/99/feedback", data={"fault": True}, headers=hdr).status == 404
            assert page.evaluate("() => fetch('/api/v1/healing').then(r => r.json()).then(j => j.mode)") == "active"
            assert not errors, errors
        finally:
            browser.close()

    # stored in the knowledge base: the switch and the answer (one; the refused ones left no trace)
    db = sqlite3.connect(tmp_path / "healing" / FILE_NAME)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'setting.operator_mode'").fetchone() == ("active",)
        rows = db.execute("SELECT body FROM events WHERE type = 'Feedback' AND incident_id = 1").fetchall()
        assert len(rows) == 1 and '"right": true' in rows[0][0] and "telemetry was wedged" in rows[0][0]
    finally:
        db.close()
    observe = json.loads((tmp_path / "anomaly" / "observe.json").read_text())
    assert [a[3:] for a in observe["alarms"]] == [[False, "operator"]] and observe["faults"][0][2] is True


def test_the_switch_holds_across_a_restart(tmp_path):
    async def run():
        first = HealingNode(tmp_path)
        await first.service.start(first.ctx)
        try:
            await first.service.switch_mode("active")
            assert first.service.status()["pinned"] == "active"
        finally:
            await first.service.stop()
        second = HealingNode(tmp_path)  # the config says observe
        await second.service.start(second.ctx)
        try:
            st = second.service.status()
            assert st["mode"] == "active" and st["pinned"] == "active"
            await second.service.switch_mode("auto")
        finally:
            await second.service.stop()
        third = HealingNode(tmp_path, {"mode": "active"})  # automatic, chosen last, wins over the config
        await third.service.start(third.ctx)
        try:
            assert third.service.status()["pinned"] is None
        finally:
            await third.service.stop()

    asyncio.run(run())


def test_without_the_healing_service_the_page_says_so(tmp_path, artifacts_dir):
    credentials.Credentials(tmp_path / "web").set_password(PASSWORD)
    from x0node.web.healing_api import add_routes

    with ThreadedServer(demo_provider(), tmp_path, setup=lambda app: add_routes(app, lambda: None)) as srv, \
            sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            _login(page, srv.url)
            expect(page.locator("#dash-healing .value")).to_have_text("not running")
            page.goto(srv.url + "/incidents")
            expect(page.locator("#healing-off")).to_contain_text("not running")
            page.screenshot(path=artifacts_dir / "healing-off.png")
        finally:
            browser.close()


def test_a_lossy_link_shows_its_alternatives(tmp_path, artifacts_dir):
    credentials.Credentials(tmp_path / "web").set_password(PASSWORD)
    healing = HealingNode(tmp_path)
    healing.services.healthy = True
    healing.router.loss_a = 0.35  # hellos on the link to A get lost
    with ThreadedServer(demo_provider(), tmp_path, setup=healing.setup) as srv, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            _login(page, srv.url)
            page.goto(srv.url + "/incidents?id=1")
            expect(page.locator("#timeline li[data-phase=root_cause]").first).to_contain_text("link_lossy at link:")
            root = page.locator("#timeline li[data-phase=root_cause]").first
            expect(root).to_contain_text("alternatives: ")  # the runners-up, most likely first
            expect(root).to_contain_text(re.compile(r"alternatives: .*node_down@node:"))
            graph = page.locator("svg.causal")
            # the lossy link, and its runners-up: a congested link and the far node down
            expect(graph.locator("g.gnode.cause")).to_have_count(3)
            expect(graph.locator("path.edge.could_explain")).to_have_count(2)
            expect(graph.locator("g.gnode.action")).to_contain_text("observe only")
            expect(graph.locator("g.gnode.cause.current .sub")).to_contain_text("link:aaaaaaaa~bbbbbbbb")
            graph.locator("g.gnode.cause:not(.current)").first.click()
            expect(page.locator("#graph-selected")).to_contain_text("alternative")
            expect(page.locator("#graph-info .links li")).to_contain_text("could explain symptom link_loss")
            page.screenshot(path=artifacts_dir / "lossy-link-graph.png", full_page=True)
        finally:
            browser.close()
