"""The mesh name service's DNS responder (x0node/coord/dns.py) over real loopback sockets, UDP and TCP,
in front of a quorum KV stand-in: answers, refusals and every bound of the TCP side (RFC 7766)."""

from __future__ import annotations

import asyncio
import json
import socket

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from x0node.coord import dns as coord_dns

RECORDS = {"dns/printer": json.dumps({"aaaa": ["fd00::42"], "a": ["10.64.9.9"]}).encode()}


class Kv:
    """The coordination service's kv_get as the responder calls it (a quorum read)."""

    def __init__(self) -> None:
        self.gets: list[str] = []

    async def kv_get(self, key: str) -> dict:
        self.gets.append(key)
        if key in RECORDS:
            return {"ok": True, "found": True, "value": RECORDS[key]}
        return {"ok": True, "found": False}


def _free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    while True:
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            try:
                u.bind(("127.0.0.1", t.getsockname()[1]))
            except OSError:
                continue
            return t.getsockname()[1]


@pytest.fixture
async def responder():
    r = coord_dns.DnsResponder(Kv(), "mesh.")
    port = _free_port()
    await r.start([("127.0.0.1", port)])
    yield r, port
    r.close()


def _framed(q: dns.message.Message) -> bytes:
    wire = q.to_wire()
    return len(wire).to_bytes(2, "big") + wire


async def _read_framed(reader: asyncio.StreamReader) -> dns.message.Message:
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
    return dns.message.from_wire(await asyncio.wait_for(reader.readexactly(size), 5))


async def test_answers_over_udp_and_tcp(responder):
    r, port = responder
    q = dns.message.make_query("printer.mesh.", "AAAA")
    for send in (dns.asyncquery.udp, dns.asyncquery.tcp):
        a = await send(q, "127.0.0.1", port=port, timeout=5)
        assert a.rcode() == dns.rcode.NOERROR and [str(x) for x in a.answer[0]] == ["fd00::42"], send
    a = await dns.asyncquery.tcp(dns.message.make_query("nobody.mesh.", "A"), "127.0.0.1", port=port, timeout=5)
    assert a.rcode() == dns.rcode.NXDOMAIN
    a = await dns.asyncquery.tcp(dns.message.make_query("example.com.", "A"), "127.0.0.1", port=port, timeout=5)
    assert a.rcode() == dns.rcode.REFUSED
    assert r.counts == {"answered": 2, "nxdomain": 1, "refused": 1}
    assert r.svc.gets == ["dns/printer", "dns/printer", "dns/nobody"]


async def test_tcp_answers_pipelined_queries_in_order(responder):
    _, port = responder
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    qs = [dns.message.make_query(n, t) for n, t in (("printer.mesh.", "A"), ("nobody.mesh.", "A"),
                                                   ("printer.mesh.", "AAAA"))]
    writer.write(b"".join(_framed(q) for q in qs))
    answers = [await _read_framed(reader) for _ in qs]
    writer.close()
    assert [a.id for a in answers] == [q.id for q in qs]
    assert [str(x) for x in answers[0].answer[0]] == ["10.64.9.9"] and answers[1].rcode() == dns.rcode.NXDOMAIN


async def test_tcp_junk_is_answered_formerr_and_oversize_closes_the_connection(responder):
    r, port = responder
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    junk = b"\x12\x34" + b"\x01\x00" + b"\xff" * 20
    writer.write(len(junk).to_bytes(2, "big") + junk)
    a = await asyncio.wait_for(reader.readexactly(2 + 12), 5)
    assert a[2:4] == b"\x12\x34" and a[5] & 0x0F == dns.rcode.FORMERR
    writer.write((coord_dns.QUERY_MAX_BYTES + 1).to_bytes(2, "big"))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without reading the body
    writer.close()
    assert r.counts == {"formerr": 1, "oversize": 1}


async def test_tcp_connections_are_capped_and_idle_ones_closed(responder, monkeypatch):
    r, port = responder
    monkeypatch.setattr(coord_dns, "TCP_IDLE_S", 0.3)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(coord_dns.MAX_TCP_CLIENTS + 1)]
    # every connection ends: the one over the cap at once, the others after the idle time
    for reader, _ in conns:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    for _, writer in conns:
        writer.close()
    assert r.counts == {"tcp_busy": 1}
    assert not r.tcp_clients
