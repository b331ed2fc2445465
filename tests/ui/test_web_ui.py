"""The web UI in a real browser (Debian's chromium, headless) against the app over a demo node:
first-password setup with the setup code, dashboard with live updates, topology drawing, settings
change with validation, logout and login, phone-sized screens. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.ui.browser import launch
from tests.ui.web_server import ThreadedServer
from x0node.web.memory_provider import demo_provider

PASSWORD = "a phone-friendly passphrase"


@pytest.fixture
def node(tmp_path):
    provider = demo_provider(persist_path=tmp_path / "cfg.json")
    with ThreadedServer(provider, tmp_path) as srv:
        yield srv


def test_first_visit_to_settings(node, artifacts_dir):
    provider = node.provider
    code = (node.data_dir / "web" / "setup-code").read_text().strip()
    csp_errors: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            # refused requests (wrong code/password, invalid value) log "Failed to load resource"; those
            # are expected. Anything else at error level, CSP reports included, is a bug.
            page.on("console", lambda m: csp_errors.append(m.text) if m.type == "error"
                    and "Failed to load resource" not in m.text else None)
            page.on("pageerror", lambda e: csp_errors.append(str(e)))

            # first visit: any page leads to the setup form
            page.goto(node.url + "/topology")
            expect(page).to_have_url(node.url + "/setup")
            expect(page.locator("#setup-form")).to_be_visible()
            expect(page.locator("#login-form")).to_be_hidden()
            page.screenshot(path=artifacts_dir / "01-first-visit-setup.png")

            page.fill("#setup-code", "AAAA-BBBB-CCCC")
            page.fill("#setup-password", PASSWORD)
            page.fill("#setup-password2", PASSWORD)
            page.click("#setup-form button[type=submit]")
            expect(page.locator("#message")).to_contain_text("wrong setup code")
            page.screenshot(path=artifacts_dir / "02-wrong-setup-code.png")

            page.fill("#setup-code", code.lower())
            page.click("#setup-form button[type=submit]")
            expect(page).to_have_url(node.url + "/", timeout=30_000)  # argon2id on a busy machine
            expect(page.locator("#dash-neighbours tbody tr")).to_have_count(3)
            expect(page.locator(".stat.health-ok .value")).to_have_text("ok")
            expect(page.locator("#live.on")).to_be_visible()
            page.screenshot(path=artifacts_dir / "03-dashboard.png", full_page=True)

            # live: a new neighbour and an event appear without a reload
            ns = provider.neighbours()
            ns.append({"node_id": "f00dfeedf00dfeed", "ifname": "mesh1", "state": "up", "rtt_ms": 4.0,
                       "loss": 0.0, "throughput_bps": 2e7, "quality": "good", "cost": 12})
            provider.set_neighbours(ns)
            provider.add_event("neighbour_up", "neighbour f00dfeed up")
            expect(page.locator("#dash-neighbours tbody tr")).to_have_count(4)
            expect(page.locator(".neighbours-count .value")).to_have_text("4")
            expect(page.locator(".events li").first).to_contain_text("neighbour f00dfeed up")

            page.click("nav >> text=Topology")
            expect(page).to_have_url(node.url + "/topology")
            svg = page.locator("svg.topology")
            expect(svg.locator("g.node")).to_have_count(5)
            expect(svg.locator("line.link")).to_have_count(6)
            assert svg.locator("line[data-quality=good]").count() == 2
            assert svg.locator("line[data-quality=fair]").count() == 2
            assert svg.locator("line[data-quality=poor]").count() == 2
            assert svg.locator("line[data-quality=poor]").first.get_attribute("stroke") == "#f97316"
            box = svg.bounding_box()
            assert box is not None and box["width"] > 500 and box["height"] > 250
            # nodes are spread out, not piled up
            centres = {tuple(round(float(v)) for v in g.get_attribute("transform")[10:-1].split(","))
                       for g in svg.locator("g.node").all()}
            assert len(centres) == 5
            page.screenshot(path=artifacts_dir / "04-topology.png", full_page=True)

            page.click("nav >> text=Routes")
            expect(page.locator("main tbody tr")).to_have_count(4)
            page.click("nav >> text=Neighbours")
            expect(page.locator("main tbody tr")).to_have_count(4)
            page.click("nav >> text=Events")
            expect(page.locator(".events li")).to_have_count(5)
            page.screenshot(path=artifacts_dir / "04b-events.png", full_page=True)
            page.go_back()
            expect(page).to_have_url(node.url + "/neighbours")

            page.click("nav >> text=Settings")
            hello = page.locator("#cfg-routing-hello_interval_s")
            expect(hello).to_have_value("1")
            hello.fill("999")
            page.click("#config-form button[type=submit]")
            expect(page.locator("#config-form .message")).to_contain_text("routing.hello_interval_s")
            expect(hello).to_have_class("invalid")
            page.screenshot(path=artifacts_dir / "05-settings-invalid.png", full_page=True)
            assert provider.config_get()["routing"]["hello_interval_s"] == 1.0
            hello.fill("0.5")
            page.click("#config-form button[type=submit]")
            expect(page.locator("#config-form .message")).to_contain_text("Saved")
            assert provider.config_get()["routing"]["hello_interval_s"] == 0.5
            page.screenshot(path=artifacts_dir / "06-settings-saved.png", full_page=True)
            page.reload()
            expect(page.locator("#cfg-routing-hello_interval_s")).to_have_value("0.5")

            page.click("#logout")
            expect(page).to_have_url(node.url + "/login")
            expect(page.locator("#login-form")).to_be_visible()
            expect(page.locator("#setup-form")).to_be_hidden()
            page.fill("#login-password", "not the password")
            page.click("#login-form button[type=submit]")
            expect(page.locator("#message")).to_contain_text("wrong password")
            page.screenshot(path=artifacts_dir / "07-login-wrong.png")
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button[type=submit]")
            expect(page).to_have_url(node.url + "/", timeout=30_000)  # argon2id on a busy machine

            # a phone
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
            pp = phone.new_page()
            pp.goto(node.url + "/login")
            pp.fill("#login-password", PASSWORD)
            pp.click("#login-form button[type=submit]")
            expect(pp.locator("#dash-neighbours tbody tr")).to_have_count(4)
            width = pp.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"page wider than the phone screen: {width}px"
            pp.screenshot(path=artifacts_dir / "08-phone-dashboard.png", full_page=True)
            pp.click("nav >> text=Topology")
            expect(pp.locator("svg.topology g.node")).to_have_count(5)
            pp.screenshot(path=artifacts_dir / "09-phone-topology.png")
            phone.close()
        finally:
            browser.close()
    assert not csp_errors, csp_errors
