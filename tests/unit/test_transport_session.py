"""Session codecs of both editions: headers, replay, timestamps, salt echo, padding rules."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.transport.address import Address
from x0node.transport.aead_stream import StreamEncryptor
from x0node.transport.crypto import get_method, master_key, session_subkey
from x0node.transport.errors import DecodeError, RemoteError, ReplayError
from x0node.transport.replay import ReplayFilter
from x0node.transport.session import ClientSession, ServerSession

NOW = 1_700_000_000.0
PSK = base64.b64encode(bytes(range(32))).decode()
TARGET = Address("example.com", 443)
ALL = ["chacha20-ietf-poly1305", "aes-256-gcm", "2022-blake3-chacha20-poly1305", "2022-blake3-aes-256-gcm"]


def key_for(name):
    m = get_method(name)
    return m, master_key(m, PSK if m.is_2022 else "pw")


def server(name, replay=None, seed=2):
    m, k = key_for(name)
    return ServerSession(m, k, ReplayFilter() if replay is None else replay, random.Random(seed))


def client(name, seed=1):
    m, k = key_for(name)
    return ClientSession(m, k, TARGET, random.Random(seed))


@pytest.mark.parametrize("name", ALL)
def test_full_exchange_byte_by_byte(name):
    c, s = client(name), server(name)
    wire = b"".join(c.first_write(b"GET /", NOW) + c.encrypt(b" more"))
    got = b""
    for i in range(len(wire)):
        got += b"".join(s.feed(wire[i : i + 1], NOW))
    assert s.target == TARGET and got == b"GET / more"
    back = b"".join(s.encrypt(b"HTTP/1.1 200", NOW) + s.encrypt(b" OK", NOW))
    got = b""
    for i in range(len(back)):
        got += b"".join(c.decrypt(back[i : i + 1], NOW))
    assert got == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("name", ALL)
def test_replayed_first_flight_is_rejected(name):
    rf = ReplayFilter()
    wire = b"".join(client(name).first_write(b"x", NOW))
    server(name, rf).feed(wire, NOW)
    with pytest.raises(ReplayError):
        server(name, rf).feed(wire, NOW + 5)


@pytest.mark.parametrize("name", ALL)
def test_wrong_key_never_yields_target(name):
    m, _ = key_for(name)
    other = ClientSession(m, bytes(reversed(range(m.key_len))), TARGET, random.Random(1))
    s = server(name)
    with pytest.raises(DecodeError):
        s.feed(b"".join(other.first_write(b"x", NOW)), NOW)
    assert s.target is None


@pytest.mark.parametrize("skew", [-31, 31, 3600])
def test_2022_timestamp_window(skew):
    wire = b"".join(client("2022-blake3-chacha20-poly1305").first_write(b"x", NOW + skew))
    with pytest.raises(ReplayError):
        server("2022-blake3-chacha20-poly1305").feed(wire, NOW)


def test_2022_no_payload_means_padding():
    c = client("2022-blake3-aes-256-gcm")
    wire = b"".join(c.first_write(b"", NOW))
    s = server("2022-blake3-aes-256-gcm")
    assert s.feed(wire, NOW) == [] and s.target == TARGET
    # padded header with payload-less request is > salt + fixed + address
    assert len(wire) > 32 + 27 + len(TARGET.encode()) + 2 + 16


def _handmade_2022_request(var: bytes, fixed_type: int = 0):
    m, k = key_for("2022-blake3-chacha20-poly1305")
    salt = bytes(32)
    enc = StreamEncryptor(m.aead(session_subkey(m, k, salt)), 0xFFFF)
    fixed = bytes((fixed_type,)) + int(NOW).to_bytes(8, "big") + len(var).to_bytes(2, "big")
    return salt + enc.seal_block(fixed) + enc.seal_block(var)


def test_2022_rejects_no_payload_and_no_padding():
    var = TARGET.encode() + (0).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="padding"):
        server("2022-blake3-chacha20-poly1305").feed(_handmade_2022_request(var), NOW)


def test_2022_rejects_oversized_padding():
    var = TARGET.encode() + (901).to_bytes(2, "big") + bytes(901)
    with pytest.raises(DecodeError, match="padding"):
        server("2022-blake3-chacha20-poly1305").feed(_handmade_2022_request(var), NOW)


def test_2022_rejects_server_type_in_request():
    var = TARGET.encode() + (1).to_bytes(2, "big") + b"\x00"
    with pytest.raises(DecodeError, match="type"):
        server("2022-blake3-chacha20-poly1305").feed(_handmade_2022_request(var, fixed_type=1), NOW)


def test_2022_client_checks_request_salt_echo():
    name = "2022-blake3-chacha20-poly1305"
    c1, c2 = client(name, seed=1), client(name, seed=7)
    s = server(name)
    s.feed(b"".join(c1.first_write(b"x", NOW)), NOW)
    c2.first_write(b"x", NOW)
    reply = b"".join(s.encrypt(b"answer", NOW))
    assert b"".join(c1.decrypt(reply, NOW)) == b"answer"
    with pytest.raises(DecodeError, match="salt"):
        c2.decrypt(reply, NOW)


def test_truncated_header_waits_then_nothing():
    name = "2022-blake3-chacha20-poly1305"
    wire = b"".join(client(name).first_write(b"hello", NOW))
    s = server(name)
    assert s.feed(wire[:-1], NOW) == [] and s.target is None


def test_garbage_address_type_fails_closed():
    m, k = key_for("chacha20-ietf-poly1305")
    salt = bytes(32)
    enc = StreamEncryptor(m.aead(session_subkey(m, k, salt)), 0x3FFF)
    wire = salt + b"".join(enc.seal(b"\x09garbage"))
    with pytest.raises(DecodeError):
        server("chacha20-ietf-poly1305").feed(wire, NOW)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400), name=st.sampled_from(ALL), split=st.integers(1, 64))
def test_random_input_only_ever_raises_remote_errors(data, name, split):
    s = server(name)
    try:
        for i in range(0, len(data), split):
            assert s.feed(data[i : i + split], NOW) == []
    except RemoteError:
        pass
    assert s.target is None


@settings(max_examples=100, deadline=None)
@given(flip=st.integers(0, 10_000), name=st.sampled_from(ALL))
def test_any_single_bit_flip_in_first_flight_is_rejected(flip, name):
    wire = bytearray(b"".join(client(name).first_write(b"payload", NOW)))
    # flips inside the salt change the subkey; anywhere else the tag: never a target
    wire[flip % len(wire)] ^= 1 << (flip % 8)
    s = server(name)
    try:
        s.feed(bytes(wire), NOW)
    except RemoteError:
        return
    assert s.target is None
