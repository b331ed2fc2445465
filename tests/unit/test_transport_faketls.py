"""FakeTLS codec: hello shape (parsed by scapy), authentication, server decisions, records."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.transport.errors import DecodeError
from x0node.transport.faketls import (
    ACCEPT,
    FALLBACK,
    HELLO_REPLAY_WINDOW_S,
    MAX_TIME_DIFF_S,
    NEED_MORE,
    FakeTlsClient,
    FakeTlsServer,
    RecordReader,
    auth_key,
    build_client_hello,
    parse_client_hello,
    replay_filter,
    verify_client_hello,
    wrap_records,
)
from x0node.transport.replay import ReplayFilter

KEY = auth_key(b"k" * 32)
NOW = 1_700_000_000.0


def hello(seed=1, sni="www.example.com", key=KEY, now=NOW):
    return build_client_hello(key, sni, now, random.Random(seed))


def test_hello_shape_parsed_by_scapy():
    from scapy.layers.tls.all import TLS
    from scapy.layers.tls.handshake import TLSClientHello

    h = hello()
    assert len(h) == 517
    pkt = TLS(h)
    ch = pkt.msg[0]
    assert isinstance(ch, TLSClientHello)
    names = {type(e).__name__ for e in ch.ext}
    assert {"TLS_Ext_ServerName", "TLS_Ext_SupportedVersion_CH", "TLS_Ext_KeyShare_CH", "TLS_Ext_ALPN",
            "TLS_Ext_SupportedGroups", "TLS_Ext_SignatureAlgorithms", "TLS_Ext_Padding"} <= names
    sni = next(e for e in ch.ext if type(e).__name__ == "TLS_Ext_ServerName")
    assert sni.servernames[0].servername == b"www.example.com"
    sv = next(e for e in ch.ext if type(e).__name__ == "TLS_Ext_SupportedVersion_CH")
    assert 0x0304 in sv.versions


def test_hellos_differ_per_connection():
    a, b = hello(1), hello(2)
    assert a != b and a[11:43] != b[11:43]


def test_parse_and_verify():
    h = hello()
    info = parse_client_hello(h)
    assert info.sni == "www.example.com" and info.record_len == len(h)
    assert verify_client_hello(KEY, h, NOW)
    assert verify_client_hello(KEY, h, NOW + 59)
    assert not verify_client_hello(KEY, h, NOW + 61)
    assert not verify_client_hello(auth_key(b"other"), h, NOW)
    bad = bytearray(h)
    bad[200] ^= 1  # any field change breaks the MAC
    assert not verify_client_hello(KEY, bytes(bad), NOW)


def server():
    return FakeTlsServer(KEY, replay_filter(), random.Random(5))


def test_server_accepts_then_unwraps_and_client_completes():
    rng = random.Random(9)
    c = FakeTlsClient(KEY, "www.example.com", rng, NOW)
    s = server()
    assert c.wrap(b"early") == []  # held until the server is verified
    decision, inner = s.feed(c.hello()[:100], NOW)
    assert decision == NEED_MORE
    decision, inner = s.feed(c.hello()[100:], NOW)
    assert decision == ACCEPT and inner == []
    inner, send = c.feed(s.flight)
    assert c.ready and inner == []
    assert s.unwrap(b"".join(send)) == [b"early"]
    assert s.unwrap(b"".join(c.wrap(b"later"))) == [b"later"]
    inner, send = c.feed(b"".join(wrap_records(b"down")))
    assert inner == [b"down"] and send == []


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\n\r\n", bytes(600), b"\x16\x03\x01\xff\xff"])
def test_non_hello_goes_to_fallback(first):
    s = server()
    decision, _ = s.feed(first, NOW)
    assert decision == FALLBACK and bytes(s.buffered) == first


def test_unauthenticated_and_replayed_hellos_go_to_fallback():
    s = server()
    assert s.feed(hello(key=auth_key(b"wrong")), NOW)[0] == FALLBACK and s.reason == "bad_auth"
    rf = replay_filter()
    h = hello()
    assert FakeTlsServer(KEY, rf, random.Random()).feed(h, NOW)[0] == ACCEPT
    s2 = FakeTlsServer(KEY, rf, random.Random())
    assert s2.feed(h, NOW + 1)[0] == FALLBACK and s2.reason == "replayed_hello"
    assert bytes(s2.buffered) == h  # relayed unchanged to the real site


@pytest.mark.parametrize("server_kind", ["proxy", "tunnel"])
def test_a_hello_is_never_accepted_twice_while_its_timestamp_is_valid(server_kind):
    """The servers' hello filters remember a hello as long as its timestamp keeps it valid, wherever in
    the filter's generation it arrived and however far (within the window) the client's clock is off."""
    from x0node.transport.crypto import get_method
    from x0node.transport.relay import ShadowsocksServer
    from x0node.transport.tunnel import TunnelServer

    method = get_method("2022-blake3-chacha20-poly1305")
    for arrival in range(0, 2 * HELLO_REPLAY_WINDOW_S + 10, 9):
        for skew in (-MAX_TIME_DIFF_S, 0, MAX_TIME_DIFF_S):
            if server_kind == "proxy":
                srv = ShadowsocksServer(method, bytes(32), ("127.0.0.1", 0), fallback=("127.0.0.1", 9))
            else:
                srv = TunnelServer(method, bytes(32), ("127.0.0.1", 0), tap=None, fallback=("127.0.0.1", 9))
            filt = srv.tls_replay
            assert filt.check_and_add(b"first hello of the filter", NOW)
            first = NOW + arrival
            h = hello(seed=arrival, key=auth_key(bytes(32)), now=first + skew)
            assert FakeTlsServer(auth_key(bytes(32)), filt, random.Random()).feed(h, first)[0] == ACCEPT
            for later in range(1, 2 * MAX_TIME_DIFF_S + 2):
                again = FakeTlsServer(auth_key(bytes(32)), filt, random.Random())
                assert again.feed(h, first + later)[0] == FALLBACK, (arrival, skew, later)


def test_a_filter_that_forgets_too_early_is_refused():
    with pytest.raises(ValueError, match="remember"):
        FakeTlsServer(KEY, ReplayFilter(window_s=MAX_TIME_DIFF_S), random.Random())


def test_client_rejects_an_unauthenticated_server():
    c = FakeTlsClient(KEY, "www.example.com", random.Random(1), NOW)
    other = FakeTlsServer(auth_key(b"x"), replay_filter(), random.Random())
    other.decision = ACCEPT
    from x0node.transport.faketls import build_server_flight

    flight = build_server_flight(auth_key(b"x"), parse_client_hello(c.hello()), random.Random())
    with pytest.raises(DecodeError, match="authenticate"):
        c.feed(flight)


def test_records_bounded_and_checked():
    r = RecordReader()
    wire = b"".join(wrap_records(b"a" * 40000))
    assert len(wrap_records(b"a" * 40000)) == 6
    got = []
    for i in range(0, len(wire), 999):
        got += r.feed(wire[i : i + 999])
    assert b"".join(p for _, p in got) == b"a" * 40000
    with pytest.raises(DecodeError):
        RecordReader().feed(b"\x17\x03\x03\xff\xff")  # longer than TLS allows
    with pytest.raises(DecodeError):
        RecordReader().feed(b"\x42\x03\x03\x00\x01x")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_server_decision_never_raises_on_random_input(data):
    s = server()
    decision, inner = s.feed(data, NOW)
    assert decision in (NEED_MORE, FALLBACK) and inner == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_parsers_only_raise_decode_error(data):
    for fn in (parse_client_hello, RecordReader().feed):
        try:
            fn(data)
        except DecodeError:
            pass
