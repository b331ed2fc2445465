"""Layer-2 tunnel over one obfuscated TCP stream: a TAP interface at each site, its frames carried
inside Shadowsocks 2022 (optionally inside FakeTLS, optionally shaped). The x0node daemon then
uses the TAP interface as an ordinary mesh interface (IPv6 link-local multicast hellos work).

Stack, inside out: Ethernet frame -> frames.encode_frame -> shaping unit -> SS2022 chunk ->
[FakeTLS record] -> TCP. The receiver always strips shaping units, so each side picks its own
profile ("none" = no padding, no delay).

Rules:
- The client dials and redials (exponential backoff RECONNECT_MIN_S..RECONNECT_MAX_S); the server
  keeps one active link, a newly authenticated connection replaces the old one.
- The SS2022 request targets TUNNEL_TARGET. Until a connection's header authenticated for that
  target it is under the server's `probe.ProbeGuard`, the reaction the proxy server shares: too few
  bytes, random bytes, a replay, a modified replay or another target all get "read, say nothing, close
  on idle or when the client closes", and unauthenticated connections are capped per source and in
  total. FakeTLS failures are relayed to the fallback site, still under the guard.
- Keepalive frames every KEEPALIVE_S; a link with nothing received for DEAD_AFTER_S is closed.
- Frames arriving while no link is up are dropped and counted, never queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter

from x0node.transport.address import Address
from x0node.transport.crypto import Method
from x0node.transport.errors import RemoteError
from x0node.transport.faketls import (
    ACCEPT,
    FALLBACK,
    FakeTlsClient,
    FakeTlsServer,
    auth_key,
    replay_filter,
    wrap_records,
)
from x0node.transport.frames import KEEPALIVE, FrameDecoder, encode_frame
from x0node.transport.probe import ProbeGuard
from x0node.transport.replay import ReplayFilter
from x0node.transport.session import ClientSession, ServerSession
from x0node.transport.shaping import DEFAULT_BUDGET_BYTES_PER_S, PROFILES, Deshaper, Profile, Shaper
from x0node.transport.tap import TAP_MTU_DEFAULT, TAP_READ_BYTES, configure, open_tap

log = logging.getLogger(__name__)

TUNNEL_TARGET = Address("x0-tunnel.invalid", 1)
KEEPALIVE_S = 10.0
DEAD_AFTER_S = 35.0
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0
FALLBACK_CONNECT_TIMEOUT_S = 10.0
READ_BYTES = 256 * 1024
TAP_BURST_FRAMES = 64
NO_SHAPING = Profile("none", (), 0.0, False)


def get_profile(name: str) -> Profile:
    if name == "none":
        return NO_SHAPING
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown shaping profile {name!r}; choose none, {', '.join(PROFILES)}") from None


class TapPort:
    def __init__(self, name: str, mtu: int = TAP_MTU_DEFAULT, addresses: tuple[str, ...] = ()) -> None:
        self.name = name
        self.mtu = mtu
        self.addresses = addresses
        self.fd = open_tap(name)
        self.stats: Counter = Counter()

    async def start(self, on_frame) -> None:
        await asyncio.to_thread(configure, self.name, self.mtu, self.addresses)
        asyncio.get_running_loop().add_reader(self.fd, self._readable, on_frame)

    def _readable(self, on_frame) -> None:
        for _ in range(TAP_BURST_FRAMES):
            try:
                frame = os.read(self.fd, TAP_READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                self.stats["tap_read_error"] += 1
                return
            self.stats["frames_out"] += 1
            on_frame(frame)

    def write(self, frame: bytes) -> None:
        try:
            os.write(self.fd, frame)
            self.stats["frames_in"] += 1
        except OSError:
            self.stats["tap_write_error"] += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


class Link:
    """One authenticated stream: shapes and encrypts frames out, decrypts and delivers frames in."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        seal,
        open_,
        tap: TapPort,
        profile: Profile,
        rng,
        stats: Counter,
        budget_bytes_per_s: float = DEFAULT_BUDGET_BYTES_PER_S,
    ) -> None:
        self.writer = writer
        self.seal = seal  # bytes -> list[bytes] wire
        self.open = open_  # bytes -> bytes plaintext (raises RemoteError)
        self.tap = tap
        self.stats = stats
        self.shaper = Shaper(profile, rng, budget_bytes_per_s, now=time.monotonic()) if profile.sizes else None
        self.deshaper = Deshaper()
        self.frames = FrameDecoder()
        self.last_rx = time.monotonic()
        self._wake = asyncio.Event()
        self.closed = False

    def send(self, payload: bytes) -> None:
        if self.closed:
            return
        if self.shaper is None:
            # unit with no padding: data_len | 0 | data
            self.writer.writelines(self.seal(len(payload).to_bytes(2, "big") + b"\x00\x00" + payload))
            return
        now = time.monotonic()
        self.shaper.push(payload, now)
        if self.shaper.profile.slot_s == 0:
            self._flush(now)
        else:
            self._wake.set()

    def _flush(self, now: float) -> None:
        units = self.shaper.pull(now)
        if units:
            self.writer.writelines(self.seal(b"".join(units)))

    async def _shaping_timer(self) -> None:
        while not self.closed:
            deadline = self.shaper.next_deadline()
            now = time.monotonic()
            if deadline is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if deadline > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), deadline - now)
                continue
            self._flush(now)

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(KEEPALIVE_S * random.uniform(0.75, 1.25))  # keepalive jitter, not a secret # nosec B311
            if time.monotonic() - self.last_rx > DEAD_AFTER_S:
                self.stats["dead_link"] += 1
                self.close()
                return
            self.send(KEEPALIVE)

    def deliver(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        plain = self.open(data)
        if not plain:
            return
        for frame in self.frames.feed(self.deshaper.feed(plain)):
            self.tap.write(frame)

    async def run(self, reader: asyncio.StreamReader, first: bytes = b"") -> None:
        tasks = [asyncio.ensure_future(self._keepalive())]
        if self.shaper is not None:
            tasks.append(asyncio.ensure_future(self._shaping_timer()))
        try:
            if first:
                self.deliver(first)
            while not self.closed:
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                self.deliver(data)
        except RemoteError as exc:
            self.stats["link_" + exc.reason] += 1
        except (ConnectionError, OSError):
            self.stats["link_io_error"] += 1
        finally:
            for t in tasks:
                t.cancel()
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake.set()
            self.writer.close()


class _StreamConn:
    """An accepted stream as the probe guard sees it: closing it closes both ends of a fallback relay."""

    __slots__ = ("writer", "far")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.far: asyncio.StreamWriter | None = None

    def close(self) -> None:
        self.writer.close()
        if self.far is not None:
            self.far.close()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TunnelServer:
    def __init__(
        self,
        method: Method,
        key: bytes,
        listen: tuple[str, int],
        tap: TapPort,
        profile: Profile = NO_SHAPING,
        fallback: tuple[str, int] | None = None,
        rng=None,
        probe_idle_timeout_s: float | None = None,
    ) -> None:
        self.method, self.key, self.listen, self.tap, self.profile = method, key, listen, tap, profile
        self.fallback = fallback
        self.rng = rng or secrets.SystemRandom()
        self.replay = ReplayFilter()
        self.tls_replay = replay_filter()
        self.stats: Counter = Counter()
        self.probes = ProbeGuard(self.stats, probe_idle_timeout_s)
        self.link: Link | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> tuple[str, int]:
        await self.tap.start(self._from_tap)
        self._server = await asyncio.start_server(self._handle, self.listen[0], self.listen[1], reuse_address=True)
        return self._server.sockets[0].getsockname()[:2]

    def _from_tap(self, frame: bytes) -> None:
        if self.link is None or self.link.closed:
            self.stats["frame_no_link"] += 1
            return
        self.link.send(encode_frame(frame))

    async def _drain(self, reader: asyncio.StreamReader, conn: _StreamConn) -> None:
        """The probe reaction: read and discard until the client closes or the guard closes us."""
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(READ_BYTES):
                self.probes.seen(conn)
        conn.close()

    async def _raw_relay(self, reader: asyncio.StreamReader, conn: _StreamConn, first: bytes) -> None:
        try:
            fr, fw = await asyncio.wait_for(asyncio.open_connection(*self.fallback), FALLBACK_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            conn.close()
            return
        conn.far = fw
        fw.write(first)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await r.read(READ_BYTES):
                    self.probes.seen(conn)  # a fallback relay is idle only when both sides are
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(OSError):
                w.write_eof()

        await asyncio.gather(pipe(reader, fw), pipe(fr, conn.writer))
        conn.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        conn = _StreamConn(writer)
        self.probes.admit(conn, writer.get_extra_info("peername"))
        try:
            await self._serve(reader, conn)
        finally:
            self.probes.closed(conn)

    async def _serve(self, reader: asyncio.StreamReader, conn: _StreamConn) -> None:
        writer = conn.writer
        tls = FakeTlsServer(auth_key(self.key), self.tls_replay, self.rng) if self.fallback else None
        ss = ServerSession(self.method, self.key, self.replay, self.rng)
        first: list[bytes] = []
        try:
            while ss.target is None:
                data = await reader.read(READ_BYTES)
                if not data:  # the client closed, or the guard closed an idle probe
                    conn.close()
                    return
                self.probes.seen(conn)
                if tls is not None:
                    decision, inner = tls.feed(data, time.time())
                    if decision == FALLBACK:
                        self.stats["faketls_" + tls.reason] += 1
                        await self._raw_relay(reader, conn, bytes(tls.buffered))
                        return
                    if decision != ACCEPT:
                        continue
                    if tls.flight:
                        writer.write(tls.flight)
                        tls.flight = b""
                    data = b"".join(inner)
                first += ss.feed(data, time.time())
            if ss.target != TUNNEL_TARGET:
                raise RemoteError("session for another target", reason="wrong_target")
        except RemoteError as exc:
            self.stats[exc.reason] += 1
            await self._drain(reader, conn)
            return
        except (ConnectionError, OSError):
            self.stats["probe_io_error"] += 1
            conn.close()
            return
        self.probes.authenticated(conn)

        def seal(data: bytes) -> list[bytes]:
            sealed = ss.encrypt(data, time.time())
            return wrap_records(b"".join(sealed)) if tls is not None else sealed

        def open_(data: bytes) -> bytes:
            if tls is not None:
                data = b"".join(tls.unwrap(data))
            return b"".join(ss.feed(data, time.time()))

        if self.link is not None:
            self.link.close()
        link = self.link = Link(writer, seal, open_, self.tap, self.profile, self.rng, self.stats)
        self.stats["links"] += 1
        log.info("tunnel link up from %s", writer.get_extra_info("peername"))
        # bytes that came with the header are plaintext already: hand them to the decoders
        if first:
            link.last_rx = time.monotonic()
            for frame in link.frames.feed(link.deshaper.feed(b"".join(first))):
                self.tap.write(frame)
        await link.run(reader)
        log.info("tunnel link down")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.probes.stop()
        if self.link is not None:
            self.link.close()
        self.tap.close()


class TunnelClient:
    def __init__(
        self,
        method: Method,
        key: bytes,
        server: tuple[str, int],
        tap: TapPort,
        profile: Profile = NO_SHAPING,
        sni: str | None = None,
        rng=None,
    ) -> None:
        self.method, self.key, self.server, self.tap, self.profile, self.sni = method, key, server, tap, profile, sni
        self.rng = rng or secrets.SystemRandom()
        self.stats: Counter = Counter()
        self.link: Link | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.tap.start(self._from_tap)
        self._task = asyncio.ensure_future(self._dial_forever())

    def _from_tap(self, frame: bytes) -> None:
        if self.link is None or self.link.closed:
            self.stats["frame_no_link"] += 1
            return
        self.link.send(encode_frame(frame))

    async def _dial_forever(self) -> None:
        backoff = RECONNECT_MIN_S
        while True:
            started = time.monotonic()
            try:
                await self._dial_once()
            except (OSError, TimeoutError, RemoteError) as exc:
                self.stats["dial_" + getattr(exc, "reason", type(exc).__name__)] += 1
                log.info("tunnel dial failed: %s", exc)
            if time.monotonic() - started > 30:
                backoff = RECONNECT_MIN_S
            await asyncio.sleep(backoff * random.uniform(0.75, 1.25))  # redial backoff jitter, not a secret # nosec B311
            backoff = min(RECONNECT_MAX_S, backoff * 2)

    async def _dial_once(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.server), 10)
        _nodelay(writer)
        ss = ClientSession(self.method, self.key, TUNNEL_TARGET, self.rng)
        first = b"".join(ss.first_write(b"", time.time()))
        tls = FakeTlsClient(auth_key(self.key), self.sni, self.rng, time.time()) if self.sni else None
        if tls is not None:
            writer.write(tls.hello())
            tls.wrap(first)
        else:
            writer.write(first)

        def seal(data: bytes) -> list[bytes]:
            sealed = ss.encrypt(data)
            return tls.wrap(b"".join(sealed)) if tls is not None else sealed

        def open_(data: bytes) -> bytes:
            if tls is not None:
                inner, send = tls.feed(data)
                if send:
                    writer.writelines(send)
                data = b"".join(inner)
            return b"".join(ss.decrypt(data, time.time())) if data else b""

        self.link = Link(writer, seal, open_, self.tap, self.profile, self.rng, self.stats)
        self.stats["links"] += 1
        log.info("tunnel link up to %s:%s", *self.server)
        self.link.send(KEEPALIVE)  # lets the server answer at once (SIP022 response header)
        await self.link.run(reader)
        log.info("tunnel link down")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.link is not None:
            self.link.close()
        self.tap.close()
