"""Domain fronting request/response handling (sans-I/O parts)."""

from __future__ import annotations

import pytest

from x0node.transport.errors import DecodeError
from x0node.transport.fronting import MAX_RESPONSE_BYTES, build_request, parse_response


def test_request_names_inner_host_only():
    req = build_request("hidden.example", "/b.json")
    assert req.startswith(b"GET /b.json HTTP/1.1\r\nHost: hidden.example\r\n")
    with pytest.raises(ValueError):
        build_request("a\r\nX: y", "/")


def test_parse_response():
    r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef")
    assert (r.status, r.body, r.headers["x-a"]) == (200, b"abc", "b")
    for bad in (b"garbage", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                b"HTTP/1.1 200 OK\r\nContent-Length: " + str(MAX_RESPONSE_BYTES + 1).encode() + b"\r\n\r\n"):
        with pytest.raises(DecodeError):
            parse_response(bad)
