"""Step `squash`: the staged root as one squashfs image (the content of a root slot).

Rules: xz compression, because GRUB 2.06 reads the kernel and initramfs from inside the slot and its
squash4 driver reads gzip/xz/lzo but not zstd; extended attributes are kept (file capabilities such as
ping's cap_net_raw); the staged root is not modified.

`gzip` (level 6) is the development build's choice (`make run`, `build --compression gzip`): on the
x86_64 root it took 12 s of CPU against xz's 80 s, for a slot 1.25x larger (115 against 92 MiB), and
the emulated guest reads it faster too. Such an image gets slots GZIP_SLOT_FACTOR times the board's
(image.pipeline.board_for); a router's image, and every update bundle, is xz.

Reproducible: `-reproducible` (entries in sorted order, output independent of the number of
processors), every file and directory time and the filesystem time set to SOURCE_DATE_EPOCH
(`-all-time`, `-mkfs-time`), so the same staged content always gives the same bytes
(https://reproducible-builds.org/docs/source-date-epoch/). SOURCE_DATE_EPOCH is taken out of
mksquashfs's environment: mksquashfs 4.5 refuses it beside those options, and they carry its value.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

SQUASHFS_BLOCK_BYTES = 256 * 1024
COMPRESSION = {"xz": ["-comp", "xz"], "gzip": ["-comp", "gzip", "-Xcompression-level", "6"]}
GZIP_SLOT_FACTOR = 1.5
"""Root slots (and the size limits) of a gzip image, relative to the board's xz ones (gzip measured 1.25x)."""


def run(rootfs: pathlib.Path, dest: pathlib.Path, log: pathlib.Path, source_date_epoch: int,
        compression: str = "xz") -> int:
    dest.unlink(missing_ok=True)
    cmd = ["mksquashfs", str(rootfs), str(dest), "-noappend", *COMPRESSION[compression], "-b", str(SQUASHFS_BLOCK_BYTES),
           "-reproducible", "-all-time", str(source_date_epoch), "-mkfs-time", str(source_date_epoch),
           "-processors", str(os.cpu_count() or 1), "-no-progress", "-quiet"]
    with open(log, "ab") as logf:
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=True, env=env)
    return dest.stat().st_size
