"""Step `overlay`: the repository's rootfs/ tree copied over the bootstrapped root, plus the few files
that depend on the board (mesh interface globs) or on the read-only design.

Rules: files from rootfs/ replace files of the same path; modes and symlinks are kept; ownership is
root. Units are enabled by writing the same symlinks `systemctl enable` would write, so nothing of the
target architecture runs here. /etc/machine-id is left empty: the initramfs binds the persistent one
from /data over it.
"""

from __future__ import annotations

import os
import pathlib
import shutil

from image.board import REPO_ROOT, Board

OVERLAY_DIR = REPO_ROOT / "rootfs"
# (unit, target whose .wants/ gets the symlink, where the unit file lives)
ENABLED_UNITS = (
    ("x0node.service", "multi-user.target", "/usr/lib/systemd/system"),
    ("x0-hostname.service", "x0node.service", "/usr/lib/systemd/system"),
    ("systemd-networkd.service", "multi-user.target", "/lib/systemd/system"),
    ("systemd-networkd.socket", "sockets.target", "/lib/systemd/system"),
)
HOSTNAME = "x0tta6bl4"


def copy_tree(src: pathlib.Path, dst: pathlib.Path) -> list[str]:
    copied = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = pathlib.Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames) + [d for d in dirnames if (pathlib.Path(dirpath) / d).is_symlink()]:
            s = pathlib.Path(dirpath) / name
            d = dst / rel / name
            if d.is_symlink() or d.is_file():
                d.unlink()
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d)
                os.chown(d, 0, 0)
            copied.append("/" + str(rel / name))
    return copied


def run(board: Board, rootfs: pathlib.Path) -> list[str]:
    copied = copy_tree(OVERLAY_DIR, rootfs)
    env = rootfs / "usr/share/x0tta6bl4/board.env"
    env.write_text(f'X0_BOARD="{board.name}"\nX0_MESH_GLOBS="{" ".join(board.mesh_interfaces)}"\n')
    for unit, target, unit_dir in ENABLED_UNITS:
        wants = rootfs / "etc/systemd/system" / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        if not (rootfs / unit_dir.lstrip("/") / unit).exists():
            raise RuntimeError(f"unit {unit} not found in {unit_dir} of the root")
        os.symlink(f"{unit_dir}/{unit}", link)
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/hostname").write_text(HOSTNAME + "\n")
    (rootfs / "data").mkdir(exist_ok=True)
    return copied
