"""Board descriptions (`board-configs/<name>.toml`), validated into a frozen `Board`.

Rules: every key is known (unknown keys are an error naming the key), sizes are whole MiB, the partition
layout must fit inside the disk size limit, and `name` equals the file name. A board is pure data; the
pipeline steps read it and never change it.

Interface roles: a port matching `lan_interfaces` is the LAN/management side (DHCPv4, the web UI); any
other port matching `mesh_interfaces` is a mesh port. The firewall (rootfs/usr/lib/x0tta6bl4/firewall.py)
and the network set-up follow these roles; `web_on_mesh` also opens the UI on mesh ports. LAN globs are a
name or a name prefix followed by `*`, because nftables matches interface names only that way.
"""

from __future__ import annotations

import fnmatch
import hashlib
import pathlib
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO_ROOT / "board-configs"
DEFAULT_BOARD = "x86_64"
# Sectors and alignment of the GPT layout that assemble.py writes (MiB-aligned partitions, one MiB of
# head room for the primary GPT and one for the backup GPT at the end).
GPT_OVERHEAD_MIB = 2
# grub-efi: GRUB as the EFI boot file on the ESP. grub-efi-bios (amd64 only): the same, and GRUB for
# legacy BIOS (i386-pc) in a BIOS boot partition of the same GPT disk, so one image boots either way.
# The BIOS boot partition is GPT entry 5 in the otherwise unused sectors 34-2047 before the first
# MiB-aligned partition: the other partitions, their numbers and the disk size stay as they are.
SUPPORTED_BOOTLOADERS = ("grub-efi", "grub-efi-bios")
BIOS_GRUB_PACKAGE = "grub-pc-bin"
BIOS_GRUB_TARGET = "i386-pc"
# What a board with `[wifi_mesh]` needs in its root: wpa_supplicant (802.11s mesh with SAE) and iw.
WIFI_MESH_PACKAGES = ("wpasupplicant", "iw")
WIFI_SECURITY = ("sae", "open")
DEBIAN_ARCHES = ("amd64", "arm64")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,80}$")
_MODULE_RE = re.compile(r"^[a-z0-9_-]{1,64}$")


class BoardError(ValueError):
    """A board file is missing, unreadable or invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Partitions:
    esp_mib: int
    root_slot_mib: int
    data_mib: int

    @property
    def disk_mib(self) -> int:
        return GPT_OVERHEAD_MIB + self.esp_mib + 2 * self.root_slot_mib + self.data_mib


@dataclass(frozen=True)
class WifiMesh:
    """An 802.11s mesh point on every wireless interface matching `radios` (globs over names), joined
    by wpa_supplicant in mesh mode: SAE with the mesh key from provisioning, or open."""

    radios: tuple[str, ...]
    mesh_id: str
    frequency_mhz: int
    security: str = "sae"


@dataclass(frozen=True)
class QemuSpec:
    system: str
    machine: str
    cpu: str
    memory_mib: int
    firmware: str
    nic_model: str
    disk_interface: str = "virtio"


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    tested: str
    architecture: str
    kernel_package: str
    bootloader: str
    grub_target: str
    grub_package: str
    efi_boot_file: str
    console: str
    extra_packages: tuple[str, ...]
    mesh_interfaces: tuple[str, ...]
    initramfs_modules: tuple[str, ...]
    kernel_cmdline: str
    partitions: Partitions
    disk_limit_mib: int
    squashfs_limit_mib: int
    components: tuple[str, ...] = ("main",)
    esp_files: tuple[tuple[str, str], ...] = ()
    esp_text: tuple[tuple[str, str], ...] = ()
    qemu: QemuSpec | None = None
    lan_interfaces: tuple[str, ...] = ()
    web_on_mesh: bool = False
    wifi_mesh: WifiMesh | None = None
    source_sha256: str = field(default="", compare=False)

    @property
    def console_tty(self) -> str:
        return self.console.split(",", 1)[0]

    @property
    def bios_boot(self) -> bool:
        return self.bootloader == "grub-efi-bios"

    def is_lan_interface(self, ifname: str) -> bool:
        return any(fnmatch.fnmatchcase(ifname, pat) for pat in self.lan_interfaces)

    def is_mesh_interface(self, ifname: str) -> bool:
        return not self.is_lan_interface(ifname) and any(
            fnmatch.fnmatchcase(ifname, pat) for pat in self.mesh_interfaces)


def _req(data: dict[str, Any], key: str, typ: type, prefix: str = "") -> Any:
    if key not in data:
        raise BoardError(prefix + key, "missing")
    value = data[key]
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise BoardError(prefix + key, "expected an integer")
    if not isinstance(value, typ):
        raise BoardError(prefix + key, f"expected {typ.__name__}")
    return value


def _str_list(data: dict[str, Any], key: str, pattern: re.Pattern[str] | None) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BoardError(key, "expected a list of strings")
    for v in value:
        if pattern is not None and not pattern.match(v):
            raise BoardError(key, f"bad entry {v!r}")
    return tuple(value)


def _path_map(data: dict[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BoardError(key, "expected a table")
    out = []
    for k, v in value.items():
        if not isinstance(v, str) or not k.startswith("/") or ".." in k.split("/"):
            raise BoardError(f"{key}.{k}", "expected an absolute path mapped to a string")
        out.append((k, v))
    return tuple(out)


_TOP_KEYS = {
    "name", "description", "tested", "architecture", "kernel_package", "bootloader", "grub_target",
    "grub_package", "efi_boot_file", "console", "extra_packages", "mesh_interfaces", "initramfs_modules",
    "kernel_cmdline", "partitions", "limits", "qemu", "components", "esp_files", "esp_text", "lan_interfaces",
    "web_on_mesh", "wifi_mesh",
}
QEMU_DISKS = ("virtio", "ahci", "nvme", "usb")


def parse_board(data: dict[str, Any], file_name: str) -> Board:
    for key in data:
        if key not in _TOP_KEYS:
            raise BoardError(key, "unknown key")
    name = _req(data, "name", str)
    if not _NAME_RE.match(name) or name != file_name:
        raise BoardError("name", f"must be a short lowercase name equal to the file name ({file_name!r})")
    arch = _req(data, "architecture", str)
    if arch not in DEBIAN_ARCHES:
        raise BoardError("architecture", f"one of {', '.join(DEBIAN_ARCHES)}")
    bootloader = _req(data, "bootloader", str)
    if bootloader not in SUPPORTED_BOOTLOADERS:
        raise BoardError("bootloader", f"one of {', '.join(SUPPORTED_BOOTLOADERS)}")
    kernel = _req(data, "kernel_package", str)
    grub_package = _req(data, "grub_package", str)
    for key, value in (("kernel_package", kernel), ("grub_package", grub_package)):
        if not _PKG_RE.match(value):
            raise BoardError(key, "not a Debian package name")
    console = _req(data, "console", str)
    if not re.match(r"^tty[A-Za-z0-9]{1,10}(,\d{3,7})?$", console):
        raise BoardError("console", "expected e.g. ttyS0,115200")
    parts = _req(data, "partitions", dict)
    for key in parts:
        if key not in ("esp", "root_slot", "data"):
            raise BoardError(f"partitions.{key}", "unknown key")
    partitions = Partitions(
        esp_mib=_req(parts, "esp", int, "partitions."),
        root_slot_mib=_req(parts, "root_slot", int, "partitions."),
        data_mib=_req(parts, "data", int, "partitions."),
    )
    if bootloader == "grub-efi-bios" and arch != "amd64":
        raise BoardError("bootloader", "grub-efi-bios needs architecture amd64")
    for key, v, lo in (("esp", partitions.esp_mib, 8), ("root_slot", partitions.root_slot_mib, 16),
                       ("data", partitions.data_mib, 8)):
        if not lo <= v <= 65536:
            raise BoardError(f"partitions.{key}", f"expected MiB between {lo} and 65536")
    limits = _req(data, "limits", dict)
    for key in limits:
        if key not in ("disk", "squashfs"):
            raise BoardError(f"limits.{key}", "unknown key")
    disk_limit = _req(limits, "disk", int, "limits.")
    sqfs_limit = _req(limits, "squashfs", int, "limits.")
    if partitions.disk_mib > disk_limit:
        raise BoardError("partitions", f"layout needs {partitions.disk_mib} MiB, over limits.disk={disk_limit}")
    if sqfs_limit > partitions.root_slot_mib:
        raise BoardError("limits.squashfs", "larger than partitions.root_slot")
    qemu = None
    if "qemu" in data:
        q = _req(data, "qemu", dict)
        for key in q:
            if key not in QemuSpec.__dataclass_fields__:
                raise BoardError(f"qemu.{key}", "unknown key")
        qemu = QemuSpec(
            system=_req(q, "system", str, "qemu."), machine=_req(q, "machine", str, "qemu."),
            cpu=_req(q, "cpu", str, "qemu."), memory_mib=_req(q, "memory_mib", int, "qemu."),
            firmware=_req(q, "firmware", str, "qemu."), nic_model=_req(q, "nic_model", str, "qemu."),
            disk_interface=q.get("disk_interface", "virtio"),
        )
        if qemu.disk_interface not in QEMU_DISKS:
            raise BoardError("qemu.disk_interface", f"one of {', '.join(QEMU_DISKS)}")
    web_on_mesh = data.get("web_on_mesh", False)
    if not isinstance(web_on_mesh, bool):
        raise BoardError("web_on_mesh", "expected true or false")
    wifi = _wifi_mesh(data["wifi_mesh"]) if "wifi_mesh" in data else None
    cmdline = data.get("kernel_cmdline", "")
    if not isinstance(cmdline, str) or len(cmdline) > 512 or "\n" in cmdline:
        raise BoardError("kernel_cmdline", "expected one line of at most 512 characters")
    return Board(
        name=name,
        description=_req(data, "description", str),
        tested=_req(data, "tested", str),
        architecture=arch,
        kernel_package=kernel,
        bootloader=bootloader,
        grub_target=_req(data, "grub_target", str),
        grub_package=grub_package,
        efi_boot_file=_req(data, "efi_boot_file", str),
        console=console,
        extra_packages=_str_list(data, "extra_packages", _PKG_RE),
        mesh_interfaces=_str_list(data, "mesh_interfaces", re.compile(r"^[A-Za-z0-9*?_.-]{1,15}$")),
        initramfs_modules=_str_list(data, "initramfs_modules", _MODULE_RE),
        kernel_cmdline=cmdline,
        partitions=partitions,
        disk_limit_mib=disk_limit,
        squashfs_limit_mib=sqfs_limit,
        components=_str_list(data, "components", re.compile(r"^[a-z-]{1,40}$")) or ("main",),
        esp_files=_path_map(data, "esp_files"),
        esp_text=_path_map(data, "esp_text"),
        qemu=qemu,
        lan_interfaces=_str_list(data, "lan_interfaces", re.compile(r"^[A-Za-z0-9_.-]{1,15}\*?$")),
        web_on_mesh=web_on_mesh,
        wifi_mesh=wifi,
    )


def _wifi_mesh(value: Any) -> WifiMesh:
    if not isinstance(value, dict):
        raise BoardError("wifi_mesh", "expected a table")
    for key in value:
        if key not in ("radios", "mesh_id", "frequency_mhz", "security"):
            raise BoardError(f"wifi_mesh.{key}", "unknown key")
    radios = _str_list(value, "radios", re.compile(r"^[A-Za-z0-9*?_.-]{1,15}$"))
    if not radios:
        raise BoardError("wifi_mesh.radios", "expected at least one interface glob")
    mesh_id = _req(value, "mesh_id", str, "wifi_mesh.")
    if not 1 <= len(mesh_id.encode()) <= 32 or not re.match(r"^[A-Za-z0-9_.-]+$", mesh_id):
        raise BoardError("wifi_mesh.mesh_id", "1 to 32 characters of A-Z a-z 0-9 _ . -")
    freq = _req(value, "frequency_mhz", int, "wifi_mesh.")
    if not (2412 <= freq <= 2484 or 5160 <= freq <= 5885):
        raise BoardError("wifi_mesh.frequency_mhz", "a 2.4 GHz or 5 GHz channel's centre frequency")
    security = value.get("security", "sae")
    if security not in WIFI_SECURITY:
        raise BoardError("wifi_mesh.security", f"one of {', '.join(WIFI_SECURITY)}")
    return WifiMesh(radios=radios, mesh_id=mesh_id, frequency_mhz=freq, security=security)


def load_board(name: str, boards_dir: pathlib.Path = BOARDS_DIR) -> Board:
    if not _NAME_RE.match(name):
        raise BoardError("board", f"bad board name {name!r}")
    path = boards_dir / f"{name}.toml"
    try:
        raw = path.read_bytes()
    except OSError:
        known = ", ".join(sorted(p.stem for p in boards_dir.glob("*.toml")))
        raise BoardError("board", f"no board {name!r} (known: {known})") from None
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BoardError(path.name, f"not valid TOML: {exc}") from None
    board = parse_board(data, name)
    return Board(**{**board.__dict__, "source_sha256": hashlib.sha256(raw).hexdigest()})


def list_boards(boards_dir: pathlib.Path = BOARDS_DIR) -> list[str]:
    return sorted(p.stem for p in boards_dir.glob("*.toml"))
