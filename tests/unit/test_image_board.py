"""image.board: every shipped board validates; bad boards are refused naming the key."""

from __future__ import annotations

import tomllib

import pytest

from image.board import BOARDS_DIR, BoardError, list_boards, load_board, parse_board


def _x86() -> dict:
    return tomllib.loads((BOARDS_DIR / "x86_64.toml").read_text())


def test_shipped_boards_validate() -> None:
    names = list_boards()
    assert {"x86_64", "arm64-virt"} <= set(names)
    for name in names:
        board = load_board(name)
        assert board.partitions.disk_mib <= board.disk_limit_mib
        assert board.source_sha256


def test_default_board_fits_the_goals() -> None:
    board = load_board("x86_64")
    assert board.disk_limit_mib <= 256 and board.squashfs_limit_mib <= 160
    assert board.console_tty == "ttyS0"
    assert board.is_mesh_interface("eth1") and not board.is_mesh_interface("lo")
    # the first port is the LAN/management side, never a mesh port; the UI stays off mesh ports
    assert board.is_lan_interface("eth0") and not board.is_mesh_interface("eth0")
    assert board.web_on_mesh is False


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"architecture": "mips"}, "architecture"),
        ({"bootloader": "lilo"}, "bootloader"),
        ({"name": "other"}, "name"),
        ({"console": "ttyS0;rm -rf /"}, "console"),
        ({"extra_packages": ["ok", "Bad Name"]}, "extra_packages"),
        ({"partitions": {"esp": 16, "root_slot": 200, "data": 32}}, "partitions"),
        ({"partitions": {"esp": 16, "root_slot": 100, "data": True}}, "partitions.data"),
        ({"limits": {"disk": 256, "squashfs": 300}}, "limits.squashfs"),
        ({"esp_files": {"../x": "/a"}}, "esp_files.../x"),
        ({"lan_interfaces": ["e?h0"]}, "lan_interfaces"),
        ({"lan_interfaces": ["eth*0"]}, "lan_interfaces"),
        ({"web_on_mesh": "yes"}, "web_on_mesh"),
        ({"architecture": "arm64", "bootloader": "grub-efi-bios"}, "bootloader"),
        ({"wifi_mesh": {"radios": ["wlan*"], "mesh_id": "m", "frequency_mhz": 2412, "key": "x"}}, "wifi_mesh.key"),
        ({"wifi_mesh": {"radios": ["wlan*"], "mesh_id": "a b", "frequency_mhz": 2412}}, "wifi_mesh.mesh_id"),
        ({"wifi_mesh": {"radios": ["wlan*"], "mesh_id": "m", "frequency_mhz": 3000}}, "wifi_mesh.frequency_mhz"),
        ({"wifi_mesh": {"radios": ["wlan*"], "mesh_id": "m", "frequency_mhz": 2412, "security": "wep"}},
         "wifi_mesh.security"),
        ({"wifi_mesh": {"radios": [], "mesh_id": "m", "frequency_mhz": 2412}}, "wifi_mesh.radios"),
        ({"qemu": {"system": "q", "machine": "m", "cpu": "c", "memory_mib": 1, "firmware": "f", "nic_model": "n",
                   "disk_interface": "floppy"}}, "qemu.disk_interface"),
    ],
)
def test_bad_boards_name_the_key(change: dict, key: str) -> None:
    data = _x86() | change
    with pytest.raises(BoardError) as exc:
        parse_board(data, "x86_64")
    assert exc.value.key == key


def test_missing_board_lists_known_ones() -> None:
    with pytest.raises(BoardError, match="known: .*x86_64"):
        load_board("nosuchboard")
    with pytest.raises(BoardError):
        load_board("../etc/passwd")


def test_generic_board_boots_bios_and_uefi_and_meshes_over_wifi() -> None:
    from image import bootstrap

    board = load_board("x86_64-generic")
    assert board.bios_boot and board.kernel_package == "linux-image-amd64"
    assert board.wifi_mesh is not None and board.wifi_mesh.security == "sae"
    assert {"grub-pc-bin", "wpasupplicant", "iw"} <= set(bootstrap.packages(board))
    assert not load_board("x86_64").bios_boot and load_board("x86_64").wifi_mesh is None
    assert "wpasupplicant" not in bootstrap.packages(load_board("x86_64"))
