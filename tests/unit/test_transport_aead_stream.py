"""SIP004/SIP022 chunk stream: round trips at any split, and fail-closed on corruption."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.transport.aead_stream import SIP004_MAX_PAYLOAD, StreamDecryptor, StreamEncryptor
from x0node.transport.crypto import get_method
from x0node.transport.errors import DecodeError

KEY = bytes(range(32))


def pair(method="chacha20-ietf-poly1305", cap=SIP004_MAX_PAYLOAD, key=KEY):
    m = get_method(method)
    return StreamEncryptor(m.aead(key), cap), StreamDecryptor(m.aead(key), cap)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=50_000), cuts=st.lists(st.integers(1, 4000), max_size=30),
       method=st.sampled_from(["chacha20-ietf-poly1305", "aes-256-gcm"]))
def test_roundtrip_any_split(data, cuts, method):
    enc, dec = pair(method)
    wire = b"".join(enc.seal(data))
    out = bytearray()
    pos = 0
    for c in cuts:
        out += b"".join(dec.chunks(wire[pos : pos + c]))
        pos += c
    out += b"".join(dec.chunks(wire[pos:]))
    assert bytes(out) == data


def test_chunks_respect_cap():
    enc, _ = pair()
    pieces = enc.seal(os.urandom(SIP004_MAX_PAYLOAD * 2 + 5))
    assert [len(p) for p in pieces] == [18, SIP004_MAX_PAYLOAD + 16, 18, SIP004_MAX_PAYLOAD + 16, 18, 5 + 16]


@pytest.mark.parametrize("index", [0, 1, 17, 18, 40, -1])
def test_any_flipped_bit_fails_closed(index):
    enc, dec = pair()
    wire = bytearray(b"".join(enc.seal(b"x" * 100)))
    wire[index] ^= 0x01
    with pytest.raises(DecodeError):
        dec.chunks(bytes(wire))
    with pytest.raises(DecodeError):  # and stays failed
        dec.chunks(b"")


def test_truncated_stream_yields_nothing_partial():
    enc, dec = pair()
    wire = b"".join(enc.seal(b"hello world"))
    assert dec.chunks(wire[:-1]) == []
    assert dec.chunks(wire[-1:]) == [b"hello world"]
    assert dec.chunks(wire[:10]) == []  # a truncated tail is never delivered


def test_wrong_key_fails():
    enc, _ = pair()
    _, dec = pair(key=bytes(32))
    with pytest.raises(DecodeError):
        dec.chunks(b"".join(enc.seal(b"data")))


def test_oversized_length_is_rejected():
    # a length chunk authenticated with the right key but announcing more than the cap
    m = get_method("chacha20-ietf-poly1305")
    a = m.aead(KEY)
    bad = a.encrypt(bytes(12), (SIP004_MAX_PAYLOAD + 1).to_bytes(2, "big"), None)
    _, dec = pair()
    with pytest.raises(DecodeError, match="out of range"):
        dec.chunks(bad)


def test_reordered_chunks_fail():
    enc, dec = pair()
    a = enc.seal(b"first")
    b = enc.seal(b"second")
    with pytest.raises(DecodeError):
        dec.chunks(b"".join(b + a))
