"""Step `initramfs`: a small initramfs made natively (no mkinitramfs, nothing emulated), put in the
root at /boot/initrd.img next to /boot/vmlinuz, so each slot carries its own kernel and initramfs.

Contents: the target's static busybox, the kernel modules the board lists plus their dependencies and
soft dependencies (resolved from the target's modules.dep/softdep/alias/builtin), and `/init` below.
/init finds the root slot and the data partition by GPT partition name (root=PARTLABEL=rootA|rootB,
data on the same disk), mounts the squashfs read-only and /data read-write, makes /data/etc/machine-id
on first boot and binds it over /etc/machine-id, then switches to systemd. Rules: it never formats or
repairs anything; when the root slot is missing it prints why and reboots after 10 s (x0.rescue on the
command line gives a shell instead).
"""

from __future__ import annotations

import gzip
import io
import lzma
import pathlib
import stat

from image.board import Board
from image.trim import kernel_version

ROOT_WAIT_S = 30
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "x0-initramfs: $*" > /dev/console; }
fail() {
    say "$*"
    if grep -qw x0.rescue /proc/cmdline; then exec sh; fi
    say "rebooting in 10 s"; sleep 10; reboot -f
}
root_label=rootA
for arg in $(cat /proc/cmdline); do
    case "$arg" in root=PARTLABEL=*) root_label=${arg#root=PARTLABEL=};; esac
done
while read -r mod; do insmod "/lib/modules/$mod" 2>/dev/null; done < /etc/modules.order
find_part() {  # $1 = partition name, $2 = optional disk to search; prints the block device name
    for ev in /sys/class/block/${2:-*}/*/uevent /sys/class/block/*/uevent; do
        [ -f "$ev" ] || continue
        if grep -qx "PARTNAME=$1" "$ev"; then sed -n 's/^DEVNAME=//p' "$ev"; return 0; fi
    done
    return 1
}
i=0
while ! root_dev=$(find_part "$root_label"); do
    i=$((i + 1)); [ $i -gt @ROOT_WAIT_TENTHS@ ] && fail "no partition named $root_label"
    sleep 0.1
done
mount -t squashfs -o ro "/dev/$root_dev" /newroot || fail "cannot mount /dev/$root_dev (squashfs)"
disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$root_dev")")")
data_dev=$(find_part data "$disk")
if [ -n "$data_dev" ] && mount -t ext4 -o noatime,nosuid,nodev "/dev/$data_dev" /newroot/data; then
    mkdir -p /newroot/data/etc
    if [ ! -s /newroot/data/etc/machine-id ]; then
        tr -d '-' < /proc/sys/kernel/random/uuid > /newroot/data/etc/machine-id
        say "first boot: new machine-id on /data"
    fi
    mount --bind /newroot/data/etc/machine-id /newroot/etc/machine-id
else
    say "WARNING: no usable data partition; /data is a tmpfs, nothing will persist"
    mount -t tmpfs -o mode=0755 tmpfs /newroot/data
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _mod_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            return _norm(base[: -len(suffix)])
    return _norm(base)


def resolve_modules(moddir: pathlib.Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(module paths relative to moddir in load order, names not found as module nor builtin)."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[_mod_name(path)] = (path, rest.split())
    builtin = {_mod_name(p) for p in (moddir / "modules.builtin").read_text().split()}
    soft: dict[str, list[str]] = {}
    softdep_file = moddir / "modules.softdep"
    if softdep_file.exists():
        for line in softdep_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "softdep":
                pre = []
                for word in parts[2:]:
                    if word == "post:":
                        break
                    if word != "pre:":
                        pre.append(_norm(word))
                soft[_norm(parts[1])] = pre
    aliases: dict[str, str] = {}
    alias_file = moddir / "modules.alias"
    if alias_file.exists():
        for line in alias_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "alias" and "*" not in parts[1]:
                aliases.setdefault(_norm(parts[1]), _norm(parts[2]))
    order: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()

    def visit(name: str, optional: bool) -> None:
        name = _norm(name)
        if name not in deps and name not in builtin:
            name = aliases.get(name, name)
        if name in seen:
            return
        seen.add(name)
        if name in builtin:
            return
        if name not in deps:
            if not optional:
                missing.append(name)
            return
        for pre in soft.get(name, []):
            visit(pre, True)
        path, dlist = deps[name]
        for dep in dlist:
            visit(_mod_name(dep), False)
        order.append(path)

    for name in wanted:
        visit(name, False)
    return order, missing


class Cpio:
    """Writer for the newc cpio format the kernel unpacks (no root needed to add device nodes)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        namez = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + namez)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build(board: Board, rootfs: pathlib.Path) -> tuple[bytes, dict]:
    kver = kernel_version(rootfs)
    moddir = rootfs / "usr/lib/modules" / kver
    order, missing = resolve_modules(moddir, list(board.initramfs_modules))
    cpio = Cpio()
    for d in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "newroot"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    busybox = rootfs / "usr/bin/busybox"
    if not busybox.exists():
        busybox = rootfs / "bin/busybox"
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    init = INIT_SCRIPT.replace("@ROOT_WAIT_TENTHS@", str(ROOT_WAIT_S * 10))
    cpio.file("init", init.encode(), 0o755)
    names = []
    for rel in order:
        data = (moddir / rel).read_bytes()
        name = _mod_name(rel) + ".ko"
        if rel.endswith(".xz"):
            data = lzma.decompress(data)
        cpio.file(f"lib/modules/{name}", data)
        names.append(name)
    cpio.file("etc/modules.order", ("\n".join(names) + "\n").encode())
    blob = gzip.compress(cpio.finish(), compresslevel=6, mtime=0)
    return blob, {"modules": names, "not_found": missing}


def run(board: Board, rootfs: pathlib.Path) -> dict:
    blob, info = build(board, rootfs)
    (rootfs / "boot/initrd.img").write_bytes(blob)
    info["bytes"] = len(blob)
    return info
