"""image.initramfs: module resolution order (deps, soft deps, aliases, builtins) and the cpio writer."""

from __future__ import annotations

import gzip
import pathlib

from image.initramfs import Cpio, resolve_modules


def _moddir(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\n"
        "kernel/fs/mbcache.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
    )
    (tmp_path / "modules.builtin").write_text("kernel/fs/squashfs/squashfs.ko\n")
    (tmp_path / "modules.softdep").write_text("softdep ext4 pre: crc32c\n")
    (tmp_path / "modules.alias").write_text("alias crc32c crc32c_generic\nalias pci:v*d* virtio_blk\n")
    return tmp_path


def test_dependencies_come_first_and_once(tmp_path: pathlib.Path) -> None:
    order, missing = resolve_modules(_moddir(tmp_path), ["ext4", "virtio-blk", "ext4", "squashfs", "nope"])
    names = [p.rsplit("/", 1)[-1] for p in order]
    assert names == ["crc32c_generic.ko", "jbd2.ko", "mbcache.ko", "ext4.ko", "virtio_ring.ko", "virtio_blk.ko"]
    assert missing == ["nope"]  # squashfs is builtin: neither loaded nor missing


def test_cpio_newc_layout() -> None:
    c = Cpio()
    c.dir("bin")
    c.chardev("dev/console", 5, 1)
    c.file("init", b"#!/bin/sh\n", 0o755)
    blob = c.finish()
    assert blob.startswith(b"070701")
    assert len(blob) % 4 == 0
    assert b"TRAILER!!!\0" in blob
    # the init entry: mode 0100755, size 10, name "init"
    i = blob.index(b"init\0")
    header = blob[i - 110:i]
    assert header[:6] == b"070701"
    assert int(header[14:22], 16) == 0o100755
    assert int(header[54:62], 16) == 10
    assert gzip.decompress(gzip.compress(blob)) == blob
