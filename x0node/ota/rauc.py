"""The slot manager on the device: RAUC's command line, the booted slot, reboot (adapter).

`rauc install` (through RAUC's D-Bus service, which runs as root outside x0node's sandbox) checks the
bundle's CMS signature and compatible string again, writes the root image into the slot that is not
booted and makes it primary in GRUB's environment (ORDER, <slot>_OK=1, <slot>_TRY=0).
`rauc status mark-good|mark-bad booted` and `mark-active other` drive the boot counter (image/assemble.py).

`Installer` is what the OTA service needs; `RaucInstaller` is the device's, `NoInstaller` is for nodes
without slots (namespace testbeds, containers): it distributes and verifies bundles and refuses to
install with a clear reason. Every call returns (ok, message); nothing raises into the service.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess  # rauc, systemctl, grub-editenv and migration scripts with a fixed argv, never a shell # nosec B404
from typing import Protocol

CMDLINE = pathlib.Path("/proc/cmdline")
INSTALL_TIMEOUT_S = 1800.0
STATUS_TIMEOUT_S = 60.0


def other(slot: str) -> str:
    return "B" if slot == "A" else "A"


class Installer(Protocol):
    def booted(self) -> str | None: ...

    def install(self, bundle: pathlib.Path) -> tuple[bool, str]: ...

    def mark(self, what: str, slot: str = "booted") -> tuple[bool, str]: ...

    def slots(self) -> dict[str, dict[str, str]]: ...

    def reboot(self) -> tuple[bool, str]: ...


def _run(argv: list[str], timeout: float) -> tuple[bool, str]:
    exe = shutil.which(argv[0])
    if exe is None:
        return False, f"{argv[0]} is not installed"
    try:
        r = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)  # fixed argv # nosec B603
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]} {argv[1]} did not finish within {timeout:.0f} s"
    out = (r.stdout + r.stderr).strip()
    return r.returncode == 0, out[-1500:]


class RaucInstaller:
    def booted(self) -> str | None:
        try:
            m = re.search(r"(?:^|\s)rauc\.slot=([AB])(?:\s|$)", CMDLINE.read_text())
        except OSError:
            return None
        return m.group(1) if m else None

    def install(self, bundle: pathlib.Path) -> tuple[bool, str]:
        return _run(["rauc", "install", str(bundle)], INSTALL_TIMEOUT_S)

    def mark(self, what: str, slot: str = "booted") -> tuple[bool, str]:
        if what not in ("mark-good", "mark-bad", "mark-active") or slot not in ("booted", "other"):
            return False, f"unknown RAUC status action {what} {slot}"
        return _run(["rauc", "status", what, slot], STATUS_TIMEOUT_S)

    def slots(self) -> dict[str, dict[str, str]]:
        ok, out = _run(["rauc", "status", "--detailed", "--output-format=json"], STATUS_TIMEOUT_S)
        if not ok:
            return {}
        try:
            doc = json.loads(out[out.index("{"):])
        except ValueError:
            return {}
        res: dict[str, dict[str, str]] = {}
        for item in doc.get("slots", []):
            for name, s in item.items():
                if not isinstance(s, dict) or s.get("class") != "rootfs":
                    continue
                st = s.get("slot_status") or {}
                bundle = st.get("bundle") or {}
                res[str(s.get("bootname") or name)] = {
                    "device": str(s.get("device", "")), "state": str(s.get("state", "")),
                    "boot_status": str(s.get("boot_status", "")), "version": str(bundle.get("version") or ""),
                    "installed": str((st.get("installed") or {}).get("timestamp") or "")}
        return res

    def reboot(self) -> tuple[bool, str]:
        return _run(["systemctl", "reboot"], 60.0)


class NoInstaller:
    """A node without A/B slots: it fetches, verifies and serves bundles but installs nothing."""

    reason = "this node has no A/B slots (installer = \"none\"): bundles are fetched, verified and served only"

    def booted(self) -> str | None:
        return None

    def install(self, bundle: pathlib.Path) -> tuple[bool, str]:
        return False, self.reason

    def mark(self, what: str, slot: str = "booted") -> tuple[bool, str]:
        return False, self.reason

    def slots(self) -> dict[str, dict[str, str]]:
        return {}

    def reboot(self) -> tuple[bool, str]:
        return False, self.reason
