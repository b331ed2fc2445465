"""UDP packet codecs for both editions."""

from __future__ import annotations

import base64
import random

import pytest

from x0node.transport.address import Address
from x0node.transport.crypto import get_method, master_key
from x0node.transport.errors import DecodeError, ReplayError
from x0node.transport.udp_packet import (
    decode_2022_packet,
    decode_aead_packet,
    encode_2022_packet,
    encode_aead_packet,
)

NOW = 1_700_000_000.0
ADDR = Address("10.0.0.1", 53)
PSK = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("name", ["chacha20-ietf-poly1305", "aes-256-gcm"])
def test_aead_packet_roundtrip_and_tamper(name):
    m = get_method(name)
    k = master_key(m, "pw")
    pkt = encode_aead_packet(m, k, random.Random(1), ADDR, b"query")
    assert decode_aead_packet(m, k, pkt) == (ADDR, b"query")
    bad = bytearray(pkt)
    bad[40] ^= 1
    with pytest.raises(DecodeError):
        decode_aead_packet(m, k, bytes(bad))
    with pytest.raises(DecodeError):
        decode_aead_packet(m, k, pkt[:20])


@pytest.mark.parametrize("name", ["2022-blake3-chacha20-poly1305", "2022-blake3-aes-256-gcm"])
def test_2022_packet_both_directions(name):
    m = get_method(name)
    k = master_key(m, PSK)
    rng = random.Random(3)
    up = encode_2022_packet(m, k, rng, b"C" * 8, 7, NOW, ADDR, b"ping", padding=10)
    p = decode_2022_packet(m, k, up, NOW, from_server=False)
    assert (p.session_id, p.packet_id, p.address, p.payload, p.client_session_id) == (b"C" * 8, 7, ADDR, b"ping", None)
    down = encode_2022_packet(m, k, rng, b"S" * 8, 0, NOW, ADDR, b"pong", client_session_id=b"C" * 8)
    p = decode_2022_packet(m, k, down, NOW, from_server=True)
    assert p.client_session_id == b"C" * 8 and p.payload == b"pong"
    with pytest.raises(DecodeError):  # a client packet is not accepted as a server packet
        decode_2022_packet(m, k, up, NOW, from_server=True)
    with pytest.raises(ReplayError):
        decode_2022_packet(m, k, up, NOW + 40, from_server=False)
    bad = bytearray(up)
    bad[-1] ^= 1
    with pytest.raises(DecodeError):
        decode_2022_packet(m, k, bytes(bad), NOW, from_server=False)
