"""FakeTLS against real parts: our ss-local/ss-server wrapped in FakeTLS carry data; a real TLS
client and random-byte probers are relayed to a real fallback TLS site; the bytes on the wire are
dissected as valid TLS by tshark."""

from __future__ import annotations

import base64
import os
import random
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from tests.integration.loopback_server import serving
from tests.integration.processes import wait_port
from tests.integration.selfsigned import write_self_signed
from tests.integration.test_transport_interop import (  # noqa: F401  (fixtures shared with the interop tests)
    echo,
    free_port,
    procs,
    tcp_roundtrip,
)
from x0node.transport.address import Address
from x0node.transport.crypto import get_method, master_key
from x0node.transport.faketls import FakeTlsClient, auth_key
from x0node.transport.session import ClientSession

METHOD = "2022-blake3-chacha20-poly1305"
PSK = base64.b64encode(bytes(range(100, 132))).decode()
SNI = "www.example.com"
FALLBACK_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nfallback"


@pytest.fixture
def fallback_site(tmp_path):
    """A real TLS server (self-signed, CN=www.example.com) answering one fixed HTTP response."""
    cert_path, key_path = write_self_signed(tmp_path, SNI, serial=1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    seen = {"raw": 0}

    def handle(c: socket.socket) -> None:
        c.settimeout(5)
        try:
            first = c.recv(1, socket.MSG_PEEK)
            if first != b"\x16":  # not TLS: answer like a web server would to junk
                seen["raw"] += 1
                c.recv(65536)
                c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                return
            with ctx.wrap_socket(c, server_side=True) as t:
                t.recv(4096)
                t.sendall(FALLBACK_BODY)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    with serving(handle, backlog=16) as port:
        yield {"port": port, "cert": cert_path, "seen": seen}


def start_pair(procs, fallback_port: int) -> tuple[int, int]:  # noqa: F811
    sport, lport = free_port(), free_port()
    procs.ours("ss-server", "--listen", f"127.0.0.1:{sport}", "--password", PSK, "--method", METHOD,
               "--faketls-fallback", f"127.0.0.1:{fallback_port}", "--probe-timeout", "2")
    procs.ours("ss-local", "--server", f"127.0.0.1:{sport}", "--listen", f"127.0.0.1:{lport}",
               "--password", PSK, "--method", METHOD, "--faketls-sni", SNI)
    wait_port(sport)
    wait_port(lport)
    return sport, lport


def test_faketls_carries_data(procs, echo, fallback_site):  # noqa: F811
    _, lport = start_pair(procs, fallback_site["port"])
    tcp_roundtrip(lport, echo, size=200_000)


def test_real_tls_client_meets_fallback_site(procs, fallback_site):  # noqa: F811
    sport, _ = start_pair(procs, fallback_site["port"])
    ctx = ssl.create_default_context(cafile=str(fallback_site["cert"]))
    with socket.create_connection(("127.0.0.1", sport), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname=SNI) as t:
            # the certificate verified against the real site's: the prober got the real site
            t.sendall(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
            assert t.recv(4096) == FALLBACK_BODY


def test_random_and_replayed_hellos_go_to_fallback(procs, fallback_site):  # noqa: F811
    sport, _ = start_pair(procs, fallback_site["port"])
    with socket.create_connection(("127.0.0.1", sport), timeout=20) as s:
        s.sendall(os.urandom(300))
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert fallback_site["seen"]["raw"] == 1
    # a genuine hello is answered by us; the same hello replayed is relayed to the real site
    hello = FakeTlsClient(auth_key(master_key(get_method(METHOD), PSK)), SNI, random.Random(), time.time()).hello()
    with socket.create_connection(("127.0.0.1", sport), timeout=20) as s:
        s.sendall(hello)
        first = s.recv(5)
        assert first[:1] == b"\x16"
    with socket.create_connection(("127.0.0.1", sport), timeout=20) as s:
        s.sendall(hello)
        reply = s.recv(65536)
        # the real site's OpenSSL answers the (replayed) hello; it cannot be our ServerHello
        assert reply[:1] in (b"\x16", b"\x15")


def _transcript(sport: int, echo_port: int) -> tuple[bytes, bytes]:
    """Run one FakeTLS+SS2022 exchange by hand; return (client->server, server->client) bytes."""
    m = get_method(METHOD)
    key = master_key(m, PSK)
    rng = random.Random()
    tls = FakeTlsClient(auth_key(key), SNI, rng, time.time())
    ss = ClientSession(m, key, Address("127.0.0.1", echo_port), rng)
    up, down = bytearray(), bytearray()
    with socket.create_connection(("127.0.0.1", sport), timeout=20) as s:
        up += tls.hello()
        s.sendall(tls.hello())
        tls.wrap(b"".join(ss.first_write(b"hello faketls", time.time())))
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while b"".join(got) != b"hello faketls" and time.monotonic() < deadline:
            data = s.recv(65536)
            assert data
            down += data
            inner, send = tls.feed(data)
            for chunk in send:
                up += chunk
                s.sendall(chunk)
            if inner:
                got += ss.decrypt(b"".join(inner), time.time())
        assert b"".join(got) == b"hello faketls"
    return bytes(up), bytes(down)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_dissects_faketls_as_tls13(procs, echo, fallback_site, tmp_path):  # noqa: F811
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    sport, _ = start_pair(procs, fallback_site["port"])
    up, down = _transcript(sport, echo)
    c, sv = ("10.0.0.1", 40000), ("10.0.0.2", 443)
    pkts = []
    cseq, sseq = 1000, 5000

    def seg(src, dst, seq, ack, flags, payload=b""):
        return Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags) / payload

    pkts += [seg(c, sv, cseq, 0, "S"), seg(sv, c, sseq, cseq + 1, "SA"), seg(c, sv, cseq + 1, sseq + 1, "A")]
    cseq += 1
    sseq += 1
    hello_len = 5 + int.from_bytes(up[3:5], "big")
    for src, _dst, data in ((c, sv, up[:hello_len]), (sv, c, down), (c, sv, up[hello_len:])):
        for i in range(0, len(data), 1400):
            piece = data[i : i + 1400]
            if src == c:
                pkts.append(seg(c, sv, cseq, sseq, "PA", piece))
                cseq += len(piece)
            else:
                pkts.append(seg(sv, c, sseq, cseq, "PA", piece))
                sseq += len(piece)
    pcap = tmp_path / "faketls.pcap"
    wrpcap(str(pcap), pkts)
    fields = ["frame.number", "tls.record.content_type", "tls.handshake.type",
              "tls.handshake.extensions_server_name", "tls.handshake.extensions.supported_version",
              "tls.handshake.ja3", "_ws.malformed", "tls.record.opaque_type"]
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "tls.desegment_ssl_records:TRUE", "-Y", "tls", "-T", "fields",
         "-E", "separator=|", *sum((["-e", f] for f in fields), [])],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    text = out.replace("\n", " ")
    assert SNI in text, out
    assert "0x0304" in text, out  # supported_versions: TLS 1.3 offered and selected
    rows = [line.split("|") for line in out.strip().splitlines()]
    handshake_types = {t for r in rows for t in r[2].split(",") if t}
    assert {"1", "2"} <= handshake_types, out  # ClientHello and ServerHello
    assert any("23" in r[1] or "23" in r[7] for r in rows), out  # application_data records
    assert not any(r[6] for r in rows), f"tshark flagged malformed packets:\n{out}"
    verbose = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tls", "-V"], capture_output=True, text=True,
                             timeout=60).stdout
    assert "Malformed" not in verbose
    assert "TLSv1.3" in verbose
