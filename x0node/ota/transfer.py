"""Moving manifests and chunks between nodes over HTTP on the mesh (adapter).

Server (TCP `OTA_TCP_PORT` on the mesh side; the firewall opens it on mesh ports only):
    GET /ota/v1/{id}/manifest        the signed manifest as received (JSON)
    GET /ota/v1/{id}/have            {"n": chunks, "bitmap": hex}: which chunks this node can serve
    GET /ota/v1/{id}/chunk/{i}       one verified chunk (hashed again before sending)
Nothing here changes state: a request only reads verified data, so the routes need no session (a
bundle is public firmware; integrity comes from the manifest's signatures and hashes, checked by the
receiver). Bounds: ids are 64 hex digits, at most CLIENTS_MAX requests in service at once (else 503),
every send paced by one TokenBucket (the node's OTA bandwidth share), sockets marked Lower Effort
(DSCP LE = 1, RFC 8622) so queues that honour it serve routing and user traffic first.

Client: `Client.manifest/have/chunk` with a deadline per request and a cap on the bytes read (the
manifest's chunk size), and `Client.uplink_range` for the one node that fetches from outside.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from x0node.ota.fetch import TokenBucket
from x0node.ota.manifest import MANIFEST_MAX_BYTES

CLIENTS_MAX = 8
SEND_BLOCK_BYTES = 64 * 1024
DSCP_LE_TCLASS = 1 << 2  # DSCP 1 (LE, RFC 8622) in the upper six bits of the traffic class
REQUEST_TIMEOUT_S = 60.0
SERVED_TO_MAX = 256
_ID = re.compile(r"^[0-9a-f]{64}$")


def mesh_url(addr: str, port: int, path: str) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}{path}"


class Server:
    """Serves staged bundles. `lookup(id)` returns the Staged bundle or None."""

    def __init__(self, lookup: Callable[[str], Any], rate_bytes_s: float) -> None:
        self.lookup = lookup
        self.bucket = TokenBucket(rate_bytes_s, max(SEND_BLOCK_BYTES * 4, rate_bytes_s / 4), time.monotonic())
        self.busy = 0
        self.counters = {"chunks_served": 0, "bytes_sent": 0, "refused_busy": 0, "not_found": 0}
        self.served_to: dict[str, int] = {}  # chunks per requesting node (its X-Node header; statistics only)
        self.runner: web.AppRunner | None = None

    def set_rate(self, rate_bytes_s: float) -> None:
        self.bucket = TokenBucket(rate_bytes_s, max(SEND_BLOCK_BYTES * 4, rate_bytes_s / 4), time.monotonic())

    def _staged(self, request: web.Request) -> Any:
        mid = request.match_info["id"]
        st = self.lookup(mid) if _ID.match(mid) else None
        if st is None:
            self.counters["not_found"] += 1
            raise web.HTTPNotFound(text="no such bundle here\n")
        return st

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._staged(request).manifest_bytes, content_type="application/json")

    async def have(self, request: web.Request) -> web.StreamResponse:
        st = self._staged(request)
        return web.json_response({"n": len(st.m.chunks), "bitmap": st.bitmap_hex()})

    async def chunk(self, request: web.Request) -> web.StreamResponse:
        st = self._staged(request)
        try:
            i = int(request.match_info["i"])
        except ValueError:
            raise web.HTTPBadRequest(text="chunk index must be an integer\n") from None
        if self.busy >= CLIENTS_MAX:
            self.counters["refused_busy"] += 1
            raise web.HTTPServiceUnavailable(text="busy\n", headers={"Retry-After": "2"})
        self.busy += 1
        try:
            data = await asyncio.to_thread(st.read, i) if 0 <= i < len(st.m.chunks) else None
            if data is None:
                self.counters["not_found"] += 1
                raise web.HTTPNotFound(text="chunk not here\n")
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(len(data))})
            await resp.prepare(request)
            view = memoryview(data)
            for off in range(0, len(data), SEND_BLOCK_BYTES):
                block = view[off:off + SEND_BLOCK_BYTES]
                wait = self.bucket.delay(len(block), time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
                await resp.write(bytes(block))
                self.counters["bytes_sent"] += len(block)
            await resp.write_eof()
            self.counters["chunks_served"] += 1
            who = request.headers.get("X-Node", "")[:16]
            if who and (who in self.served_to or len(self.served_to) < SERVED_TO_MAX):
                self.served_to[who] = self.served_to.get(who, 0) + 1
            return resp
        finally:
            self.busy -= 1

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024)
        app.router.add_get("/ota/v1/{id}/manifest", self.manifest)
        app.router.add_get("/ota/v1/{id}/have", self.have)
        app.router.add_get("/ota/v1/{id}/chunk/{i}", self.chunk)
        return app

    async def start(self, port: int, host: str = "::") -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, DSCP_LE_TCLASS)
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Client:
    def __init__(self, port: int, node: str = "", timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.headers = {"X-Node": node[:16]} if node else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self.session: aiohttp.ClientSession | None = None
        self.bytes_in = 0

    def _s(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False,
                                                 connector=aiohttp.TCPConnector(limit=16, force_close=False))
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _get(self, url: str, limit: int, headers: dict[str, str] | None = None) -> bytes:
        async with self._s().get(url, headers={**self.headers, **(headers or {})}) as r:
            if r.status not in (200, 206):
                raise aiohttp.ClientResponseError(r.request_info, (), status=r.status, message=r.reason or "")
            declared = r.content_length
            if declared is not None and declared > limit:
                raise ValueError(f"answer of {declared} bytes, at most {limit} expected")
            out = bytearray()
            async for block in r.content.iter_chunked(SEND_BLOCK_BYTES):
                out += block
                self.bytes_in += len(block)
                if len(out) > limit:
                    raise ValueError(f"answer longer than {limit} bytes")
            return bytes(out)

    async def manifest(self, addr: str, mid: str) -> bytes:
        return await self._get(mesh_url(addr, self.port, f"/ota/v1/{mid}/manifest"), MANIFEST_MAX_BYTES)

    async def have(self, addr: str, mid: str, n: int) -> frozenset[int]:
        import json

        doc = json.loads(await self._get(mesh_url(addr, self.port, f"/ota/v1/{mid}/have"), 4096 + n // 4))
        bits = bytes.fromhex(doc["bitmap"]) if isinstance(doc, dict) and isinstance(doc.get("bitmap"), str) else b""
        return frozenset(i for i in range(min(n, len(bits) * 8)) if bits[i // 8] >> (i % 8) & 1)

    async def chunk(self, addr: str, mid: str, index: int, size: int) -> bytes:
        return await self._get(mesh_url(addr, self.port, f"/ota/v1/{mid}/chunk/{index}"), size)

    async def uplink_manifest(self, url: str) -> bytes:
        return await self._get(url, MANIFEST_MAX_BYTES)

    async def uplink_range(self, url: str, offset: int, size: int) -> bytes:
        return await self._get(url, size, {"Range": f"bytes={offset}-{offset + size - 1}"})
