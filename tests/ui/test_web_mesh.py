"""The web UI of a real daemon in a 3-node namespace mesh (ring), in a real browser.

Chromium runs inside node 1's namespace (a wrapper runs it under `ip netns exec`; Playwright talks to it
over a pipe), so it reaches the node's web service on [::1] exactly as a browser on the device's LAN
would. Checks: first-password setup with the code the daemon created, the dashboard showing the two
live neighbours (ids from the testbed) and following a link failure and repair without a reload, the
topology view, and a timer setting that survives a daemon restart. Screenshots in test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import tomllib

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.ui import api_check
from tests.ui.browser import CHROMIUM_ARGS, chromium_path, patient

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(importlib.util.find_spec("x0node.daemon.cli") is None, reason="daemon not in this build"),
]

PASSWORD = "mesh admin passphrase"
WEB_PORT = 8080


@pytest.fixture
def mesh(tmp_path):
    from x0lab.testbed import bed as tb

    bed = tb.up(tmp_path / "bed", "ring:3", daemon="x0node", web=True, routing={"hello_interval_s": 0.5})
    try:
        yield bed
    finally:
        bed.down()


def _browser_in(pw, ns: str, tmp: pathlib.Path):  # type: ignore[no-untyped-def]
    wrapper = tmp / f"chromium-{ns}.sh"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium_path()} "$@"\n')
    wrapper.chmod(0o700)
    patient()
    return pw.chromium.launch(executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS)


def test_live_mesh_dashboard_and_persistent_setting(mesh, tmp_path, artifacts_dir):
    n1, n2, n3 = mesh.node(1), mesh.node(2), mesh.node(3)
    url = f"http://[::1]:{WEB_PORT}"
    code = (pathlib.Path(n1.data_dir) / "web" / "setup-code").read_text().strip()
    assert f"setup code {code}" in mesh.log_path(n1).read_text()  # the daemon printed it at first start
    with sync_playwright() as pw:
        browser = _browser_in(pw, n1.ns, tmp_path)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(url + "/")
            expect(page).to_have_url(url + "/setup")
            page.fill("#setup-code", code)
            page.fill("#setup-password", PASSWORD)
            page.fill("#setup-password2", PASSWORD)
            page.click("#setup-form button[type=submit]")
            expect(page).to_have_url(url + "/", timeout=30_000)  # argon2id on a busy machine

            # both ring neighbours, identified by the ids the daemons announced
            rows = page.locator("#dash-neighbours tbody tr")
            expect(rows).to_have_count(2, timeout=30_000)
            for other in (n2, n3):
                expect(page.locator(f'#dash-neighbours [title="{other.node_id}"]')).to_have_count(1)
            expect(page.locator(".neighbours-count .value")).to_have_text("2")
            expect(page.locator("text=" + str(n1.mesh_addr))).to_be_visible()
            page.screenshot(path=artifacts_dir / "01-mesh-dashboard.png", full_page=True)

            # the daemon's provider answers in the documented shapes (fetched by the page itself)
            fetch = "p => fetch(p).then(r => r.json())"
            doc = page.evaluate(fetch, "/api/v1/openapi.json")
            for path in api_check.RESPONSE_SCHEMAS:
                api_check.check(doc, path, page.evaluate(fetch, path))
            status = page.evaluate(fetch, "/api/v1/status")
            assert status["node_id"] == n1.node_id and status["mesh_addr"] == n1.mesh_addr
            topo = page.evaluate(fetch, "/api/v1/topology")
            assert {n["node_id"] for n in topo["nodes"]} == {n1.node_id, n2.node_id, n3.node_id}

            # /metrics of the daemon's shared registry: every family once, the seed's names present
            metrics = page.evaluate("p => fetch(p).then(r => r.text())", "/metrics")
            types = [ln.split()[2] for ln in metrics.splitlines() if ln.startswith("# TYPE ")]
            assert len(types) == len(set(types)), sorted(t for t in types if types.count(t) > 1)
            for name in ("http_requests_total", "http_request_duration_seconds", "mesh_peers_count", "mesh_latency_seconds",
                         "node_health_status", "node_uptime_seconds", "x0node_packets_dropped_total", "x0node_routes",
                         "x0node_lsdb_size", "x0node_spf_runs_total", "x0node_spf_seconds_total"):
                assert name in types, name
            assert "mesh_peers_count 2.0" in metrics

            # live: a link failure and its repair show up without a reload
            mesh.fault("link-down", 1, 2)
            expect(page.locator(".neighbours-count .value")).to_have_text("1", timeout=20_000)
            page.screenshot(path=artifacts_dir / "02-mesh-link-down.png", full_page=True)
            mesh.heal(1, 2)
            expect(page.locator(".neighbours-count .value")).to_have_text("2", timeout=30_000)

            page.click("nav >> text=Topology")
            expect(page.locator("svg.topology g.node")).to_have_count(3, timeout=20_000)
            expect(page.locator("svg.topology line.link")).to_have_count(3, timeout=20_000)
            page.screenshot(path=artifacts_dir / "03-mesh-topology.png", full_page=True)

            page.click("nav >> text=Settings")
            hello = page.locator("#cfg-routing-hello_interval_s")
            expect(hello).to_have_value("0.5")
            hello.fill("0.4")
            page.click("#config-form button[type=submit]")
            expect(page.locator("#config-form .message")).to_contain_text("Saved")
            page.screenshot(path=artifacts_dir / "04-mesh-settings-saved.png", full_page=True)
            local = pathlib.Path(n1.data_dir) / "config.local.toml"
            assert tomllib.loads(local.read_text())["routing"]["hello_interval_s"] == 0.4
            # a refused value changes nothing, in the page or on disk
            hello.fill("99")
            page.click("#config-form button[type=submit]")
            expect(page.locator("#config-form .message")).to_contain_text("routing.hello_interval_s")
            assert tomllib.loads(local.read_text())["routing"]["hello_interval_s"] == 0.4
            hello.fill("0.4")

            # restart the daemon: sessions end, the setting stays
            mesh.stop(1)
            mesh.start(1)
            page.goto(url + "/settings")
            expect(page).to_have_url(url + "/login")
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button[type=submit]")
            expect(page).to_have_url(url + "/", timeout=30_000)  # argon2id on a busy machine
            page.click("nav >> text=Settings")
            expect(page.locator("#cfg-routing-hello_interval_s")).to_have_value("0.4")
            page.screenshot(path=artifacts_dir / "05-mesh-settings-after-restart.png", full_page=True)
            expect(page.locator(".neighbours-count .value")).to_have_count(0)  # on settings, not dashboard
            page.click("nav >> text=Dashboard")
            expect(page.locator("#dash-neighbours tbody tr")).to_have_count(2, timeout=30_000)
        finally:
            browser.close()
