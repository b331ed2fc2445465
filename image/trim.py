"""Step `trim`: remove from the staged root what a read-only router never uses.

Rules: only whole directories/files from the fixed lists below are removed (nothing by heuristics), so
the result is predictable; copyright files stay. The one edit inside files: shared objects of the Python
dependencies (/usr/lib/x0node) that a wheel ships with DWARF debug sections (uvloop, PyNaCl, aiohttp,
...) lose those sections (`llvm-strip --strip-debug`, any architecture); code and symbols stay, so they
load and behave the same, the root slot is smaller and quicker to compress. Debian's files are already
stripped. Kernel modules are kept by subtree (network, block and
storage, filesystems the image mounts, crypto and library helpers) and `depmod` is re-run natively.
GRUB's module directory is moved to the work directory first (the `assemble` step needs it), and the
dpkg package list is saved for the image manifest before /var (a tmpfs on the device) is emptied.
"""

from __future__ import annotations

import glob
import json
import pathlib
import shutil
import struct
import subprocess

from image.board import BIOS_GRUB_TARGET, Board
from image.lock import installed

REMOVE_GLOBS = (
    "usr/share/perl", "usr/share/perl5", "usr/lib/*-linux-gnu/perl", "usr/lib/*-linux-gnu/perl-base",
    "usr/lib/*-linux-gnu/perl5", "usr/bin/perl*", "usr/lib/*-linux-gnu/gconv", "usr/lib/grub", "usr/share/grub",
    "usr/lib/grub-*", "etc/grub.d", "usr/share/initramfs-tools", "usr/lib/klibc*", "etc/initramfs-tools",
    "usr/share/bug", "usr/share/lintian", "usr/share/zsh", "usr/share/bash-completion", "usr/share/info",
    "usr/lib/udev/hwdb.d", "usr/lib/udev/hwdb.bin", "etc/udev/hwdb.bin",
    "usr/lib/apt", "usr/bin/apt*", "usr/lib/*-linux-gnu/libapt-*", "etc/apt", "etc/cron.daily",
    "usr/lib/python3.11/test", "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/turtledemo", "usr/lib/python3.11/config-3.11-*",
    "usr/lib/x0node/*/tests", "usr/lib/x0node/*/*/tests", "usr/lib/x0node/*/*/*/tests",
    "usr/lib/x0node/numpy/_core/include", "usr/bin/grub-*", "usr/sbin/grub-*",
    # LiteRT: GPU (WebGPU) accelerator, NPU vendor compiler plugins and command-line tools are never used
    # on a router; the CPU interpreter (libpywrap_litert_common, libLiteRt) stays.
    "usr/lib/x0node/ai_edge_litert/libLiteRtWebGpuAccelerator.so", "usr/lib/x0node/ai_edge_litert/tools",
    "usr/lib/x0node/ai_edge_litert/vendors", "usr/lib/x0node/numpy/f2py", "usr/lib/x0node/*.dist-info/RECORD",
    # pip's record of where a wheel was installed from: a build-host path, and not the same in two builds
    "usr/lib/x0node/*.dist-info/direct_url.json",
    "boot/System.map-*", "boot/config-*", "vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old",
    # Timers for package management and scrubbing that have no job on a read-only appliance.
    "usr/lib/systemd/system/apt-daily*", "usr/lib/systemd/system/dpkg-db-backup.*",
    "usr/lib/systemd/system/e2scrub*", "etc/systemd/system/timers.target.wants/apt-daily*",
    "etc/systemd/system/timers.target.wants/dpkg-db-backup.timer", "etc/systemd/system/timers.target.wants/e2scrub*",
    "etc/systemd/system/multi-user.target.wants/e2scrub_reap.service",
    # Debian's D-Bus wpa_supplicant service (no D-Bus here); radios are run by x0-wifi-mesh@.service
    "etc/systemd/system/multi-user.target.wants/wpa_supplicant.service",
    "etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service",
    "usr/share/doc/*/changelog*", "usr/share/doc/*/NEWS*", "usr/share/doc/*/README*",
)
# Files a REMOVE_GLOBS pattern matches that stay: RAUC's GRUB backend writes grubenv with grub-editenv.
KEEP_FILES = ("usr/bin/grub-editenv",)
# Kernel module subtrees kept (relative to lib/modules/<version>/kernel).
KEEP_MODULE_DIRS = (
    # block: t10-pi (sd_mod and nvme_core need its symbols on kernels that build it as a module)
    "arch", "block", "crypto", "lib", "net", "fs/squashfs", "fs/ext4", "fs/jbd2", "fs/mbcache.ko", "fs/fat",
    "fs/nls", "drivers/net", "drivers/block", "drivers/virtio", "drivers/scsi", "drivers/ata", "drivers/nvme",
    "drivers/mmc", "drivers/usb", "drivers/char", "drivers/md", "drivers/crypto", "drivers/pci",
    "drivers/firmware", "drivers/ptp", "drivers/pps", "drivers/net/wireless", "drivers/regulator",
    "drivers/clk", "drivers/phy", "drivers/reset", "drivers/gpio", "drivers/i2c", "drivers/watchdog",
    "drivers/rtc", "drivers/dma", "drivers/mfd", "drivers/soc", "drivers/pinctrl", "drivers/tty",
    "drivers/hwmon", "drivers/thermal", "drivers/nvmem", "drivers/bus", "drivers/mailbox",
)
SQUASHED_VAR = "var"
STRIP_DEBUG_UNDER = "usr/lib/x0node"
ELF_MAGIC = b"\x7fELF"


def has_debug_sections(path: pathlib.Path) -> bool:
    """True for an ELF file with a `.debug_*` section (read from its section headers; little-endian ELF64
    and ELF32, which every board is)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != ELF_MAGIC or head[5] != 1:
                return False
            wide = head[4] == 2
            if wide:
                shoff, = struct.unpack_from("<Q", head, 0x28)
                shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
            else:
                shoff, = struct.unpack_from("<I", head, 0x20)
                shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x2E)
            if not shoff or not 0 < shnum <= 4096 or shstrndx >= shnum:
                return False
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            if len(table) < shentsize * shnum:
                return False

            def section(i: int) -> tuple[int, int, int]:  # (name offset, file offset, size)
                if wide:
                    name, = struct.unpack_from("<I", table, i * shentsize)
                    off, size = struct.unpack_from("<QQ", table, i * shentsize + 0x18)
                else:
                    name, = struct.unpack_from("<I", table, i * shentsize)
                    off, size = struct.unpack_from("<II", table, i * shentsize + 0x10)
                return name, off, size

            _, str_off, str_size = section(shstrndx)
            f.seek(str_off)
            names = f.read(min(str_size, 1 << 20))
            return any(names[section(i)[0]:].startswith(b".debug_") for i in range(shnum))
    except (OSError, struct.error):
        return False


def strip_debug(rootfs: pathlib.Path) -> dict:
    """Remove DWARF sections from the shared objects under STRIP_DEBUG_UNDER that have them."""
    files = sorted(p for p in (rootfs / STRIP_DEBUG_UNDER).rglob("*.so*")
                   if p.is_file() and not p.is_symlink() and has_debug_sections(p))
    before = sum(p.stat().st_size for p in files)
    if files:
        subprocess.run(["llvm-strip", "--strip-debug", *map(str, files)], check=True)
    after = sum(p.stat().st_size for p in files)
    return {"files": len(files), "bytes_saved": before - after}


def kernel_version(rootfs: pathlib.Path) -> str:
    versions = sorted(p.name for p in (rootfs / "usr/lib/modules").iterdir() if p.is_dir())
    if len(versions) != 1:
        raise RuntimeError(f"expected one kernel in the root, found {versions}")
    return versions[0]


def dpkg_packages(rootfs: pathlib.Path) -> dict[str, str]:
    """{package: version} of installed packages, from dpkg's status file."""
    return {k: v.get("Version", "") for k, v in installed((rootfs / "var/lib/dpkg/status").read_text()).items()}


def _trim_modules(rootfs: pathlib.Path, kver: str) -> None:
    kdir = rootfs / "usr/lib/modules" / kver / "kernel"
    for path in sorted(kdir.rglob("*"), reverse=True):
        rel = str(path.relative_to(kdir))
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
            continue
        if not any(rel == k or rel.startswith(k + "/") for k in KEEP_MODULE_DIRS):
            path.unlink()
    drivers = kdir / "drivers"
    for d in sorted(drivers.iterdir()) if drivers.exists() else []:
        if d.is_dir() and not any(d.rglob("*.ko*")):
            shutil.rmtree(d)
    subprocess.run(["depmod", "-b", str(rootfs), kver], check=True)


def run(board: Board, rootfs: pathlib.Path, work: pathlib.Path) -> dict:
    for target in (board.grub_target, *([BIOS_GRUB_TARGET] if board.bios_boot else [])):
        grub_src = rootfs / "usr/lib/grub" / target
        grub_dst = work / "grub" / target
        if grub_src.is_dir():
            shutil.rmtree(grub_dst, ignore_errors=True)
            grub_dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(grub_src, grub_dst, symlinks=True)
    packages = dpkg_packages(rootfs)
    (work / "packages.json").write_text(json.dumps(packages, indent=1) + "\n")
    kver = kernel_version(rootfs)
    for pattern in REMOVE_GLOBS:
        for hit in glob.glob(str(rootfs / pattern)):
            p = pathlib.Path(hit)
            if str(p.relative_to(rootfs)) in KEEP_FILES:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)  # a dangling symlink another pattern's hit already took
    _trim_modules(rootfs, kver)
    stripped = strip_debug(rootfs)
    var = rootfs / SQUASHED_VAR
    for child in var.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    boot = rootfs / "boot"
    kernel = boot / f"vmlinuz-{kver}"
    if kernel.exists():
        kernel.rename(boot / "vmlinuz")
    return {"kernel_version": kver, "debian_packages": packages, "stripped_debug": stripped}
