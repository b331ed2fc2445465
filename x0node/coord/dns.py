"""The mesh name service's DNS face: a small authoritative responder for the mesh zone on the LAN side.

Rules and invariants:
- Answers A and AAAA queries for `<name>.<zone>` from the quorum KV key `dns/<name>` (a quorum read,
  so every node answers the same for a name written with a quorum); NXDOMAIN when the key is absent
  or deleted, NOERROR with no answer for other types of a known name, REFUSED outside the zone (it is
  not a recursive resolver), FORMERR for anything dnspython cannot parse, SERVFAIL when no quorum
  answered within LOOKUP_TIMEOUT_S.
- UDP and TCP on every listen address (RFC 7766 section 5: a DNS server must answer over TCP too). TCP
  messages carry a two-byte length (RFC 1035 section 4.2.2); a connection is answered in order, one
  query at a time, and closed after TCP_IDLE_S without a query (RFC 7766 section 6.2.3); at most
  MAX_TCP_CLIENTS connections, more are closed at once.
- Bounded: queries longer than QUERY_MAX_BYTES are dropped (a TCP connection sending one is closed); at
  most MAX_INFLIGHT lookups at a time over both transports (more are answered SERVFAIL at once); answers
  carry TTL_S so clients cache briefly.
- Parsing and building messages is dnspython's (RFC 1035 wire format); this module only maps names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger("x0node.coord.dns")

QUERY_MAX_BYTES = 512
MAX_INFLIGHT = 64
LOOKUP_TIMEOUT_S = 2.0
TTL_S = 30
MAX_TCP_CLIENTS = 16
TCP_IDLE_S = 10.0


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: DnsResponder) -> None:
        self.owner = owner
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.on_query(self.transport, data, addr)


class DnsResponder:
    def __init__(self, svc: Any, zone: str) -> None:
        self.svc = svc
        self.zone = dns.name.from_text(zone)
        self.transports: list[Any] = []
        self.servers: list[asyncio.Server] = []
        self.tcp_clients: set[asyncio.Task[None]] = set()
        self.inflight = 0
        self.counts: dict[str, int] = {}

    async def start(self, listen: list[tuple[str, int]]) -> None:
        loop = asyncio.get_running_loop()
        for host, port in listen:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            tr, _ = await loop.create_datagram_endpoint(lambda: _Proto(self), local_addr=(host, port), family=fam)
            self.transports.append(tr)
            self.servers.append(await asyncio.start_server(self._tcp_client, host, port, family=fam,
                                                            reuse_address=True))

    def close(self) -> None:
        for tr in self.transports:
            tr.close()
        for srv in self.servers:
            srv.close()
        for task in list(self.tcp_clients):
            task.cancel()

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _triage(self, data: bytes) -> tuple[bytes | None, dns.message.Message | None]:
        """(an answer to send at once, or a query to look up); (None, None) drops the datagram."""
        if len(data) > QUERY_MAX_BYTES:
            self._count("oversize")
            return None, None
        try:
            q = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            self._count("formerr")
            if len(data) >= 12:
                # echo the id with FORMERR (RFC 1035 4.1.1) without trusting anything else
                return data[:2] + bytes([0x80 | (data[2] & 0x78), dns.rcode.FORMERR]) + b"\x00" * 8, None
            return None, None
        if q.flags & dns.flags.QR or len(q.question) != 1:
            self._count("formerr")
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.FORMERR)
            return r.to_wire(), None
        if self.inflight >= MAX_INFLIGHT:
            self._count("busy")
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire(), None
        return None, q

    def on_query(self, transport: Any, data: bytes, addr: Any) -> None:
        reply, q = self._triage(data)
        if reply is not None:
            transport.sendto(reply, addr)
        if q is not None:
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._answer(transport, q, addr))

    async def _answer(self, transport: Any, q: dns.message.Message, addr: Any) -> None:
        try:
            r = await self.answer(q)
            transport.sendto(r.to_wire(max_size=QUERY_MAX_BYTES), addr)
        except Exception:  # noqa: BLE001 - one bad query never stops the responder
            log.exception("dns answer failed")
        finally:
            self.inflight -= 1

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self.tcp_clients) >= MAX_TCP_CLIENTS or task is None:
            self._count("tcp_busy")
            writer.close()
            return
        self.tcp_clients.add(task)
        try:
            while True:
                try:
                    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_S), "big")
                    if size > QUERY_MAX_BYTES:
                        self._count("oversize")
                        return
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_S)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                reply, q = self._triage(data)
                if q is not None:
                    self.inflight += 1
                    try:
                        reply = (await self.answer(q)).to_wire()
                    finally:
                        self.inflight -= 1
                if reply is None:
                    return  # oversize or unparsable without an id: the stream cannot be trusted further
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except Exception:  # noqa: BLE001 - one bad connection never stops the responder
            log.exception("dns tcp connection failed")
        finally:
            self.tcp_clients.discard(task)
            writer.close()

    async def answer(self, q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.flags &= ~dns.flags.RA
        question = q.question[0]
        qname = question.name
        if not qname.is_subdomain(self.zone) or qname == self.zone or question.rdclass != dns.rdataclass.IN:
            self._count("refused")
            r.set_rcode(dns.rcode.REFUSED)
            return r
        r.flags |= dns.flags.AA
        label = qname.relativize(self.zone).to_text().lower()
        try:
            res = await asyncio.wait_for(self.svc.kv_get(f"dns/{label}"), LOOKUP_TIMEOUT_S)
        except (TimeoutError, ValueError):
            res = {"ok": False}
        if not res.get("ok"):
            self._count("servfail")
            r.set_rcode(dns.rcode.SERVFAIL)
            return r
        if not res.get("found"):
            self._count("nxdomain")
            r.set_rcode(dns.rcode.NXDOMAIN)
            return r
        try:
            doc = json.loads(res["value"])
        except ValueError:
            doc = {}
        fam = {dns.rdatatype.A: "a", dns.rdatatype.AAAA: "aaaa"}.get(question.rdtype)
        addrs = doc.get(fam, []) if fam and isinstance(doc, dict) else []
        if addrs:
            rrset = dns.rrset.from_text_list(qname, TTL_S, dns.rdataclass.IN, question.rdtype, [str(a) for a in addrs])
            r.answer.append(rrset)
        self._count("answered")
        return r
