"""Step `overlay`: the repository's rootfs/ tree copied over the bootstrapped root, plus the few files
that depend on the board (interface roles, the firewall policy) or on the read-only design.

Board-dependent files: /usr/share/x0tta6bl4/board.env (mesh and LAN globs for mesh-config),
/usr/share/x0tta6bl4/firewall.json (LAN globs, web_on_mesh, the routing port from
x0node.proto.protocol and the services' declared listeners from x0node.daemon.exposure, for
/usr/lib/x0tta6bl4/firewall.py) and the
systemd-networkd file of the LAN ports (DHCPv4); every other Ethernet port gets link-local IPv6 only.

Rules: files from rootfs/ replace files of the same path; modes and symlinks are kept; ownership is
root. Units are enabled by writing the same symlinks `systemctl enable` would write, so nothing of the
target architecture runs here. /etc/machine-id is left empty: the initramfs binds the persistent one
from /data over it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

from image.board import REPO_ROOT, Board

OVERLAY_DIR = REPO_ROOT / "rootfs"
# (unit, target whose .wants/ gets the symlink, where the unit file lives)
ENABLED_UNITS = (
    ("x0node.service", "multi-user.target", "/usr/lib/systemd/system"),
    ("x0-firewall.service", "sysinit.target", "/usr/lib/systemd/system"),
    ("x0-web-cert.service", "multi-user.target", "/usr/lib/systemd/system"),
    ("x0-hostname.service", "x0node.service", "/usr/lib/systemd/system"),
    ("systemd-networkd.service", "multi-user.target", "/lib/systemd/system"),
    ("systemd-networkd.socket", "sockets.target", "/lib/systemd/system"),
)
# Debian units a router has no use for, masked (linked to /dev/null) so an emulated or slow board does
# not spend its boot on them: login records (utmp, on the path to sysinit.target), and the GPU, FUSE,
# device-mapper, pstore, configfs, huge-page and POSIX-message-queue setup nothing in the image uses.
# Not masked: modprobe@loop (RAUC mounts bundles on loop devices), kmod-static-nodes (/dev/net/tun for
# the tunnels), the debug and tracing file systems.
MASKED_UNITS = (
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
    "modprobe@drm.service", "modprobe@fuse.service", "modprobe@dm_mod.service", "modprobe@efi_pstore.service",
    "modprobe@configfs.service", "sys-kernel-config.mount", "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount", "dev-mqueue.mount",
)
HOSTNAME = "x0tta6bl4"
LAN_NETWORK_FILE = "etc/systemd/network/10-x0-lan.network"


def lan_network(board: Board) -> str:
    return ("# LAN/management ports of this board (lan_interfaces): DHCPv4 client, IPv6 link-local; the web UI\n"
            "# is reachable here (firewall). Written by image/overlay.py.\n"
            f"[Match]\nName={' '.join(board.lan_interfaces)}\n\n[Link]\nRequiredForOnline=no\n\n"
            "[Network]\nDHCP=ipv4\nLinkLocalAddressing=ipv6\nIPv6AcceptRA=no\n")


def board_env(board: Board) -> str:
    """/usr/share/x0tta6bl4/board.env: interface roles for mesh-config, the 802.11s mesh for wifimesh.py."""
    text = (f'X0_BOARD="{board.name}"\nX0_MESH_GLOBS="{" ".join(board.mesh_interfaces)}"\n'
            f'X0_LAN_GLOBS="{" ".join(board.lan_interfaces)}"\n')
    wifi = board.wifi_mesh
    if wifi is not None:
        text += (f'X0_WIFI_RADIOS="{" ".join(wifi.radios)}"\nX0_WIFI_MESH_ID="{wifi.mesh_id}"\n'
                 f'X0_WIFI_FREQ="{wifi.frequency_mhz}"\nX0_WIFI_SECURITY="{wifi.security}"\n')
    return text


def firewall_policy(board: Board) -> dict:
    """The board's roles, the routing port and what each service declares it opens (its EXPOSURE, with
    the defaults its validate_config applies): the firewall reads ports only from here and the config."""
    from x0node.daemon.exposure import policy
    from x0node.proto.protocol import MESH_UDP_PORT

    return {"board": board.name, "lan_interfaces": list(board.lan_interfaces), "web_on_mesh": board.web_on_mesh,
            "mesh_udp_port": MESH_UDP_PORT, "services": policy()}


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
    env.write_text(board_env(board))
    (rootfs / "usr/share/x0tta6bl4/firewall.json").write_text(
        json.dumps(firewall_policy(board), indent=1, sort_keys=True) + "\n")
    lan = rootfs / LAN_NETWORK_FILE
    if board.lan_interfaces:
        lan.write_text(lan_network(board))
    else:
        lan.unlink(missing_ok=True)
    for unit, target, unit_dir in ENABLED_UNITS:
        wants = rootfs / "etc/systemd/system" / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        if not (rootfs / unit_dir.lstrip("/") / unit).exists():
            raise RuntimeError(f"unit {unit} not found in {unit_dir} of the root")
        os.symlink(f"{unit_dir}/{unit}", link)
    for unit in MASKED_UNITS:
        link = rootfs / "etc/systemd/system" / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink("/dev/null", link)
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/hostname").write_text(HOSTNAME + "\n")
    (rootfs / "data").mkdir(exist_ok=True)
    return copied
