"""The Firmware page's update controls on real daemons in a 2-node namespace mesh, in a real browser.

Node 1 serves the UI (Chromium inside its namespace, as in test_web_mesh.py); both nodes run the state
and OTA services without A/B slots (installer = "none": the QEMU tests install for real). Checks: a
signed RAUC bundle uploaded through the page with its progress bar reaching 100 % and verified; a
tampered upload refused with the reason; a rollout started from the page reaching node 2 (its row
shows the download reaching 100 %), then halted mesh-wide because node 2 cannot install (the failure
threshold); Install and Roll back answer with the node's reason. Screenshots in test-artifacts/.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.integration.ota_mesh import make_bundle, ota_bed, wait_ota, write_release
from tests.ui.test_web_mesh import PASSWORD, WEB_PORT, _browser_in
from x0node.ota import keys

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("rauc") is None, reason="rauc is not installed (make deps)"),
]


@pytest.fixture
def mesh(tmp_path):
    kd = tmp_path / "keys"
    keys.init(kd)
    rel = write_release(tmp_path / "release.json", "1.0", 100)
    bundle, manifest, m = make_bundle(tmp_path, kd, 3 * 1024 * 1024 + 7, "1.1", 110)
    bed = ota_bed(tmp_path / "bed", "line:2", kd, rel, {"auto_fetch": False}, web=True,
                  routing={"hello_interval_s": 0.5})
    try:
        wait_ota(bed)
        yield bed, bundle, manifest, m
    finally:
        bed.down()


def test_upload_rollout_and_refusals(mesh, tmp_path, artifacts_dir):
    bed, bundle, manifest, m = mesh
    n1, n2 = bed.node(1), bed.node(2)
    url = f"http://[::1]:{WEB_PORT}"
    code = (pathlib.Path(n1.data_dir) / "web" / "setup-code").read_text().strip()
    tampered = tmp_path / "tampered.raucb"
    data = bytearray(bundle.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with sync_playwright() as pw:
        browser = _browser_in(pw, n1.ns, tmp_path)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url + "/")
            page.fill("#setup-code", code)
            page.fill("#setup-password", PASSWORD)
            page.fill("#setup-password2", PASSWORD)
            page.click("#setup-form button[type=submit]")
            expect(page).to_have_url(url + "/", timeout=30_000)
            page.goto(url + "/firmware")
            expect(page.locator("#ota-running")).to_contain_text("1.0")
            expect(page.locator("#ota-slots")).to_have_count(0)  # no A/B slots on a namespace node

            # a tampered bundle: refused with the reason, nothing verified
            page.set_input_files("#ota-bundle", str(tampered))
            page.set_input_files("#ota-manifest", str(manifest))
            page.click("#ota-upload button[type=submit]")
            expect(page.locator("#ota-message")).to_contain_text("hash_mismatch")
            expect(page.locator("#ota-phase")).not_to_have_attribute("data-phase", "verified")

            # the real bundle: progress bar to 100 %, verified
            page.set_input_files("#ota-bundle", str(bundle))
            page.click("#ota-upload button[type=submit]")
            expect(page.locator("#ota-message")).to_contain_text("verified and staged", timeout=60_000)
            expect(page.locator("#ota-upload-progress")).to_have_attribute("value", "100")
            expect(page.locator("#ota-phase")).to_have_attribute("data-phase", "verified")
            expect(page.locator("#ota-target")).to_contain_text(f"{len(m.chunks)}/{len(m.chunks)} chunks")
            page.screenshot(path=artifacts_dir / "ota-01-staged.png", full_page=True)

            # this node has no slots: Install and Roll back say why
            page.click("#ota-install")
            expect(page.locator("#ota-message")).to_contain_text("no A/B slots")
            page.click("#ota-rollback")
            expect(page.locator("#ota-message")).to_contain_text("no A/B slots")

            # a rollout: node 2 fetches the bundle from node 1 (its row reaches 100 %), cannot install,
            # so its wave fails and the rollout halts mesh-wide
            page.fill("#ota-threshold", "0.2")
            page.click("#ota-rollout-start")
            expect(page.locator("#ota-message")).to_contain_text("started")
            row = page.locator(f'#ota-nodes tr[data-node="{n2.node_id}"]')
            expect(row).to_have_count(1, timeout=60_000)
            expect(row.locator("progress")).to_have_attribute("value", "100", timeout=120_000)
            expect(row).to_have_attribute("data-phase", "refused", timeout=60_000)
            expect(page.locator("#ota-rollout")).to_have_attribute("data-state", "halted", timeout=60_000)
            expect(page.locator("#ota-rollout")).to_contain_text("failed")
            page.screenshot(path=artifacts_dir / "ota-02-rollout-halted.png", full_page=True)
        finally:
            browser.close()
