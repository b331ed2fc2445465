"""Step `bundle`: the signed update bundle of the board's root slot, and the files a device needs to
take bundles (written by the `overlay` step through `device_files`).

Device files: /etc/rauc/system.conf (from rootfs/etc/rauc/system.conf.in: compatible string per board,
GRUB backend on the ESP's grubenv, slots by partition name), /etc/rauc/keyring.pem (the release CA),
/usr/share/x0tta6bl4/ota/release-keys.json (manifest keys and threshold) and release.json (board,
compatible, version, serial: the serial is SOURCE_DATE_EPOCH, so later builds are newer releases).

Outputs (out/<board>/): x0-<board>-<version>.raucb and .raucb.manifest.json (x0node/ota/bundle.py).
Keys come from $X0_OTA_KEYS (default ~/.config/x0tta6bl4/ota-keys); a missing directory is made with new
development keys and the build log says so: production builds point X0_OTA_KEYS at the release keys.
The manifest is signed with the directory's release-*.key files up to the threshold; a key holder who
keeps a key elsewhere signs later with `x0node ota sign`.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

from image.board import REPO_ROOT, Board
from x0node.ota import bundle as ota_bundle
from x0node.ota import keys as ota_keys
from x0node.ota import manifest as mf

SYSTEM_CONF_IN = REPO_ROOT / "rootfs/etc/rauc/system.conf.in"
DEVICE_OTA_DIR = "usr/share/x0tta6bl4/ota"


def keys_dir() -> pathlib.Path:
    env = os.environ.get("X0_OTA_KEYS", "")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".config/x0tta6bl4/ota-keys"


def device_files(board: Board, rootfs: pathlib.Path, version: str, serial: int, log: pathlib.Path | None = None) -> dict:
    kd = keys_dir()
    made = not (kd / "ca.key.pem").exists()
    rk = ota_keys.ensure(kd)
    if made and log is not None:
        with open(log, "a") as f:
            f.write(f"ota: no release keys in {kd}: made development keys there (set X0_OTA_KEYS for releases)\n")
    conf = SYSTEM_CONF_IN.read_text().replace("@COMPATIBLE@", ota_bundle.compat_of(board.name))
    (rootfs / "etc/rauc").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/rauc/system.conf.in").unlink(missing_ok=True)
    (rootfs / "etc/rauc/system.conf").write_text(conf)
    shutil.copyfile(kd / "ca.cert.pem", rootfs / "etc/rauc/keyring.pem")
    d = rootfs / DEVICE_OTA_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / ota_keys.RELEASE_KEYS_FILE).write_text(json.dumps(rk.to_json(), indent=1) + "\n")
    release = {"board": board.name, "compat": ota_bundle.compat_of(board.name), "version": version, "serial": serial}
    (d / "release.json").write_text(json.dumps(release, indent=1, sort_keys=True) + "\n")
    (rootfs / "boot/efi").mkdir(parents=True, exist_ok=True)
    return {"keys": str(kd), "release": release, "threshold": rk.threshold}


def bundle_path(out: pathlib.Path, board: Board, version: str) -> pathlib.Path:
    return out / f"x0-{board.name}-{version}.raucb"


def sign_as_release(m: mf.Manifest, kd: pathlib.Path) -> mf.Signed:
    """`m` signed by the key directory's trusted release keys, up to the threshold."""
    rk = ota_keys.release_keys(kd)
    holders = [k for k in ota_keys.holder_keys(kd) if k.verify_key.encode().hex() in rk.keys]
    return mf.sign(m, holders[: rk.threshold])


def run(board: Board, squashfs: pathlib.Path, out: pathlib.Path, version: str, serial: int) -> dict:
    kd = keys_dir()
    dest = bundle_path(out, board, version)
    m = ota_bundle.build(squashfs, board.name, version, serial, kd, dest)
    signed = sign_as_release(m, kd)
    ota_bundle.write_manifest(ota_bundle.manifest_path(dest), signed)
    return {"bundle": dest.name, "bytes": m.bundle_bytes, "sha256": m.bundle_sha256, "chunks": len(m.chunks),
            "manifest_id": m.id, "serial": serial, "signatures": len(signed.signatures)}
