"""The dashboard shows the [overlay] service: encrypted sessions, NAT links and yggdrasil peers with
their byte counts (headless chromium against the app over a demo node whose status carries them)."""

from __future__ import annotations

from playwright.sync_api import expect, sync_playwright

from tests.ui.browser import launch
from tests.ui.web_server import ThreadedServer
from x0node.web.memory_provider import demo_provider

PASSWORD = "a phone-friendly passphrase"
OVERLAY = {
    "failed": {},
    "e2e": {"cipher": "chacha20-poly1305", "peers": [
        {"key": "fd78::1", "node_id": "ab" * 16, "established": True, "rx_bytes": 2048, "tx_bytes": 3 << 20}]},
    "nat": {"peers": [{"node_id": "cd" * 16, "state": "direct", "established": True, "endpoint": "100.64.2.1:6719",
                       "punch_setup_s": 0.2, "rx_bytes": 10, "tx_bytes": 20}]},
    "yggdrasil": {"running": True, "address": "200:1234::1", "peers": [
        {"key": "ef" * 32, "remote": "tcp://[fd78::2]:6720", "bytes_recvd": 4096.0, "bytes_sent": 512.0}]},
}


def test_dashboard_shows_overlay_sessions_nat_links_and_yggdrasil(tmp_path, artifacts_dir):
    provider = demo_provider(persist_path=tmp_path / "cfg.json")
    base_status = provider.status
    provider.status = lambda: {**base_status(), "services": {"overlay": OVERLAY}}  # type: ignore[method-assign]
    with ThreadedServer(provider, tmp_path) as srv, sync_playwright() as pw:
        code = (srv.data_dir / "web" / "setup-code").read_text().strip()
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(srv.url + "/")
            page.fill("#setup-code", code)
            page.fill("#setup-password", PASSWORD)
            page.fill("#setup-password2", PASSWORD)
            page.click("#setup-form button[type=submit]")
            expect(page).to_have_url(srv.url + "/", timeout=30_000)
            expect(page.locator("#dash-overlay tbody tr")).to_have_count(1)
            expect(page.locator("#dash-overlay h2")).to_contain_text("chacha20-poly1305")
            expect(page.locator("#dash-overlay tbody")).to_contain_text("3.0 MiB")
            expect(page.locator("#dash-nat tbody")).to_contain_text("direct")
            expect(page.locator("#dash-nat tbody")).to_contain_text("100.64.2.1:6719")
            expect(page.locator("#dash-yggdrasil h2")).to_contain_text("200:1234::1")
            expect(page.locator("#dash-yggdrasil tbody")).to_contain_text("4.0 KiB")
            page.screenshot(path=artifacts_dir / "overlay-dashboard.png", full_page=True)
        finally:
            browser.close()
