"""What a person sees, in a real browser (Debian's chromium, headless) over the in-memory provider: the
topology view at 1, 20 and 200 nodes (no giant lone circle, no pile of overlapping nodes, labels that
fit), the events list without the detector's feature feed and with repeated drops folded, settings
with labels, units, descriptions and ranges (read-only keys shown, not offered), and a "degraded" that
says why. Screenshots go to test-artifacts/ (looked at when this changes)."""

from __future__ import annotations

import math
import random
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.ui.browser import launch
from tests.ui.web_server import ThreadedServer
from x0node.web import credentials
from x0node.web.memory_provider import MemoryProvider

PASSWORD = "a phone-friendly passphrase"

# node geometry on screen: centres, radii, label boxes (CSS pixels)
GEOMETRY = """() => {
  const svg = document.querySelector("svg.topology").getBoundingClientRect();
  const nodes = [...document.querySelectorAll("svg.topology g.node circle")].map((c) => {
    const b = c.getBoundingClientRect(); return { x: b.x + b.width / 2, y: b.y + b.height / 2, r: b.width / 2 }; });
  const labels = [...document.querySelectorAll("svg.topology text.label")].map((t) => {
    const b = t.getBoundingClientRect(); return [b.x, b.y, b.x + b.width, b.y + b.height]; });
  return { width: svg.width, height: svg.height, nodes, labels };
}"""


class ConfiguredProvider(MemoryProvider):
    """The in-memory node with the daemon's other sections in its config (web, trust) beside routing."""

    def config_get(self):  # type: ignore[no-untyped-def]
        return {**super().config_get(), "web": {"enabled": True, "port": 8080, "session_idle_s": 3600.0},
                "trust": {"anchors": ["/data/x0node/anchor.pub"], "allowed_keys": []}}


def mesh(provider: MemoryProvider, n: int, seed: int = 7) -> None:
    """n nodes (this one included): a ring with random chords, this node linked to three."""
    rng = random.Random(seed)
    ids = [provider.node_id] + [f"{i:04x}{rng.getrandbits(48):012x}" for i in range(1, n)]
    nodes = [{"node_id": x, "name": "node-a" if i == 0 else f"n{i}", "mesh_addr": f"fd00::{i:x}", "self": i == 0}
             for i, x in enumerate(ids)]
    links = set()
    if n > 1:
        for i in range(n):
            j = (i + 1) % n
            if i != j:
                links.add(tuple(sorted((i, j))))
        for _ in range(n // 4):
            a, b = rng.randrange(n), rng.randrange(n)
            if a != b:
                links.add(tuple(sorted((a, b))))
    quality = ("excellent", "good", "fair", "poor", "bad")
    provider.set_topology({"nodes": nodes, "links": [
        {"a": ids[a], "b": ids[b], "cost": 10 + 10 * rng.randrange(5), "quality": rng.choice(quality),
         "throughput_bps": 1e6 * rng.randrange(1, 100)} for a, b in sorted(links)]})


@pytest.fixture
def node(tmp_path):
    credentials.Credentials(tmp_path / "web").set_password(PASSWORD)
    provider = ConfiguredProvider(persist_path=tmp_path / "cfg.json")
    with ThreadedServer(provider, tmp_path) as srv:
        yield srv


def _login(page, url):
    page.goto(url + "/login")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(url + "/", timeout=30_000)


def test_topology_reads_well_from_1_to_200_nodes(node, artifacts_dir):
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            _login(page, node.url)
            for n in (1, 20, 200):
                mesh(node.provider, n)
                page.goto(node.url + "/topology")
                expect(page.locator("svg.topology g.node")).to_have_count(n)
                expect(page.locator("#topology-alone")).to_have_count(1 if n == 1 else 0)
                page.screenshot(path=artifacts_dir / f"topology-{n:03d}-nodes.png", full_page=True)
                g = page.evaluate(GEOMETRY)
                radii = [c["r"] for c in g["nodes"]]
                # a lone node is a node, not the whole picture; a big mesh still shows each node
                assert max(radii) * 2 <= 0.1 * g["width"], (n, max(radii), g["width"])
                assert min(radii) >= 3.0, (n, min(radii))
                # nodes do not pile up: each centre is at least a diameter from its nearest other node
                if n > 1:
                    centres = g["nodes"]
                    nearest = [min(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for b in centres if b is not a)
                               for a in centres]
                    assert min(nearest) >= 2 * min(radii), (n, min(nearest), min(radii))
                # every node is named when there are few; at 200 only this node and its neighbours are
                labels = g["labels"]
                assert len(labels) == n if n <= 40 else len(labels) < 10, (n, len(labels))
                overlaps = sum(1 for i, a in enumerate(labels) for b in labels[i + 1:]
                               if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
                assert overlaps == 0, (n, overlaps)
                assert page.locator("svg.topology g.node").last.locator("title").text_content()
        finally:
            browser.close()


def test_events_settings_and_health_read_as_words(node, artifacts_dir):
    p = node.provider
    t0 = time.time() - 300
    p.add_event("neighbour_up", "neighbour node-b up", when=t0)
    for i in range(4):  # a flapping neighbour: drops interleaved with returns
        p.add_event("FeatureVector", "FeatureVector", {"cpu_util": 0.1}, when=t0 + 10 * i + 1)
        p.add_event("NeighbourDown", "neighbour b7c1d2e3 down on mesh0 (dead)", when=t0 + 10 * i + 2)
        p.add_event("NeighbourUp", "neighbour b7c1d2e3 up on mesh0", when=t0 + 10 * i + 5)
    p.add_event("route_change", "route to node-e via node-c", when=t0 + 60)
    p.add_event("route_change", "route to node-e via node-c", when=t0 + 61)
    p.health, p.health_reason = "degraded", "no neighbour answers on mesh0: no other node in range, or theirs are down"
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            _login(page, node.url)
            # degraded, and why
            expect(page.locator("#health")).to_contain_text("degraded: no neighbour answers on mesh0")
            expect(page.locator("#health-reason")).to_contain_text("no neighbour answers on mesh0")
            page.screenshot(path=artifacts_dir / "dashboard-degraded.png", full_page=True)

            page.click("nav.tabs a[href='/events']")
            items = page.locator(".events li")
            expect(items).to_have_count(4)  # node-b up; b7c1 down ×4 and up ×4; the route change ×2
            expect(page.locator(".events li[data-kind=FeatureVector]")).to_have_count(0)
            down = page.locator(".events li[data-kind=NeighbourDown]")
            expect(down).to_have_count(1)
            expect(down.locator(".repeat")).to_contain_text("×4 since")
            expect(down.locator(".kind")).to_have_text("neighbour down")
            expect(page.locator(".events li[data-kind=NeighbourUp] .repeat")).to_contain_text("×4")
            expect(page.locator(".events li[data-kind=route_change] .repeat")).to_contain_text("×2")
            page.screenshot(path=artifacts_dir / "events-grouped.png", full_page=True)

            page.click("nav.tabs a[href='/settings']")
            hello = page.locator(".setting[data-key='routing.hello_interval_s']")
            expect(hello.locator(".name")).to_contain_text("Hello interval")
            expect(hello.locator(".unit")).to_have_text(" (s)")
            expect(hello.locator(".help")).to_contain_text("valid: 0.1 – 60 s")
            expect(hello.locator(".help")).to_contain_text("Time between hellos")
            port = page.locator(".setting[data-key='web.port']")
            expect(port.locator("input[type=number]")).to_have_count(1)
            expect(port.locator(".help")).to_contain_text("valid: 0 – 65535")
            # read-only keys: shown as text, never as a field
            expect(page.locator("#cfg-web-enabled")).to_have_count(1)
            expect(page.locator("input#cfg-web-enabled")).to_have_count(0)
            expect(page.locator("#cfg-read-only #cfg-trust")).to_have_count(1)
            expect(page.locator("#cfg-trust input")).to_have_count(0)
            page.click("#cfg-read-only summary")
            page.click("details.advanced summary >> nth=0")
            # no raw key name is a label
            names = page.locator(".setting .name").all_text_contents()
            assert names and not any("_" in x for x in names), names
            page.screenshot(path=artifacts_dir / "settings-described.png", full_page=True)
        finally:
            browser.close()
