"""Step `bootstrap`: a Debian bookworm root for the board's architecture, as a tarball, with mmdebstrap.

Rules:
- Runs mmdebstrap in `unshare` mode (no loop mounts; as root it also works without subuids).
- The apt sources are explicit (bookworm, bookworm-updates, bookworm-security: image.lock.SOURCES), never
  the build host's, and every package is pinned to the board's lock (image/locks/<board>.json); the
  installed set is checked against the lock. Without a lock, or with `--refresh-lock`, the newest versions
  are resolved and become the lock (image.lock).
- SOURCE_DATE_EPOCH is the lock's (the newest Release date of its suites), so the same lock gives the
  same tarball; the build host's /etc/resolv.conf and /etc/hostname, which mmdebstrap copies in, are
  removed. The suites' InRelease files are kept under /var/lib/x0-bootstrap (emptied with /var in trim).
- Documentation, man pages, locales and the kernel's initramfs-tools hook are never unpacked
  (`path-exclude`): the initramfs is built natively by the `initramfs` step, which is what keeps foreign
  (arm64, qemu-user emulated) builds fast — mkinitramfs is by far the slowest maintainer script under
  emulation. Every other maintainer script runs as Debian ships it.
- The result is cached by a key over the architecture, sources, components, package list, the lock, dpkg
  options and the mmdebstrap version; a hit copies nothing, the later steps read the cached tarball
  directly.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import time

from image import lock as locks
from image.board import BIOS_GRUB_PACKAGE, WIFI_MESH_PACKAGES, Board
from image.cache import cache_root, key_of

SUITE = locks.SUITE
BOOTSTRAP_FORMAT = 4  # bump when the command line below changes in a way the key does not see
# Packages every image has, besides the board's kernel, GRUB binaries and extras.
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "python3", "kmod", "iproute2", "iputils-ping", "procps",
    "busybox-static", "libbpf1", "nftables", "rauc", "rauc-service",
    # rauc reads and installs bundles through unsquashfs; without it `rauc info` fails.
    "squashfs-tools",
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
    extra = set(board.extra_packages)
    if board.bios_boot:
        extra.add(BIOS_GRUB_PACKAGE)
    if board.wifi_mesh is not None:
        extra.update(WIFI_MESH_PACKAGES)
    return sorted({*BASE_PACKAGES, board.kernel_package, board.grub_package, *extra})


def mmdebstrap_version() -> str:
    out = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def bootstrap_key(board: Board, lock: locks.Lock) -> str:
    return key_of({
        "format": BOOTSTRAP_FORMAT, "sources": locks.source_lines(board), "arch": board.architecture,
        "components": list(board.components), "packages": packages(board), "lock": lock.digest(),
        "excludes": list(DPKG_EXCLUDES), "includes": list(DPKG_INCLUDES), "mmdebstrap": mmdebstrap_version(),
    })


def tarball_path(board: Board, lock: locks.Lock) -> pathlib.Path:
    return cache_root() / f"bootstrap-{board.architecture}-{bootstrap_key(board, lock)}.tar"


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


def command(board: Board, dest: pathlib.Path, prefs: pathlib.Path | None) -> list[str]:
    cmd = ["mmdebstrap", "--mode=unshare", "--variant=minbase", f"--arch={board.architecture}",
           f"--components={','.join(board.components)}", f"--include={','.join(packages(board))}",
           "--aptopt=APT::Install-Recommends \"false\"", "--dpkgopt=force-unsafe-io"]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
    cmd += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
    if prefs is not None:
        cmd += [f"--setup-hook=copy-in {prefs} /etc/apt/preferences.d/"]
    cmd += [f'--customize-hook=mkdir -p "$1/{locks.RELEASE_DIR}" && cp "$1"/var/lib/apt/lists/*_InRelease '
            f'"$1/{locks.RELEASE_DIR}/"',
            '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"']
    cmd += [SUITE, str(dest), *locks.source_lines(board)]
    return cmd


def _mmdebstrap(board: Board, dest: pathlib.Path, log: pathlib.Path, lock: locks.Lock | None) -> None:
    ensure_foreign_arch(board.architecture)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}.tar")
    start = time.monotonic()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as prefs_dir:
        prefs = None
        if lock is not None:
            env["SOURCE_DATE_EPOCH"] = str(lock.source_date_epoch)
            prefs = pathlib.Path(prefs_dir) / "x0-lock.pref"  # a fixed name: it is part of the tarball
            prefs.write_text(locks.preferences(lock))
        cmd = command(board, tmp, prefs)
        with open(log, "ab") as logf:
            logf.write(f"$ {' '.join(cmd)}\n".encode())
            logf.flush()
            proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"mmdebstrap failed (exit {proc.returncode}); see {log}")
    os.replace(tmp, dest)
    with open(log, "a") as logf:
        logf.write(f"bootstrap {board.architecture}: {time.monotonic() - start:.0f} s\n")


def run(board: Board, rootfs: pathlib.Path, log: pathlib.Path, refresh_lock: bool = False) -> tuple[pathlib.Path, locks.Lock]:
    """Build (or reuse) the bootstrap tarball for the board's lock and unpack it into rootfs; returns the
    tarball and the lock. Without a lock (or with refresh_lock) the newest versions become the lock."""
    path = locks.lock_path(board)
    lock = None if refresh_lock else locks.read_lock(path)
    if lock is None:
        # Resolve the newest versions, then bootstrap again pinned to them with the lock's
        # SOURCE_DATE_EPOCH, so the cached tarball is the one any later build of this lock makes.
        fresh = cache_root() / f"bootstrap-{board.architecture}-unlocked-{os.getpid()}.tar"
        try:
            _mmdebstrap(board, fresh, log, None)
            extract(fresh, rootfs)
            lock = locks.make_lock(board, rootfs)
        finally:
            fresh.unlink(missing_ok=True)
        locks.write_lock(path, lock)
        with open(log, "a") as logf:
            logf.write(f"lock written: {path} ({len(lock.packages)} packages)\n")
    dest = tarball_path(board, lock)
    if not dest.exists():
        _mmdebstrap(board, dest, log, lock)
    extract(dest, rootfs)
    try:
        locks.check_installed(lock, rootfs)
    except locks.LockError:
        dest.unlink(missing_ok=True)
        raise
    return dest, lock


def extract(tarball: pathlib.Path, rootfs: pathlib.Path) -> None:
    """Unpack the bootstrap tarball into an empty rootfs directory (ownership and modes kept)."""
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(rootfs)], check=True)
