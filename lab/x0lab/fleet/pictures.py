"""Pictures of the fleet demo for docs/fleet.md: Prometheus' own pages (the firing alert, and graphs of
dashboard panels' queries) rendered by headless Chromium (Debian's, through Playwright) inside the
monitoring namespace, saved as PNG. Development use only (make fleet-demo SHOTS=DIR)."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import urllib.parse

from x0node.fleet import dashboards

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# (file, dashboard file, panel title, range): panels a person would rather see than read
PANELS = (
    ("panel-routers-not-answering.png", "x0-errors.json", "Routers not answering", "3m"),
    ("panel-node-health.png", "x0-mesh-topology.json", "Node health (worst view)", "3m"),
    ("panel-neighbours-up.png", "x0-mesh-topology.json", "Neighbours up per router", "3m"),
    ("panel-link-rtt-p95.png", "x0-mesh-topology.json", "Link RTT p95 per peer", "3m"),
)


def _panel_expr(dashboard: str, title: str) -> str:
    d = dashboards.dashboards()[dashboard]
    panel = next(p for p in d["panels"] if p["title"] == title)
    return panel["targets"][0]["expr"]


def take(ns: str, prom: str, out_dir: pathlib.Path) -> list[pathlib.Path]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out_dir.mkdir(parents=True, exist_ok=True)
    shots: list[pathlib.Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = pathlib.Path(tmp) / "chromium.sh"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
        wrapper.chmod(0o700)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"{prom}/classic/alerts", wait_until="networkidle")
                page.add_style_tag(content="nav.navbar { position: static !important; }")
                for header in page.locator("tr.alert_header.alert-danger").all():
                    header.click()  # expand the firing groups
                page.wait_for_timeout(500)
                path = out_dir / "prometheus-alerts.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)
                for name, dash, title, rng in PANELS:
                    q = urllib.parse.urlencode({"g0.expr": _panel_expr(dash, title), "g0.tab": "0",
                                                "g0.range_input": rng, "g0.stacked": "0"})
                    page.goto(f"{prom}/classic/graph?{q}", wait_until="networkidle")
                    page.wait_for_selector("svg", timeout=20_000)
                    page.wait_for_timeout(1000)
                    path = out_dir / name
                    page.screenshot(path=str(path), full_page=False)
                    shots.append(path)
            finally:
                browser.close()
    return shots
