"""`[transport]` daemon section validation."""

from __future__ import annotations

import base64

import pytest

from x0node.daemon.config import ConfigError
from x0node.transport.service import validate_config

PSK = base64.b64encode(bytes(32)).decode()


def test_valid_section_gets_defaults():
    out = validate_config({"tunnels": [{"role": "client", "server": "192.0.2.1:443", "tap": "x0t0", "password": PSK}]})
    t = out["tunnels"][0]
    assert (t["method"], t["shape"], t["mtu"], t["addresses"]) == ("2022-blake3-chacha20-poly1305", "none", 1400, [])


@pytest.mark.parametrize(
    "tunnel,key",
    [
        ({"role": "peer", "server": "a:1", "tap": "t", "password": PSK}, "tunnels[0].role"),
        ({"role": "client", "tap": "t", "password": PSK}, "tunnels[0].server"),
        ({"role": "server", "listen": "a:x", "tap": "t", "password": PSK}, "tunnels[0].listen"),
        ({"role": "client", "server": "a:1", "tap": "much-too-long-name", "password": PSK}, "tunnels[0].tap"),
        ({"role": "client", "server": "a:1", "tap": "t"}, "tunnels[0].psk_file"),
        ({"role": "client", "server": "a:1", "tap": "t", "password": "short"}, "tunnels[0].password"),
        ({"role": "client", "server": "a:1", "tap": "t", "password": PSK, "shape": "x"}, "tunnels[0].shape"),
        ({"role": "client", "server": "a:1", "tap": "t", "password": PSK, "mtu": 500}, "tunnels[0].mtu"),
        ({"role": "client", "server": "a:1", "tap": "t", "password": PSK, "bogus": 1}, "tunnels[0].bogus"),
    ],
)
def test_errors_name_the_key(tunnel, key):
    with pytest.raises(ConfigError) as exc:
        validate_config({"tunnels": [tunnel]})
    assert exc.value.key == key


def test_duplicate_tap_and_unknown_top_level_key():
    t = {"role": "client", "server": "a:1", "tap": "t", "password": PSK}
    with pytest.raises(ConfigError, match="another tunnel"):
        validate_config({"tunnels": [t, t]})
    with pytest.raises(ConfigError) as exc:
        validate_config({"tunnel": []})
    assert exc.value.key == "tunnel"
