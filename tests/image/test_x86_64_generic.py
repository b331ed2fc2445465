"""The generic x86_64 board (board-configs/x86_64-generic.toml): one image that boots on legacy BIOS
(SeaBIOS, GRUB i386-pc from the BIOS boot partition) and on UEFI (OVMF, GRUB on the ESP), from AHCI,
NVMe and USB storage, and meshes over e1000e NICs.

Matrix (TCG is slow, so not every cell is a full boot): the mesh test boots SeaBIOS + AHCI and OVMF +
NVMe and pings over e1000e; test_wifi_mesh.py boots OVMF + AHCI; the short boots below cover the
remaining cells (SeaBIOS + NVMe, SeaBIOS + USB, OVMF + USB) up to x0node ready and a look at which
firmware and which disk the root slot came from.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from image.assemble import BIOS_BOOT_FIRST_LBA, BIOS_BOOT_LAST_LBA, GPT_TYPE_BIOS_BOOT
from image.qemu import MeshLink, free_port
from tests.image.conftest import BOOT_TIMEOUT_S, boot_lab_vm, built, daemon_present, manifest
from tests.image.test_mesh import EMULATION_CONFIG  # emulated guests: a 2 s dead interval

# Not in `make test` yet (docs/image.md, "Boards"): the generic board's boot matrix (about 20 min of TCG boots) has not yet passed as a whole.
pytestmark = pytest.mark.skipif(os.environ.get("X0_IMAGE_BOARDS") != "1",
                                reason="the generic board's boot matrix (about 20 min of TCG boots) has not yet passed as a whole; run with X0_IMAGE_BOARDS=1")

BOARD = "x86_64-generic"
OVMF = "/usr/share/ovmf/OVMF.fd"
PROMPT = re.compile(r"root@x0[^\n]*# ")
MIB = 1024 * 1024
CONVERGE_S = 120
# firmware, disk, the sysfs path fragment of the disk holding rootA
SHORT_BOOTS = [("seabios", "nvme", "/nvme0n1p2/"), ("seabios", "usb", "/usb"), (OVMF, "usb", "/usb")]


def test_one_image_for_bios_and_uefi() -> None:
    ctx = built(BOARD)
    m = manifest(ctx)
    assert m["board"] == BOARD and m["kernel_version"].endswith("-amd64"), m["kernel_version"]
    assert ctx.disk.stat().st_size <= ctx.board.disk_limit_mib * MIB
    assert ctx.squashfs.stat().st_size <= ctx.board.squashfs_limit_mib * MIB
    table = json.loads(subprocess.run(["sfdisk", "--json", str(ctx.disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    names = [p.get("name") for p in table["partitions"]]
    assert names == ["esp", "rootA", "rootB", "data", "bios"], names
    bios = table["partitions"][4]
    assert bios["type"] == GPT_TYPE_BIOS_BOOT and bios["start"] == BIOS_BOOT_FIRST_LBA
    assert bios["start"] + bios["size"] - 1 == BIOS_BOOT_LAST_LBA
    with open(ctx.disk, "rb") as f:
        mbr = f.read(512)
        f.seek(BIOS_BOOT_FIRST_LBA * 512)
        core = f.read(512)
    assert mbr[510:] == b"\x55\xaa" and mbr[0x1C2] == 0xEE  # protective MBR kept
    assert int.from_bytes(mbr[0x5C:0x64], "little") == BIOS_BOOT_FIRST_LBA  # boot.img -> core.img
    assert int.from_bytes(core[500:508], "little") == BIOS_BOOT_FIRST_LBA + 1  # core.img's block list
    # the generic kernel carries the drivers real boxes need
    mods = {p.name.split(".ko")[0] for p in (ctx.rootfs / "usr/lib/modules" / m["kernel_version"]).rglob("*.ko*")}
    for needed in ("ahci", "nvme", "usb_storage", "uas", "e1000e", "igb", "r8169", "ath9k", "mac80211_hwsim"):
        assert needed in mods, needed


def _ping_cmd(addr: str) -> str:
    return (f"for i in $(seq 1 {CONVERGE_S}); do ping -6 -c 1 -W 1 {addr} >/dev/null 2>&1 && break; sleep 1; done; "
            f"ping -6 -c 3 -W 2 {addr}")


def _boot_facts(vm) -> str:
    rc, out = vm.shell("test -d /sys/firmware/efi && echo FW=UEFI || echo FW=BIOS; "
                       "readlink -f /sys/class/block/$(grep -l PARTNAME=rootA /sys/class/block/*/uevent "
                       "| head -n1 | cut -d/ -f5); basename $(readlink -f /sys/class/net/eth1/device/driver)")
    assert rc == 0, out
    return out


def test_bios_and_uefi_vms_mesh_over_e1000e(vms) -> None:
    if not daemon_present():
        pytest.skip("the daemon (`x0node run`) is not in this tree")
    port = free_port()
    vm1, id1 = vms.make(BOARD, "gen-bios-ahci", firmware="seabios", disk_interface="ahci", extra=EMULATION_CONFIG,
                        mesh_links=[MeshLink(port, True, "52:54:00:00:65:01")])
    vm2, id2 = vms.make(BOARD, "gen-uefi-nvme", firmware=OVMF, disk_interface="nvme", extra=EMULATION_CONFIG,
                        mesh_links=[MeshLink(port, False, "52:54:00:00:65:02")])
    vm1.start()
    vm2.start()
    for vm, ident in ((vm1, id1), (vm2, id2)):
        node_id, mesh_addr, _ = boot_lab_vm(vm, BOOT_TIMEOUT_S[BOARD] * 2, start=False)
        assert (node_id, mesh_addr) == (ident.node_id, ident.mesh_addr)
    facts1, facts2 = _boot_facts(vm1), _boot_facts(vm2)
    assert "FW=BIOS" in facts1 and "/ata" in facts1 and "e1000e" in facts1, facts1
    assert "FW=UEFI" in facts2 and "/nvme0n1p2" in facts2 and "e1000e" in facts2, facts2
    rc, out = vm1.shell(_ping_cmd(id2.mesh_addr), timeout_s=CONVERGE_S + 30)
    assert rc == 0 and " 0% packet loss" in out, out
    rc, out = vm2.shell(_ping_cmd(id1.mesh_addr), timeout_s=CONVERGE_S + 30)
    assert rc == 0 and " 0% packet loss" in out, out


@pytest.mark.parametrize(("firmware", "disk", "where"), SHORT_BOOTS,
                         ids=[f"{'bios' if f == 'seabios' else 'uefi'}-{d}" for f, d, _ in SHORT_BOOTS])
def test_boots_to_ready(vms, firmware: str, disk: str, where: str) -> None:
    if not daemon_present():
        pytest.skip("the daemon (`x0node run`) is not in this tree")
    vm, ident = vms.make(BOARD, f"gen-{disk}", firmware=firmware, disk_interface=disk)  # eth0 only
    node_id, _, _ = boot_lab_vm(vm, BOOT_TIMEOUT_S[BOARD])
    assert node_id == ident.node_id
    facts = _boot_facts(vm)
    assert ("FW=BIOS" if firmware == "seabios" else "FW=UEFI") in facts, facts
    assert where in facts, facts
