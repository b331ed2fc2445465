"""Domain fronting as a bootstrap channel.

The TLS connection names an innocuous front domain in its SNI (what a censor sees); the HTTP
request inside names the real (hidden) host in `Host:`; a CDN edge that routes on Host forwards it.
Used once, to fetch a small bootstrap blob (current server addresses, FakeTLS SNI, keys), never for
the bulk link.

Honest status (docs/transport.md): the large CDNs stopped routing mismatched SNI/Host (Google and
Amazon CloudFront in 2018, Azure in 2022); fronting works only on providers that still forward by
Host, and ECH is its successor.

Request building and response parsing are sans-I/O and bounded (MAX_RESPONSE_BYTES, header limit);
`fetch` is the thin blocking adapter (ssl + socket).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from x0node.transport.errors import DecodeError

MAX_RESPONSE_BYTES = 256 * 1024
MAX_HEADER_BYTES = 16 * 1024
FETCH_TIMEOUT_S = 15.0


def build_request(inner_host: str, path: str, user_agent: str = "Mozilla/5.0") -> bytes:
    for field in (inner_host, path, user_agent):
        if any(c in field for c in "\r\n\0"):
            raise ValueError("control characters in a request field")
    if not path.startswith("/"):
        raise ValueError("path must start with /")
    return (
        f"GET {path} HTTP/1.1\r\nHost: {inner_host}\r\nUser-Agent: {user_agent}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(data: bytes) -> Response:
    """Parse a complete (connection-close) HTTP/1.1 response; bounded, Content-Length honoured."""
    if len(data) > MAX_RESPONSE_BYTES + MAX_HEADER_BYTES:
        raise DecodeError("response too large", reason="too_large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or len(head) > MAX_HEADER_BYTES:
        raise DecodeError("no complete header", reason="bad_http")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise DecodeError("bad status line", reason="bad_http")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, colon, v = line.partition(":")
        if not colon:
            raise DecodeError("bad header line", reason="bad_http")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError:
            raise DecodeError("bad content-length", reason="bad_http") from None
        if n < 0 or n > MAX_RESPONSE_BYTES or len(body) < n:
            raise DecodeError("body length mismatch", reason="bad_http")
        body = body[:n]
    return Response(int(parts[1]), headers, body)


def fetch(
    connect: tuple[str, int],
    front_sni: str,
    inner_host: str,
    path: str = "/",
    cafile: str | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> Response:
    """Fetch `path` from `inner_host` through the edge at `connect`, showing only `front_sni`."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(connect, timeout=timeout_s) as raw:
        with ctx.wrap_socket(raw, server_hostname=front_sni) as tls:
            tls.sendall(build_request(inner_host, path))
            buf = bytearray()
            while chunk := tls.recv(65536):
                buf += chunk
                if len(buf) > MAX_RESPONSE_BYTES + MAX_HEADER_BYTES:
                    raise DecodeError("response too large", reason="too_large")
    return parse_response(bytes(buf))
