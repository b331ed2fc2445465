"""Launching Debian's chromium headless through Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def chromium_path() -> str:
    path = shutil.which("chromium") or CHROMIUM
    if not os.path.exists(path):
        raise RuntimeError(f"{CHROMIUM} missing: `make deps` installs Debian's chromium")
    return path


def launch(playwright):  # type: ignore[no-untyped-def]
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
