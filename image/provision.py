"""Factory provisioning: write a node's identity onto the data partition of a disk image.

    python -m image.provision --board x86_64 --image disk.img --anchor anchor.key [--debug-console]

Enrolment flow (docs/image.md): the mesh operator keeps the trust anchor key offline (made once with
`x0node keys anchor`). For each unit, this tool makes a node key (`x0node keys generate`), signs its
certificate with the anchor (`x0node keys sign`), and writes key, certificate and the anchor's public key
into the image's data partition (`/data/x0node/`), so the unit joins the mesh only with peers certified by
the same anchor. The rest of the image is untouched; the partition is rebuilt with mkfs.ext4 -d in place
(no mounts). The web UI's certificate pair is made here too
(rootfs/usr/lib/x0tta6bl4/webcert.py, named for the node), so the unit's first boot does not spend its
start making one and the fingerprint is known before the unit is switched on. `--debug-console` also drops /data/etc/debug-console (root shell on the serial console)
for lab units and QEMU tests. `--wifi-mesh-key-file` puts the 802.11s mesh key (the same for every unit
of a mesh; 8-63 printable characters, see rootfs/usr/lib/x0tta6bl4/wifimesh.py) at
/data/x0node/wifi-mesh.key for boards with `[wifi_mesh]` and SAE.

Rules: key files are mode 0600; an existing node key can be reused (`--node-key`) so a reflashed unit
keeps its identity; the image file is written in place only within the data partition's extent.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from image import assemble
from image.board import Board, load_board

NODE_KEY = "x0node/node.key"
NODE_CERT = "x0node/node.cert"
ANCHOR_PUB = "x0node/anchor.pub"
DEBUG_CONSOLE = "etc/debug-console"
WEB_CERT = "x0node/web/tls.crt"  # where x0-web-cert.service and the web service's defaults look
WEB_KEY = "x0node/web/tls.key"
WEBCERT_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "rootfs/usr/lib/x0tta6bl4/webcert.py"
WIFI_MESH_KEY = "x0node/wifi-mesh.key"


@dataclass(frozen=True)
class Identity:
    node_id: str
    mesh_addr: str
    key: bytes
    cert: bytes
    web_fingerprint: str = ""


def _webcert():  # type: ignore[no-untyped-def]
    """The device's own certificate maker, loaded from the root file system's source."""
    spec = importlib.util.spec_from_file_location("x0_webcert", WEBCERT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def web_pair(ident: Identity) -> tuple[bytes, bytes, str]:
    """(key PEM, certificate PEM, SHA-256 fingerprint) of the web UI certificate for this node, with the
    names the device would give it (its host name and mesh address)."""
    wc = _webcert()
    key_pem, cert_pem = wc.make_pair(f"x0-{ident.node_id[:12]}", ident.mesh_addr)
    return key_pem, cert_pem, wc.fingerprint(cert_pem)


def _x0node() -> list[str]:
    return [sys.executable, "-m", "x0node"]


def make_identity(anchor: pathlib.Path, workdir: pathlib.Path, node_key: pathlib.Path | None = None) -> Identity:
    """A node key (new unless given) and its certificate signed by the anchor; uses `x0node keys`."""
    key = node_key or workdir / "node.key"
    if node_key is None:
        subprocess.run([*_x0node(), "keys", "generate", "--out", str(key)], check=True, capture_output=True)
    cert = workdir / "node.cert"
    subprocess.run([*_x0node(), "keys", "sign", "--anchor", str(anchor), "--node-key", str(key), "--out", str(cert)],
                   check=True, capture_output=True)
    shown = subprocess.run([*_x0node(), "keys", "show", "--key", str(key)], check=True, capture_output=True,
                           text=True).stdout
    try:
        info = json.loads(shown)
        node_id, mesh = str(info["node_id"]), str(info["mesh_address"])
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"cannot read node id / mesh address from `x0node keys show`: {shown!r}") from None
    return Identity(node_id, mesh, key.read_bytes(), cert.read_bytes())


def anchor_pub(anchor: pathlib.Path) -> pathlib.Path:
    """The anchor's public key file, as `x0node keys anchor` writes it (KEY with suffix .pub)."""
    pub = anchor.with_suffix(".pub")
    if not pub.exists():
        raise FileNotFoundError(f"no public key next to {anchor} (expected {pub})")
    return pub


def check_wifi_mesh_key(data: bytes) -> bytes:
    """The mesh key file's content (first line + newline) if it is a key wpa_supplicant takes: 8 to 63
    printable ASCII characters without quotes or backslashes."""
    lines = data[:4096].decode("ascii", "replace").splitlines()
    key = lines[0] if lines else ""
    if not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e ]{8,63}", key):
        raise ValueError("a Wi-Fi mesh key is 8 to 63 printable ASCII characters without quotes or backslashes")
    return key.encode() + b"\n"


def make_anchor(path: pathlib.Path) -> pathlib.Path:
    subprocess.run([*_x0node(), "keys", "anchor", "--out", str(path)], check=True, capture_output=True)
    return path


def data_extent(board: Board, image: pathlib.Path, log: pathlib.Path) -> tuple[int, int]:
    """(offset, size) of the data partition. On a disk larger than the image (a bigger flash), the
    partition is grown to the end first (GPT backup header moved to the end, partition 4 extended), so a
    device has room on /data for an update bundle (docs/ota.md); on the image's own size it is unchanged."""
    offset, size = assemble.disk_partition(image, "data")
    end = image.stat().st_size - assemble.MIB  # the backup GPT lives in the last MiB
    if end - offset > size:
        with open(log, "ab") as logf:
            subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "--relocate", "gpt-bak-std", str(image)],
                           stdout=logf, stderr=subprocess.STDOUT, check=True)
            subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-N", "4", str(image)], input=b", +\n",
                           stdout=logf, stderr=subprocess.STDOUT, check=True)
        size = (end - offset) // assemble.MIB * assemble.MIB
    return offset, size


def provision(board: Board, image: pathlib.Path, anchor: pathlib.Path, *, debug_console: bool = False,
              node_key: pathlib.Path | None = None, extra: dict[str, bytes] | None = None,
              wifi_mesh_key: bytes | None = None) -> Identity:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        ident = make_identity(anchor, work, node_key)
        web_key, web_cert, web_fp = web_pair(ident)
        ident = dataclasses.replace(ident, web_fingerprint=web_fp)
        files = {NODE_KEY: ident.key, NODE_CERT: ident.cert, ANCHOR_PUB: anchor_pub(anchor).read_bytes(),
                 WEB_KEY: web_key, WEB_CERT: web_cert}
        if debug_console:
            files[DEBUG_CONSOLE] = b""
        if wifi_mesh_key is not None:
            files[WIFI_MESH_KEY] = check_wifi_mesh_key(wifi_mesh_key)
        files.update(extra or {})
        data = work / "data.img"
        log = work / "log"
        try:
            offset, size = data_extent(board, image, log)
            assemble.make_data(data, size // assemble.MIB, files, log)
        except subprocess.CalledProcessError:
            raise RuntimeError(log.read_text()) from None
        # Full copy, zeros included: stale blocks of an earlier data partition must not survive.
        assemble.write_at(image, offset, data, size, sparse=False)
    return ident


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.provision", description=__doc__.split("\n")[0])
    parser.add_argument("--board", default="x86_64")
    parser.add_argument("--image", type=pathlib.Path, required=True, help="disk image to write (in place)")
    parser.add_argument("--anchor", type=pathlib.Path, required=True, help="trust anchor key (x0node keys anchor)")
    parser.add_argument("--node-key", type=pathlib.Path, help="reuse this node key instead of making one")
    parser.add_argument("--debug-console", action="store_true", help="root shell on the serial console")
    parser.add_argument("--wifi-mesh-key-file", type=pathlib.Path,
                        help="the 802.11s mesh's SAE key (one line, 8-63 printable characters; the same for the whole mesh)")
    parser.add_argument("--disk-mib", type=int, help="grow the image file to this size first (the device's "
                        "flash); the data partition takes the rest")
    args = parser.parse_args(argv)
    board = load_board(args.board)
    key = args.wifi_mesh_key_file.read_bytes() if args.wifi_mesh_key_file else None
    if key is not None and board.wifi_mesh is None:
        parser.error(f"board {board.name} has no [wifi_mesh]")
    if board.wifi_mesh is not None and board.wifi_mesh.security == "sae" and key is None:
        print("note: no --wifi-mesh-key-file: the unit's radios stay off the SAE mesh until "
              f"/data/{WIFI_MESH_KEY} is written", file=sys.stderr)
    if args.disk_mib:
        with open(args.image, "r+b") as f:
            f.truncate(max(f.seek(0, 2), args.disk_mib * assemble.MIB))
    try:
        ident = provision(board, args.image, args.anchor, debug_console=args.debug_console,
                          node_key=args.node_key, wifi_mesh_key=key)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"provisioned {args.image}: node_id={ident.node_id} mesh_addr={ident.mesh_addr} "
          f"web UI certificate SHA-256 {ident.web_fingerprint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
