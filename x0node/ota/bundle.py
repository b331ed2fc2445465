"""Bundles: build a RAUC bundle from a root slot image, write and check its x0node manifest (adapter).

An update is two files side by side:
- `<name>.raucb`: a RAUC bundle (format `plain`: squashfs with manifest.raucm and the root slot image
  `root.img`, CMS signature appended), made and signed by `rauc bundle` with the release signing
  certificate; RAUC on the device checks it against its keyring (the release CA) before it writes a
  slot. Format plain, not verity: it needs only loop and squashfs on the device, no dm-verity and no
  nbd; it is installed from a local file (the node stages it on /data first, docs/ota.md).
- `<name>.raucb.manifest.json`: the x0node manifest (x0node/ota/manifest.py) with the bundle's hash,
  size and chunk hashes, signed by N of the M release keys. Nodes check it before they fetch a byte.

`verify_bundle` checks both on a build host or a node: the manifest's signatures, the bundle's
SHA-256 and every chunk, the board, and RAUC's own signature check (`rauc info --keyring`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess  # rauc, systemctl, grub-editenv and migration scripts with a fixed argv, never a shell # nosec B404
import tempfile

from x0node.io.atomicfile import write_atomic
from x0node.ota import manifest as mf

CHUNK_BYTES = 1024 * 1024
SLOT_IMAGE = "root.img"
RAUC_TIMEOUT_S = 900


class BundleError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def compat_of(board: str) -> str:
    return f"x0tta6bl4-{board}"


def raucm(board: str, version: str, serial: int, image_sha256: str) -> str:
    return (f"[update]\ncompatible={compat_of(board)}\nversion={version}\n"
            f"description=x0tta6bl4 {board} {version} (serial {serial})\nbuild={serial}\n\n"
            f"[bundle]\nformat=plain\n\n[image.rootfs]\nfilename={SLOT_IMAGE}\nsha256={image_sha256}\n")


def file_sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


def describe(path: pathlib.Path, board: str, version: str, serial: int,
             chunk_bytes: int = CHUNK_BYTES) -> mf.Manifest:
    """The manifest of an existing bundle file (hashes read from the file)."""
    hashes, whole, size = [], hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            hashes.append(hashlib.sha256(block).hexdigest())
            whole.update(block)
            size += len(block)
    return mf.Manifest(board=board, compat=compat_of(board), version=version, serial=serial,
                       bundle_name=path.name, bundle_sha256=whole.hexdigest(), bundle_bytes=size,
                       chunk_bytes=chunk_bytes, chunks=tuple(hashes))


def rauc(*args: str, timeout: float = RAUC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rauc")
    if exe is None:
        raise BundleError("no_rauc", "rauc is not installed (Debian package rauc)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)  # fixed argv, no shell # nosec B603


def build(slot_image: pathlib.Path, board: str, version: str, serial: int, keydir: pathlib.Path,
          out: pathlib.Path) -> mf.Manifest:
    """`rauc bundle` of `slot_image` into `out` (.raucb), signed with keydir's signing certificate; the
    unsigned manifest is returned (sign it with `sign_manifest`)."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        content = pathlib.Path(tmp) / "content"
        content.mkdir()
        img = content / SLOT_IMAGE
        try:
            img.hardlink_to(slot_image)
        except OSError:
            shutil.copyfile(slot_image, img)
        write_atomic(content / "manifest.raucm", raucm(board, version, serial, file_sha256(img)).encode(), mode=0o644)
        partial = pathlib.Path(tmp) / out.name
        r = rauc("bundle", f"--cert={keydir / 'signing.cert.pem'}", f"--key={keydir / 'signing.key.pem'}",
                 f"--keyring={keydir / 'ca.cert.pem'}", str(content), str(partial))
        if r.returncode != 0:
            raise BundleError("rauc_bundle", f"rauc bundle failed: {r.stderr.strip()[-2000:]}")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        partial.replace(out)
    return describe(out, board, version, serial)


def manifest_path(bundle: pathlib.Path) -> pathlib.Path:
    return bundle.with_name(bundle.name + ".manifest.json")


def write_manifest(path: pathlib.Path, signed: mf.Signed) -> None:
    write_atomic(path, signed.encode(), mode=0o644)


def rauc_check(bundle: pathlib.Path, keyring: pathlib.Path) -> str | None:
    """None when RAUC accepts the bundle's CMS signature against `keyring`, else RAUC's message."""
    r = rauc("info", f"--keyring={keyring}", "--output-format=json", str(bundle), timeout=300)
    return None if r.returncode == 0 else (r.stderr.strip() or r.stdout.strip())[-600:]


def verify_bundle(bundle: pathlib.Path, manifest_bytes: bytes, keys: mf.ReleaseKeys,
                  keyring: pathlib.Path | None, board: str | None = None) -> mf.Manifest:
    """Every check a node makes before it installs; BundleError(reason) at the first that fails."""
    try:
        m = mf.verify(manifest_bytes, keys)
    except mf.ManifestError as exc:
        raise BundleError(exc.reason, str(exc)) from None
    if board is not None and m.board != board:
        raise BundleError("wrong_board", f"bundle is for board {m.board!r}, this node is {board!r}")
    size = bundle.stat().st_size
    if size != m.bundle_bytes:
        raise BundleError("hash_mismatch", f"bundle has {size} bytes, the manifest says {m.bundle_bytes}")
    whole = hashlib.sha256()
    with open(bundle, "rb") as f:
        for i in range(len(m.chunks)):
            block = f.read(m.chunk_bytes)
            if not m.chunk_ok(i, block):
                raise BundleError("hash_mismatch", f"chunk {i} of the bundle does not match the manifest "
                                  "(tampered or damaged)")
            whole.update(block)
    if whole.hexdigest() != m.bundle_sha256:
        raise BundleError("hash_mismatch", "the bundle's SHA-256 does not match the manifest")
    if keyring is not None:
        why = rauc_check(bundle, keyring)
        if why is not None:
            raise BundleError("rauc_signature", f"RAUC refused the bundle's signature: {why}")
    return m
