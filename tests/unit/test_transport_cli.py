"""`x0node transport` argument parsing."""

from __future__ import annotations

import argparse
import base64

import pytest

from x0node.cli import build_parser, main
from x0node.transport.cli import parse_hostport


def test_parse_hostport():
    assert parse_hostport("127.0.0.1:8388") == ("127.0.0.1", 8388)
    assert parse_hostport("[::1]:443") == ("::1", 443)
    assert parse_hostport(":1080") == ("0.0.0.0", 1080)
    for bad in ("nohost", "h:99999", "h:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_hostport(bad)


def test_subcommands_registered():
    p = build_parser()
    a = p.parse_args(["transport", "ss-server", "--listen", "0.0.0.0:8388", "-k", "pw", "-m", "aes-256-gcm", "--udp"])
    assert a.listen == ("0.0.0.0", 8388) and a.udp and a.method == "aes-256-gcm"
    a = p.parse_args(["transport", "ss-local", "--server", "1.2.3.4:8388", "--listen", "127.0.0.1:1080", "-k", "pw"])
    assert a.method == "2022-blake3-chacha20-poly1305"


def test_genkey(capsys):
    assert main(["transport", "genkey"]) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32


def test_bad_psk_is_a_clear_error(capsys):
    assert main(["transport", "ss-server", "--listen", "127.0.0.1:0", "-k", "not-a-psk"]) == 2
    assert "base64" in capsys.readouterr().err
