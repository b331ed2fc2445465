"""802.11s mesh point on a radio: writes wpa_supplicant's mesh-mode config and runs it; keeps x0node's
interface list in step with the radios that come and go (x0-wifi-mesh@<ifname>.service, started by udev
for every wireless interface).

    wifimesh.py run wlan0 [--key-file F] [--run-dir D] [--any]   # exec wpa_supplicant on wlan0
    wifimesh.py sync                                              # restart x0node if its radios changed

Rules:
- Only radios matching the board's `[wifi_mesh] radios` (X0_WIFI_RADIOS in board.env) join, unless
  `--any`; a board without `[wifi_mesh]` joins nothing. The mesh ID, channel and security come from the
  board (X0_WIFI_MESH_ID, X0_WIFI_FREQ, X0_WIFI_SECURITY).
- security "sae": the mesh key is the first line of /data/x0node/wifi-mesh.key, written at provisioning
  (image.provision --wifi-mesh-key-file): 8 to 63 printable ASCII characters without quotes or
  backslashes (wpa_supplicant's passphrase). SAE (IEEE 802.11-2016 12.4, the "simultaneous
  authentication of equals" of WPA3) authenticates every peer link with it, and management frames are
  protected (ieee80211w=2). A missing or malformed key leaves the radio off the mesh, said on the
  console; there is never a fallback to an open mesh. security "open" needs no key.
- Mesh forwarding (HWMP path selection) is off (mesh_fwding=0): the mesh point delivers frames only to
  peers in radio range and x0node routes, as batman-adv over 802.11s setups do; otherwise 802.11s would
  hide multi-hop paths from x0node behind one link.
- The key file is read bounded; the config file is written 0600 by temp + rename; nothing is written
  outside the run directory.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import pathlib
import re
import subprocess
import sys

BOARD_ENV = pathlib.Path("/usr/share/x0tta6bl4/board.env")
KEY_FILE = pathlib.Path("/data/x0node/wifi-mesh.key")
# Not under /run/x0node: that is x0node.service's RuntimeDirectory, removed whenever the daemon stops.
RUN_DIR = pathlib.Path("/run/x0-wifi-mesh")  # <ifname>/ below it: the unit's RuntimeDirectory
RUNNING_CONFIG = pathlib.Path("/run/x0node/config.toml")
WPA_SUPPLICANT = "/usr/sbin/wpa_supplicant"
MESH_CONFIG = "/usr/libexec/x0node/mesh-config"
MAX_FILE_BYTES = 4096
KEY_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e ]{8,63}$")  # printable ASCII without " and \
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
MESH_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def read_env(path: pathlib.Path | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    path = path or BOARD_ENV
    try:
        text = path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r'^([A-Z0-9_]+)="([^"]*)"$', line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def read_key(path: pathlib.Path) -> str | None:
    """The mesh key (first line), or None when the file is missing or the key is malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES)
    except OSError:
        return None
    lines = data.decode("ascii", "replace").splitlines()
    key = lines[0].rstrip("\r") if lines else ""
    return key if KEY_RE.match(key) else None


def wpa_config(mesh_id: str, freq_mhz: int, security: str, key: str | None, ctrl_dir: pathlib.Path) -> str:
    if not MESH_ID_RE.match(mesh_id):
        raise ValueError(f"bad mesh id {mesh_id!r}")
    lines = [f"ctrl_interface=DIR={ctrl_dir}", "update_config=0", "user_mpm=1", "mesh_fwding=0", "",
             "network={", f'\tssid="{mesh_id}"', "\tmode=5", f"\tfrequency={freq_mhz}"]
    if security == "sae":
        if key is None or not KEY_RE.match(key):
            raise ValueError("SAE needs a mesh key")
        lines += ["\tkey_mgmt=SAE", f'\tpsk="{key}"', "\tieee80211w=2"]
    else:
        lines += ["\tkey_mgmt=NONE"]
    return "\n".join([*lines, "}", ""])


def _write_private(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cmd_run(args: argparse.Namespace) -> int:
    env = read_env()
    radios = env.get("X0_WIFI_RADIOS", "").split()
    ifname = args.ifname
    if not IFNAME_RE.match(ifname):
        print(f"x0-wifi-mesh: bad interface name {ifname!r}", file=sys.stderr)
        return 2
    if not radios:
        print(f"x0-wifi-mesh: {ifname}: this board has no [wifi_mesh]; radio left alone")
        return 0
    if not args.any and not any(fnmatch.fnmatchcase(ifname, g) for g in radios):
        print(f"x0-wifi-mesh: {ifname} is not a mesh radio of this board ({' '.join(radios)})")
        return 0
    security = env.get("X0_WIFI_SECURITY", "sae")
    key = None
    if security == "sae":
        key = read_key(args.key_file)
        if key is None:
            print(f"x0-wifi-mesh: {ifname}: no usable mesh key in {args.key_file} (8-63 printable characters, "
                  "from provisioning): the radio stays off the mesh", file=sys.stderr)
            return 0
    try:
        freq = int(env.get("X0_WIFI_FREQ", "2412"))
        text = wpa_config(env.get("X0_WIFI_MESH_ID", ""), freq, security, key, (args.run_dir or RUN_DIR / ifname) / "ctrl")
    except ValueError as exc:
        print(f"x0-wifi-mesh: {ifname}: {exc}", file=sys.stderr)
        return 2
    run_dir = args.run_dir or RUN_DIR / ifname
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = run_dir / f"{ifname}.conf"
    _write_private(conf, text)
    print(f"x0-wifi-mesh: {ifname}: joining 802.11s mesh {env.get('X0_WIFI_MESH_ID')} on {freq} MHz ({security})",
          flush=True)
    os.execv(WPA_SUPPLICANT, [WPA_SUPPLICANT, "-D", "nl80211", "-i", ifname, "-c", str(conf)])
    return 1  # not reached


def cmd_sync(_args: argparse.Namespace) -> int:
    """Restart x0node (if it runs) when the config mesh-config would write differs from the running one:
    a radio came or went."""
    try:
        want = subprocess.run([MESH_CONFIG, "--stdout"], capture_output=True, check=True, timeout=30).stdout
        have = RUNNING_CONFIG.read_bytes()[:1 << 20] if RUNNING_CONFIG.exists() else b""
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"x0-wifi-mesh: cannot compare the daemon's interfaces: {exc}", file=sys.stderr)
        return 0
    if want != have:
        print("x0-wifi-mesh: mesh radios changed: restarting x0node", flush=True)
        subprocess.run(["systemctl", "try-restart", "--no-block", "x0node.service"], check=False, timeout=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wifimesh.py", description="802.11s mesh point with wpa_supplicant.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="write the mesh config and exec wpa_supplicant on a radio")
    p_run.add_argument("ifname")
    p_run.add_argument("--key-file", type=pathlib.Path, default=KEY_FILE)
    p_run.add_argument("--run-dir", type=pathlib.Path, default=None, help=f"default {RUN_DIR}/<ifname>")
    p_run.add_argument("--any", action="store_true", help="join even if the name matches no radio glob")
    sub.add_parser("sync", help="restart x0node if the radios it should use changed")
    args = parser.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_sync(args)


if __name__ == "__main__":
    sys.exit(main())
