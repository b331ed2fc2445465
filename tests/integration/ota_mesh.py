"""Namespace meshes of real daemons with the OTA and state services: release files, signed bundles made
with the real RAUC, a vendor download server in the gateway's namespace, and control-socket queries.
Used by tests/integration/test_ota_mesh.py and bench/ota.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from x0lab.testbed.bed import Testbed, up
from x0node.ota import bundle, keys
from x0node.ota import manifest as mf
from x0node.ota.service import SOCKET_NAME
from x0node.state import control

BOARD = "x86_64"
UPLINK_PORT = 8088


def write_release(path: pathlib.Path, version: str, serial: int, board: str = BOARD) -> pathlib.Path:
    path.write_text(json.dumps({"board": board, "compat": bundle.compat_of(board), "version": version,
                                "serial": serial}))
    return path


def make_bundle(work: pathlib.Path, keydir: pathlib.Path, size: int, version: str, serial: int,
                board: str = BOARD, signers: int = 2) -> tuple[pathlib.Path, pathlib.Path, mf.Manifest]:
    """A real RAUC bundle of a `size`-byte random slot image, its manifest signed by `signers` keys."""
    img = work / f"root-{version}.img"
    with open(img, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    out = work / f"x0-{board}-{version}.raucb"
    m = bundle.build(img, board, version, serial, keydir, out)
    img.unlink()
    signed = mf.sign(m, keys.holder_keys(keydir)[:signers])
    bundle.write_manifest(bundle.manifest_path(out), signed)
    return out, bundle.manifest_path(out), m


def ota_bed(run_dir: pathlib.Path, topology: str, keydir: pathlib.Path, release: pathlib.Path,
            ota: dict[str, Any] | None = None, node_ota: dict[int, dict[str, Any]] | None = None,
            **kw: Any) -> Testbed:
    section = {"installer": "none", "release_file": str(release), "keys_file": str(keydir / keys.RELEASE_KEYS_FILE),
               "keyring": str(keydir / "ca.cert.pem")} | (ota or {})
    return up(run_dir, topology, "x0node", sections={"state": {}, "ota": section},
              node_sections={k: {"ota": v} for k, v in (node_ota or {}).items()}, **kw)


def ask(bed: Testbed, k: int, req: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    return control.request(pathlib.Path(bed.nodes[k].data_dir) / SOCKET_NAME, req, timeout_s)


def status(bed: Testbed, k: int) -> dict[str, Any] | None:
    try:
        out = ask(bed, k, {"op": "status"}, 5.0)
    except OSError:
        return None
    return out if out.get("ok") else None


def wait_ota(bed: Testbed, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    for k in bed.nodes:
        while status(bed, k) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"OTA service of n{k} not answering")
            time.sleep(0.1)


def phases(bed: Testbed, nodes: list[int] | None = None) -> dict[int, tuple[str, int]]:
    out = {}
    for k in nodes or list(bed.nodes):
        st = status(bed, k)
        t = (st or {}).get("target") or {}
        out[k] = ((st or {}).get("phase", "?"), int(t.get("have", 0)))
    return out


def wait_phase(bed: Testbed, phase: str, timeout_s: float, nodes: list[int] | None = None) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if all(p == phase for p, _ in phases(bed, nodes).values()):
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


class UplinkServer:
    """The vendor's server, inside node `k`'s namespace on 127.0.0.1 (only that node reaches it)."""

    def __init__(self, bed: Testbed, k: int, directory: pathlib.Path, port: int = UPLINK_PORT) -> None:
        self.dir = directory
        self.url = f"http://127.0.0.1:{port}/latest.json"
        root = pathlib.Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(["ip", "netns", "exec", bed.nodes[k].ns, sys.executable, "-m",
                                      "tests.integration.ota_uplink", str(directory), str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=root,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            self.stop()
            raise RuntimeError(f"uplink server did not start: {line!r}")

    def publish(self, bundle_path: pathlib.Path, manifest_path: pathlib.Path) -> None:
        (self.dir / bundle_path.name).write_bytes(bundle_path.read_bytes()) if bundle_path.parent != self.dir else None
        (self.dir / "latest.json").write_bytes(manifest_path.read_bytes())

    def bytes_sent(self) -> int:
        try:
            return int(json.loads((self.dir / "uplink-stats.json").read_text())["bytes"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
