"""The 802.11s mesh helper of the image (rootfs/usr/lib/x0tta6bl4/wifimesh.py): the mesh key is read
bounded and validated, the wpa_supplicant config is SAE with protected management frames and without
802.11s forwarding, and a radio without a usable key is never joined open. Real joins:
tests/image/test_x86_64_generic.py::test_sae_mesh_of_hwsim_radios."""

from __future__ import annotations

import pathlib

import pytest

from image.board import load_board
from image.overlay import board_env
from image.provision import check_wifi_mesh_key
from tests.unit.rootfs_modules import load

wifimesh = load("wifimesh")


def test_key_is_validated(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "k"
    for good in ("12345678", "a" * 63, "mesh key with spaces!"):
        f.write_text(good + "\n")
        assert wifimesh.read_key(f) == good
    for bad in ("short", "a" * 64, 'quote"d-key', "back\\slash-key", "tab\there-key", ""):
        f.write_text(bad + "\n")
        assert wifimesh.read_key(f) is None, bad
    f.write_bytes(b"x" * 100_000)
    assert wifimesh.read_key(f) is None
    assert wifimesh.read_key(tmp_path / "missing") is None
    assert check_wifi_mesh_key(b"12345678\nrest") == b"12345678\n"
    with pytest.raises(ValueError):
        check_wifi_mesh_key(b'bad"key1')


def test_config_sae_without_forwarding() -> None:
    conf = wifimesh.wpa_config("x0tta6bl4", 2412, "sae", "12345678", pathlib.Path("/run/w"))
    assert "mode=5" in conf and "key_mgmt=SAE" in conf and 'psk="12345678"' in conf
    assert "ieee80211w=2" in conf and "mesh_fwding=0" in conf and "frequency=2412" in conf
    open_conf = wifimesh.wpa_config("x0tta6bl4", 2412, "open", None, pathlib.Path("/run/w"))
    assert "key_mgmt=NONE" in open_conf and "psk" not in open_conf
    with pytest.raises(ValueError):
        wifimesh.wpa_config("x0tta6bl4", 2412, "sae", None, pathlib.Path("/run/w"))
    with pytest.raises(ValueError):
        wifimesh.wpa_config('x"; rm', 2412, "open", None, pathlib.Path("/run/w"))


def test_no_key_no_join(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    env = tmp_path / "board.env"
    env.write_text(board_env(load_board("x86_64-generic")))
    monkeypatch.setattr(wifimesh, "BOARD_ENV", env)
    execs = []
    monkeypatch.setattr(wifimesh.os, "execv", lambda *a: execs.append(a))
    run = tmp_path / "run"
    assert wifimesh.main(["run", "wlan0", "--key-file", str(tmp_path / "none"), "--run-dir", str(run)]) == 0
    assert execs == [] and "stays off the mesh" in capsys.readouterr().err
    assert wifimesh.main(["run", "eth1", "--run-dir", str(run)]) == 0 and execs == []  # not a radio glob
    (tmp_path / "key").write_text("12345678\n")
    wifimesh.main(["run", "wlan0", "--key-file", str(tmp_path / "key"), "--run-dir", str(run)])
    assert execs and execs[0][1][-2:] == ["-c", str(run / "wlan0.conf")]
    assert (run / "wlan0.conf").stat().st_mode & 0o777 == 0o600
