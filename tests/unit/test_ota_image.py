"""The image side of updates: GRUB's boot counter script, RAUC's system.conf, growing /data on a
larger disk at provisioning."""

from __future__ import annotations

import pathlib
import subprocess

from image import assemble, provision
from image.board import load_board
from image.bundle import SYSTEM_CONF_IN


def test_grub_counts_tries_and_never_boots_nothing():
    cfg = assemble.grub_cfg(load_board("x86_64"))
    assert "load_env --file $prefix/grubenv ORDER A_OK A_TRY B_OK B_TRY FAILSAFE" in cfg
    assert "save_env --file $prefix/grubenv A_TRY B_TRY" in cfg
    for i in range(assemble.BOOT_TRIES_MAX):
        assert f'[ "$try" = {i} ]; then slot=$s; next={i + 1}' in cfg
    assert f'"$try" = {assemble.BOOT_TRIES_MAX} ]' not in cfg
    assert "boot counters reset" in cfg and "rauc.slot=$s " in cfg and "for s in $slot $other" in cfg
    # the same script for every GRUB board; only console lines differ
    arm = assemble.grub_cfg(load_board("arm64-virt"))
    assert arm.split("set ORDER")[1].replace("ttyAMA0", "ttyS0") == cfg.split("set ORDER")[1]


def test_boot_counter_matches_the_daemon():
    from x0node.ota.boot import BOOT_TRIES_MAX

    assert BOOT_TRIES_MAX == assemble.BOOT_TRIES_MAX


def test_rauc_system_conf():
    text = SYSTEM_CONF_IN.read_text()
    for line in ("bootloader=grub", "grubenv=/boot/efi/EFI/BOOT/grubenv", "compatible=@COMPATIBLE@",
                 "device=/dev/disk/by-partlabel/rootA", "bootname=B", "mountprefix=/run/rauc"):
        assert line in text


def test_provision_grows_data_on_a_larger_disk(tmp_path: pathlib.Path):
    board = load_board("x86_64")
    img = tmp_path / "disk.img"
    parts = assemble.layout(board)
    total = parts[-1][1] + parts[-1][2] + 1
    with open(img, "wb") as f:
        f.truncate(total * assemble.MIB)
    script = "label: gpt\nunit: sectors\nfirst-lba: 2048\n" + "".join(
        f"start={s * 2048}, size={z * 2048}, type={t}, name={n}\n" for n, s, z, t in parts)
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", str(img)], input=script.encode(), check=True,
                   capture_output=True)
    log = tmp_path / "log"
    off, size = provision.data_extent(board, img, log)
    assert (off, size) == assemble.partition_offset(board, "data")  # same size: untouched
    with open(img, "r+b") as f:
        f.truncate(512 * assemble.MIB)
    off2, size2 = provision.data_extent(board, img, log)
    assert off2 == off and size2 == 512 * assemble.MIB - off - assemble.MIB
    out = subprocess.run(["sfdisk", "--json", str(img)], capture_output=True, text=True, check=True).stdout
    import json

    p4 = json.loads(out)["partitiontable"]["partitions"][3]
    assert p4["name"] == "data" and p4["size"] * 512 >= size2
