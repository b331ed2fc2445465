"""Step `bootstrap`: a Debian bookworm root for the board's architecture, as a tarball, with mmdebstrap.

Rules:
- Runs mmdebstrap in `unshare` mode (no loop mounts; as root it also works without subuids).
- Documentation, man pages, locales and the kernel's initramfs-tools hook are never unpacked
  (`path-exclude`): the initramfs is built natively by the `initramfs` step, which is what keeps foreign
  (arm64, qemu-user emulated) builds fast — mkinitramfs is by far the slowest maintainer script under
  emulation. Every other maintainer script runs as Debian ships it.
- The result is cached by a key over the architecture, suite, components, package list, dpkg options and
  the mmdebstrap version; a hit copies nothing, the later steps read the cached tarball directly.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess
import time

from image.board import Board
from image.cache import cache_root, key_of

SUITE = "bookworm"
BOOTSTRAP_FORMAT = 3  # bump when the command line below changes in a way the key does not see
# Packages every image has, besides the board's kernel, GRUB binaries and extras.
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "python3", "kmod", "iproute2", "iputils-ping", "procps",
    "busybox-static", "libbpf1", "nftables",
)
DPKG_EXCLUDES = (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/usr/share/lintian/*", "/usr/share/linda/*", "/etc/kernel/postinst.d/initramfs-tools",
)
# Keep copyright files: the licences travel with the image.
DPKG_INCLUDES = ("/usr/share/doc/*/copyright",)
_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
QEMU_USER_BINFMT = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}


def packages(board: Board) -> list[str]:
    return sorted({*BASE_PACKAGES, board.kernel_package, board.grub_package, *board.extra_packages})


def mmdebstrap_version() -> str:
    out = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def bootstrap_key(board: Board) -> str:
    return key_of({
        "format": BOOTSTRAP_FORMAT, "suite": SUITE, "arch": board.architecture,
        "components": list(board.components), "packages": packages(board),
        "excludes": list(DPKG_EXCLUDES), "includes": list(DPKG_INCLUDES), "mmdebstrap": mmdebstrap_version(),
    })


def tarball_path(board: Board) -> pathlib.Path:
    return cache_root() / f"bootstrap-{board.architecture}-{bootstrap_key(board)}.tar"


def ensure_foreign_arch(arch: str) -> None:
    """Make sure qemu-user can run the target's binaries (binfmt_misc mounted and the handler enabled)."""
    if _HOST_ARCH.get(platform.machine()) == arch:
        return
    binfmt = pathlib.Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=True)
    handler = QEMU_USER_BINFMT[arch]
    if not (binfmt / handler).exists():
        subprocess.run(["update-binfmts", "--enable", handler], check=True)


def command(board: Board, dest: pathlib.Path) -> list[str]:
    cmd = ["mmdebstrap", "--mode=unshare", "--variant=minbase", f"--arch={board.architecture}",
           f"--components={','.join(board.components)}", f"--include={','.join(packages(board))}",
           "--aptopt=APT::Install-Recommends \"false\"", "--dpkgopt=force-unsafe-io"]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
    cmd += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
    cmd += [SUITE, str(dest)]
    return cmd


def run(board: Board, log: pathlib.Path) -> pathlib.Path:
    """Build (or reuse) the bootstrap tarball; returns its path."""
    dest = tarball_path(board)
    if dest.exists():
        return dest
    ensure_foreign_arch(board.architecture)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}.tar")
    start = time.monotonic()
    with open(log, "ab") as logf:
        logf.write(f"$ {' '.join(command(board, tmp))}\n".encode())
        logf.flush()
        proc = subprocess.run(command(board, tmp), stdout=logf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"mmdebstrap failed (exit {proc.returncode}); see {log}")
    os.replace(tmp, dest)
    with open(log, "a") as logf:
        logf.write(f"bootstrap {board.architecture}: {time.monotonic() - start:.0f} s\n")
    return dest


def extract(tarball: pathlib.Path, rootfs: pathlib.Path) -> None:
    """Unpack the bootstrap tarball into an empty rootfs directory (ownership and modes kept)."""
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(rootfs)], check=True)
