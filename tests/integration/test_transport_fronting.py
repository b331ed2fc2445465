"""Domain fronting against a real TLS edge on loopback that routes by Host: the SNI on the wire
names the front, the request inside names the hidden host, the hidden host's blob comes back."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys

import pytest

from tests.integration.loopback_server import serving
from tests.integration.selfsigned import write_self_signed

FRONT = "cdn-front.example"
HIDDEN = "hidden-bootstrap.example"
BLOB = b'{"servers": ["192.0.2.10:443"], "sni": "www.example.com"}'


@pytest.fixture
def edge(tmp_path):
    cert_path, key_path = write_self_signed(tmp_path, FRONT, serial=7, ca=True)
    seen: dict[str, list] = {"sni": [], "host": []}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    ctx.sni_callback = lambda sslobj, server_name, _ctx: seen["sni"].append(server_name)

    def handle(c: socket.socket) -> None:
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                t.settimeout(5)
                req = b""
                while b"\r\n\r\n" not in req:
                    got = t.recv(4096)
                    if not got:
                        return
                    req += got
                host = next((line.split(b":", 1)[1].strip().decode() for line in req.split(b"\r\n")
                             if line.lower().startswith(b"host:")), "")
                seen["host"].append(host)
                if host == HIDDEN:  # the edge routes on Host, as fronting needs
                    t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BLOB) + BLOB)
                else:
                    t.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass

    with serving(handle) as port:
        yield {"port": port, "ca": str(cert_path), "seen": seen}


def front_fetch(edge, host: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "x0node", "transport", "front-fetch", "--connect", f"127.0.0.1:{edge['port']}",
         "--front-sni", FRONT, "--host", host, "--path", "/bootstrap.json", "--cafile", edge["ca"]],
        capture_output=True, timeout=30,
    )


def test_fronted_fetch_shows_front_and_reaches_hidden(edge):
    r = front_fetch(edge, HIDDEN)
    assert r.returncode == 0, r.stderr
    assert r.stdout == BLOB
    assert edge["seen"]["sni"] == [FRONT]  # what an on-path observer sees
    assert edge["seen"]["host"] == [HIDDEN]  # what only the edge sees


def test_edge_that_does_not_know_the_host_fails_visibly(edge):
    r = front_fetch(edge, "unknown.example")
    assert r.returncode == 1
    assert r.stdout == b""
