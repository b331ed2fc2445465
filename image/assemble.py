"""Step `assemble`: the GPT disk image: ESP (GRUB, its environment), rootA, rootB, data.

Layout (sizes from the board, MiB-aligned, in this order): 1 `esp` (FAT, EFI system partition) holding
/EFI/BOOT/<BOOT*.EFI>, grub.cfg and grubenv — outside both slots, as RAUC's GRUB backend wants; 2 `rootA`
and 3 `rootB`, each the same squashfs with /boot/vmlinuz and /boot/initrd.img inside; 4 `data` (ext4,
label and partition name `data`). Partition names rootA/rootB/data are what the initramfs and RAUC
look up. Everything is made in plain files (mkfs.vfat + mtools, mkfs.ext4 -d, sfdisk on the image):
no loop devices, no mounts. Zero blocks are skipped when partitions are copied in, so the image stays
sparse.

Legacy BIOS (boards with bootloader `grub-efi-bios`): GRUB's i386-pc core image sits in a BIOS boot
partition (GPT entry 5, `bios`, sectors 34-2047: the gap before the first MiB-aligned partition, so the
four partitions above keep their numbers, places and sizes) and GRUB's boot.img in the protective MBR's
code area; both GRUBs read the same grub.cfg and grubenv from the ESP. The MBR's partition table and
the core image's block list are written the way grub-bios-setup writes them, without a device.

GRUB picks the first slot in ORDER whose <slot>_OK is 1 and whose <slot>_TRY is below BOOT_TRIES_MAX
(RAUC's variables, kept in the ESP's grubenv), raises that TRY and boots it; x0node marks the slot good
(TRY back to 0) after its health gate. See grub_cfg and docs/ota.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

from image.board import Board

MIB = 1024 * 1024
GPT_TYPE_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_TYPE_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GRUB_MODULES = ("part_gpt", "fat", "ext2", "squash4", "xzio", "gzio", "normal", "configfile", "linux",
                "loadenv", "test", "regexp", "echo", "sleep", "reboot", "serial", "terminal", "efi_gop")
DATA_DIRS = ("etc", "x0node")
# Legacy BIOS boot (GRUB i386-pc). Offsets from GRUB's include/grub/i386/pc/boot.h.
GPT_TYPE_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
BIOS_BOOT_FIRST_LBA = 34       # right after the primary GPT (header + 128 entries of 128 bytes)
BIOS_BOOT_LAST_LBA = 2047      # right before the first partition at 1 MiB
BIOS_GRUB_MODULES = ("biosdisk", *GRUB_MODULES)
BOOT_IMG_CODE_END = 0x1B8      # boot.img's code and data; the disk signature and partition table follow
BOOT_KERNEL_SECTOR = 0x5C      # u64: LBA of core.img's first sector
BOOT_DRIVE_CHECK = 0x66        # a 2-byte jump, replaced by two NOPs for hard disks (as grub-bios-setup does)
BLOCKLIST_OFFSET = 512 - 12    # diskboot.img: {u64 start LBA, u16 sectors, u16 segment} at the sector's end
CORE_LOAD_SEGMENT = 0x820      # GRUB_BOOT_I386_PC_KERNEL_SEG (0x800) + one sector
SECTOR = 512


BOOT_TRIES_MAX = 3
"""Boots of an unconfirmed slot before GRUB moves on (x0node.ota.boot.BOOT_TRIES_MAX says the same)."""


def grub_cfg(board: Board) -> str:
    """A/B boot with a boot counter, board-generic (only the serial console lines and the kernel's
    console and extra arguments come from the board)."""
    extra = board.kernel_cmdline
    serial = ""
    if board.grub_target == "x86_64-efi":
        serial = "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
    # GRUB has no arithmetic: the counter steps 0 -> 1 -> 2 -> 3 by comparison.
    steps = "\n".join(f'      elif [ "$try" = {i} ]; then slot=$s; next={i + 1}' for i in range(1, BOOT_TRIES_MAX))
    return f"""# x0tta6bl4 A/B boot. Variables in grubenv (RAUC's GRUB backend): ORDER, A_OK, A_TRY, B_OK, B_TRY.
# A slot boots while OK=1 and TRY < {BOOT_TRIES_MAX}; TRY is raised before each boot and reset to 0 by
# `rauc status mark-good` (x0node, after its health gate). If no slot qualifies, the counters are reset
# rather than boot nothing. FAILSAFE=1 (one-shot) boots with x0.failsafe=1: user config is ignored.
{serial}set ORDER="A B"
set A_OK=1
set A_TRY=0
set B_OK=1
set B_TRY=0
set FAILSAFE=0
load_env --file $prefix/grubenv ORDER A_OK A_TRY B_OK B_TRY FAILSAFE
regexp --set=1:bootdisk '^\\(?([^,)]+)' "$root"
set slot=""
set next=1
for s in $ORDER; do
  if [ -z "$slot" ]; then
    if [ "$s" = A ]; then ok=$A_OK; try=$A_TRY; else ok=$B_OK; try=$B_TRY; fi
    if [ "$ok" = 1 ]; then
      if [ "$try" = 0 ]; then slot=$s; next=1
{steps}
      fi
    fi
  fi
done
if [ -z "$slot" ]; then
  for s in $ORDER; do
    if [ -z "$slot" ]; then
      if [ "$s" = A ]; then ok=$A_OK; else ok=$B_OK; fi
      if [ "$ok" = 1 ]; then slot=$s; fi
    fi
  done
  if [ -z "$slot" ]; then slot=A; fi
  set A_TRY=0
  set B_TRY=0
  set next=1
  echo "x0tta6bl4: no slot left to try; boot counters reset"
fi
if [ "$slot" = B ]; then B_TRY=$next; other=A; else A_TRY=$next; other=B; fi
save_env --file $prefix/grubenv A_TRY B_TRY
set failsafe=""
if [ "$FAILSAFE" = 1 ]; then
  set failsafe="x0.failsafe=1"
  set FAILSAFE=0
  save_env --file $prefix/grubenv FAILSAFE
fi
# A slot whose kernel or initramfs cannot be read (a damaged write) falls through to the other slot.
for s in $slot $other; do
  if [ "$s" = B ]; then part=gpt3; else part=gpt2; fi
  echo "x0tta6bl4: booting slot $s try $next from ($bootdisk,$part) $failsafe"
  if linux ($bootdisk,$part)/boot/vmlinuz root=PARTLABEL=root$s rauc.slot=$s ro console={board.console} panic=10 {extra} $failsafe; then
    if initrd ($bootdisk,$part)/boot/initrd.img; then
      boot
    fi
  fi
  echo "x0tta6bl4: slot $s did not load"
done
sleep 10
reboot
"""


def _run(cmd: list[str], log: pathlib.Path, **kw) -> None:
    with open(log, "ab") as logf:
        logf.write(f"$ {' '.join(cmd)}\n".encode())
        logf.flush()
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True, **kw)


def make_esp(board: Board, rootfs: pathlib.Path, grub_dir: pathlib.Path, work: pathlib.Path,
             log: pathlib.Path) -> pathlib.Path:
    esp = work / "esp.img"
    esp.unlink(missing_ok=True)
    efi = work / board.efi_boot_file
    modules = [m for m in GRUB_MODULES if (grub_dir / f"{m}.mod").exists()]
    _run(["grub-mkimage", "-O", board.grub_target, "-d", str(grub_dir), "-o", str(efi), "-p", "/EFI/BOOT",
          *modules], log)
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg(board))
    env = work / "grubenv"
    env.unlink(missing_ok=True)
    _run(["grub-editenv", str(env), "create"], log)
    _run(["grub-editenv", str(env), "set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0", "FAILSAFE=0"], log)
    _run(["mkfs.vfat", "-C", "-n", "X0BOOT", str(esp), str(board.partitions.esp_mib * 1024)], log)
    mt = ["-i", str(esp)]
    _run(["mmd", *mt, "::/EFI", "::/EFI/BOOT"], log)
    _run(["mcopy", *mt, str(efi), f"::/EFI/BOOT/{board.efi_boot_file}"], log)
    _run(["mcopy", *mt, str(cfg), "::/EFI/BOOT/grub.cfg"], log)
    _run(["mcopy", *mt, str(env), "::/EFI/BOOT/grubenv"], log)
    for esp_path, src in board.esp_files:
        matches = sorted(rootfs.glob(src.lstrip("/")))  # a glob, e.g. over the kernel version
        if not matches:
            raise RuntimeError(f"esp_files.{esp_path}: nothing in the root matches {src}")
        _run(["mcopy", *mt, str(matches[-1]), f"::{esp_path}"], log)
    for esp_path, text in board.esp_text:
        tmp = work / "esp-text.tmp"
        tmp.write_text(text)
        _run(["mcopy", *mt, str(tmp), f"::{esp_path}"], log)
    return esp


def install_bios_grub(disk: pathlib.Path, grub_dir: pathlib.Path, work: pathlib.Path, log: pathlib.Path) -> dict:
    """GRUB for legacy BIOS: core.img into the BIOS boot partition, boot.img into the MBR code area."""
    core = work / "core.img"
    modules = [m for m in BIOS_GRUB_MODULES if (grub_dir / f"{m}.mod").exists()]
    # "(,gpt1)": partition 1 of the disk the BIOS booted from (GRUB fills in the boot drive).
    _run(["grub-mkimage", "-O", "i386-pc", "-d", str(grub_dir), "-o", str(core), "-p", "(,gpt1)/EFI/BOOT",
          *modules], log)
    blob = bytearray(core.read_bytes())
    room = (BIOS_BOOT_LAST_LBA - BIOS_BOOT_FIRST_LBA + 1) * SECTOR
    if len(blob) > room:
        raise RuntimeError(f"GRUB's BIOS core image is {len(blob)} bytes, more than the BIOS boot partition ({room})")
    sectors = -(-len(blob) // SECTOR)
    blob += bytes(sectors * SECTOR - len(blob))
    # One contiguous run: the rest of the core image right after its first sector.
    blob[BLOCKLIST_OFFSET:SECTOR] = (BIOS_BOOT_FIRST_LBA + 1).to_bytes(8, "little") + \
        (sectors - 1).to_bytes(2, "little") + CORE_LOAD_SEGMENT.to_bytes(2, "little")
    boot = bytearray((grub_dir / "boot.img").read_bytes())
    if len(boot) != SECTOR:
        raise RuntimeError(f"{grub_dir}/boot.img is {len(boot)} bytes, expected {SECTOR}")
    boot[BOOT_KERNEL_SECTOR:BOOT_KERNEL_SECTOR + 8] = BIOS_BOOT_FIRST_LBA.to_bytes(8, "little")
    boot[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    with open(disk, "r+b") as f:
        f.seek(BIOS_BOOT_FIRST_LBA * SECTOR)
        f.write(blob)
        f.seek(0)
        mbr = bytearray(f.read(SECTOR))
        if mbr[510:512] != b"\x55\xaa" or mbr[0x1C2] != 0xEE:
            raise RuntimeError("the disk has no protective MBR to put GRUB's boot code in")
        mbr[:BOOT_IMG_CODE_END] = boot[:BOOT_IMG_CODE_END]
        f.seek(0)
        f.write(mbr)
    return {"core_img_bytes": len(core.read_bytes()), "core_img_sectors": sectors}


def make_data(dest: pathlib.Path, size_mib: int, files: dict[str, bytes] | None, log: pathlib.Path) -> None:
    """An ext4 data partition image; `files` (path relative to /data -> content) are put in, mode 0600."""
    dest.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for d in DATA_DIRS:
            (root / d).mkdir()
        (root / "x0node").chmod(0o700)
        for rel, content in (files or {}).items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
            p.chmod(0o600)
        _run(["mkfs.ext4", "-q", "-F", "-L", "data", "-m", "0", "-E", "root_owner=0:0", "-d", str(root),
              str(dest), f"{size_mib}M"], log)


def layout(board: Board) -> list[tuple[str, int, int, str]]:
    """(name, start MiB, size MiB, GPT type) of the four partitions."""
    p = board.partitions
    start = 1
    out = []
    for name, size, typ in (("esp", p.esp_mib, GPT_TYPE_ESP), ("rootA", p.root_slot_mib, GPT_TYPE_LINUX),
                            ("rootB", p.root_slot_mib, GPT_TYPE_LINUX), ("data", p.data_mib, GPT_TYPE_LINUX)):
        out.append((name, start, size, typ))
        start += size
    return out


def write_at(disk: pathlib.Path, offset: int, src: pathlib.Path, limit: int, sparse: bool = True) -> None:
    """Copy src into disk at offset; with `sparse`, all-zero blocks are skipped (the image stays sparse),
    which is only right when the target range is known to be zero (a fresh image)."""
    size = src.stat().st_size
    if size > limit:
        raise RuntimeError(f"{src.name} is {size} bytes, more than its partition ({limit})")
    block = MIB
    with open(src, "rb") as fi, open(disk, "r+b") as fo:
        pos = 0
        while chunk := fi.read(block):
            if not sparse or chunk.count(0) != len(chunk):
                fo.seek(offset + pos)
                fo.write(chunk)
            pos += len(chunk)


def run(board: Board, rootfs: pathlib.Path, squashfs: pathlib.Path, grub_dir: pathlib.Path,
        work: pathlib.Path, dest: pathlib.Path, log: pathlib.Path,
        bios_grub_dir: pathlib.Path | None = None) -> dict:
    esp = make_esp(board, rootfs, grub_dir, work, log)
    data = work / "data.img"
    make_data(data, board.partitions.data_mib, None, log)
    parts = layout(board)
    total_mib = parts[-1][1] + parts[-1][2] + 1
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(total_mib * MIB)
    first_lba = BIOS_BOOT_FIRST_LBA if board.bios_boot else 2048
    script = f"label: gpt\nunit: sectors\nfirst-lba: {first_lba}\n"
    for name, start, size, typ in parts:
        script += f"start={start * 2048}, size={size * 2048}, type={typ}, name={name}\n"
    if board.bios_boot:
        script += (f"start={BIOS_BOOT_FIRST_LBA}, size={BIOS_BOOT_LAST_LBA - BIOS_BOOT_FIRST_LBA + 1}, "
                   f"type={GPT_TYPE_BIOS_BOOT}, name=bios\n")
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", str(tmp)], log, input=script.encode())
    sources = {"esp": esp, "rootA": squashfs, "rootB": squashfs, "data": data}
    for name, start, size, _typ in parts:
        write_at(tmp, start * MIB, sources[name], size * MIB)
    bios = {}
    if board.bios_boot:
        if bios_grub_dir is None:
            raise RuntimeError("a grub-efi-bios board needs GRUB's i386-pc directory")
        bios = install_bios_grub(tmp, bios_grub_dir, work, log)
    os.replace(tmp, dest)
    shutil.copyfile(esp, work / "esp.last.img")
    return {"partitions": [{"name": n, "start_mib": s, "size_mib": z} for n, s, z, _ in parts],
            "disk_bytes": dest.stat().st_size, **({"bios_boot": bios} if bios else {})}


def disk_partition(image: pathlib.Path, name: str) -> tuple[int, int]:
    """(byte offset, byte size) of a named partition as the disk image's own GPT has it (a development
    build's slots are larger than its board's, image.pipeline.board_for)."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for part in table["partitions"]:
        if part.get("name") == name:
            return int(part["start"]) * sector, int(part["size"]) * sector
    raise KeyError(name)


def partition_offset(board: Board, name: str) -> tuple[int, int]:
    """(byte offset, byte size) of a named partition in the board's disk image."""
    for n, start, size, _typ in layout(board):
        if n == name:
            return start * MIB, size * MIB
    raise KeyError(name)
