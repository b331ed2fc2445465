"""The Raspberry Pi 4 board, built for real and checked under emulation (no Pi is attached here).

Built: Debian's arm64 kernel and the Pi's boot files as Debian packages them (raspi-firmware's
start4.elf/fixup4.dat, u-boot-rpi's U-Boot, the kernel package's bcm2711 DTBs) on the FAT first
partition with the config.txt the Pi firmware reads, and GRUB's EFI image for U-Boot's UEFI loader.
Emulated: the root slot's own kernel and initramfs (checked against the manifest's sha256) booted in
QEMU's virt machine with the image as a virtio disk, up to x0node ready (the Pi's GPU firmware and its
DTB cannot run in QEMU; that part is untested until a Pi boots it).

Measured (2 cores, TCG, load average about 2): the console prompt 60 s and x0node ready 103 s after QEMU
started; the file's two tests 106 s with the image built (times in test-artifacts/rpi4-boot.json).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from image.assemble import partition_offset
from image.qemu import slot_boot_files
from tests.conftest import ARTIFACTS
from tests.image.conftest import BOOT_TIMEOUT_S, boot_lab_vm, built, daemon_present, manifest

BOARD = "rpi4"
PROMPT = re.compile(r"root@x0[^\n]*# ")
FDT_MAGIC = bytes.fromhex("d00dfeed")


def _esp_file(ctx, path: str) -> bytes:
    offset, _ = partition_offset(ctx.board, "esp")
    return subprocess.run(["mtype", "-i", f"{ctx.disk}@@{offset}", f"::{path}"], capture_output=True,
                          check=True).stdout


def test_boot_partition_as_the_pi_firmware_expects() -> None:
    ctx = built(BOARD)
    m = manifest(ctx)
    assert m["kernel_version"].endswith("-arm64"), m["kernel_version"]
    offset, _ = partition_offset(ctx.board, "esp")
    listing = subprocess.run(["mdir", "-b", "-i", f"{ctx.disk}@@{offset}", "::/"], capture_output=True, text=True,
                             check=True).stdout
    for name in ("start4.elf", "fixup4.dat", "u-boot.bin", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-cm4-io.dtb",
                 "config.txt", "EFI"):
        assert f"::/{name}" in listing, listing
    config = _esp_file(ctx, "/config.txt").decode()
    assert "arm_64bit=1" in config and "kernel=u-boot.bin" in config, config
    dtb = _esp_file(ctx, "/bcm2711-rpi-4-b.dtb")
    assert dtb[:4] == FDT_MAGIC and int.from_bytes(dtb[4:8], "big") == len(dtb)
    assert b"raspberrypi,4-model-b" in dtb and b"brcm,bcm2711" in dtb
    assert b"U-Boot" in _esp_file(ctx, "/u-boot.bin")
    assert len(_esp_file(ctx, "/start4.elf")) > 1_000_000  # the GPU firmware itself, not a stub
    efi = _esp_file(ctx, "/EFI/BOOT/BOOTAA64.EFI")
    assert efi[:2] == b"MZ"
    assert ctx.disk.stat().st_size <= ctx.board.disk_limit_mib * 1024 * 1024


def test_kernel_and_root_slot_boot_under_emulation(vms) -> None:
    if not daemon_present():
        pytest.skip("the daemon (`x0node run`) is not in this tree")
    ctx = built(BOARD)
    kernel, initrd = slot_boot_files(ctx.board)
    vm, ident = vms.make(BOARD, "rpi4", kernel=kernel, initrd=initrd)
    vm.start()
    vm.wait_for(PROMPT, BOOT_TIMEOUT_S[BOARD])
    prompt_s = round(time.monotonic() - vm.started_at, 1)
    node_id, mesh_addr, ready_s = boot_lab_vm(vm, BOOT_TIMEOUT_S[BOARD], start=False)
    assert (node_id, mesh_addr) == (ident.node_id, ident.mesh_addr)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "rpi4-boot.json").write_text(json.dumps({"prompt_s": prompt_s, "ready_s": round(ready_s, 1)}) + "\n")
    rc, out = vm.shell("uname -rm; grep -l PARTNAME=rootA /sys/class/block/*/uevent; findmnt -no FSTYPE,OPTIONS /")
    assert rc == 0 and "aarch64" in out and "-arm64" in out and "/vda2/" in out and "squashfs" in out, out
