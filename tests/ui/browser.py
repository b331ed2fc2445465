"""Launching Debian's chromium headless through Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

# The suite runs on 2 shared cores next to namespaces, QEMU and argon2id hashes: waits are generous
# (a wait ends as soon as its condition holds; timings are measured in bench/, never asserted here).
EXPECT_TIMEOUT_MS = 20_000


def patient() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def chromium_path() -> str:
    path = shutil.which("chromium") or CHROMIUM
    if not os.path.exists(path):
        raise RuntimeError(f"{CHROMIUM} missing: `make deps` installs Debian's chromium")
    return path


def launch(playwright):  # type: ignore[no-untyped-def]
    patient()
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
