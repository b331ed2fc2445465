"""arm64 image (QEMU virt, AAVMF + GRUB, arm64 squashfs slot) built and booted under TCG the same way as
x86_64: read-only root, persistent data with the provisioned node key, and the daemon's ready line.
The build is the full pipeline; its bootstrap stage (the slow, emulated part) is cached by input key
under X0_IMAGE_CACHE (~/.cache/x0tta6bl4/image); on a miss it is rebuilt (about 2-4 minutes here)."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.image.conftest import BOOT_TIMEOUT_S, built, daemon_present, manifest

BOARD = "arm64-virt"
PROMPT = re.compile(r"root@x0[^\n]*# ")


def test_arm64_build_and_boot(vms) -> None:
    ctx = built(BOARD)
    m = manifest(ctx)
    assert m["architecture"] == "arm64"
    assert any(p.endswith(":arm64") for p in m["debian_packages"])
    vm, ident = vms.make(BOARD, "arm64")
    vm.start()
    vm.wait_for(PROMPT, BOOT_TIMEOUT_S[BOARD])
    rc, out = vm.shell("uname -m; findmnt -n -o FSTYPE,OPTIONS /; touch /usr/x 2>&1; "
                       "sha256sum /data/x0node/node.key | cut -c1-64", timeout_s=120)
    lines = out.split("\n")
    assert lines[0].strip() == "aarch64", out
    assert lines[1].startswith("squashfs") and ",ro" in "," + lines[1].split()[1], out
    assert "Read-only" in out
    assert lines[-1].strip() == hashlib.sha256(ident.key).hexdigest()
    if not daemon_present():
        pytest.skip("booted; the daemon (`x0node run`) is not in this tree, so no ready line")
    node_id, _mesh, _secs = vm.wait_ready(BOOT_TIMEOUT_S[BOARD])
    assert node_id == ident.node_id
