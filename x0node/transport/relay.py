"""asyncio adapters: Shadowsocks server and SOCKS5 local client over TCP and UDP.

The protocol work happens in the sans-I/O codecs (`session`, `udp_packet`, `socks5`, `faketls`);
this module only moves bytes. Rules:
- Hot path: asyncio Protocols (no StreamReader copies), whole reads handed to the codec at once,
  `writelines` of the sealed chunks, reading paused while the other side's write buffer is above
  WRITE_HIGH_BYTES (back-pressure, bounded memory).
- Probe resistance: until its header authenticated, a connection is under the server's
  `probe.ProbeGuard` (the reaction the tunnel server shares): any RemoteError (random bytes, a
  replayed or modified salt, a wrong key, a truncated header) gets the same reaction as a client that
  sent too little: the server keeps reading and discarding, sends nothing, and closes (FIN) only when
  the client closes or after the probe idle timeout; unauthenticated connections are capped per
  source and in total. A FakeTLS fallback relay stays under the guard. A fault after the header
  closes the connection (fail closed).
- Every fault is counted by reason in `stats`; nothing from the network raises out of a callback.
"""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from x0node.transport import socks5
from x0node.transport.address import Address
from x0node.transport.crypto import Method
from x0node.transport.errors import DecodeError, RemoteError, ReplayError
from x0node.transport.faketls import (
    FALLBACK,
    NEED_MORE,
    FakeTlsClient,
    FakeTlsServer,
    auth_key,
    replay_filter,
    wrap_records,
)
from x0node.transport.probe import PROBE_IDLE_TIMEOUT_S, ProbeGuard
from x0node.transport.replay import ReplayFilter, SlidingWindow
from x0node.transport.session import ClientSession, ServerSession
from x0node.transport.udp_packet import (
    decode_2022_packet,
    decode_aead_packet,
    encode_2022_packet,
    encode_aead_packet,
)

log = logging.getLogger(__name__)

WRITE_HIGH_BYTES = 4 * 1024 * 1024
WRITE_LOW_BYTES = 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
UDP_NAT_TIMEOUT_S = 120.0
MAX_UDP_SESSIONS = 1024
UDP_MAX_PENDING = 64
SOCKS_MAX_HANDSHAKE_BYTES = 600
MALLOC_MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
MALLOC_TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
MALLOC_TOP_PAD_BYTES = 8 * 1024 * 1024


def tune_allocator() -> None:
    """Keep relay buffers off the page-fault path.

    Reads arrive as 256 KiB objects; with glibc's defaults such blocks are mmap'd or returned to the
    kernel by heap trimming after each free, so every read page-faults its buffer afresh (about a
    tenth of the relay's CPU in a profile). Raising the mmap and trim thresholds keeps the memory in
    the heap for reuse. Best effort: does nothing on a libc without mallopt."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD_BYTES)
    mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD_BYTES)
    mallopt(m_top_pad, MALLOC_TOP_PAD_BYTES)


@dataclass
class RelayStats:
    connections: int = 0
    active: int = 0
    drops: Counter = field(default_factory=Counter)
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "active": self.active,
            "drops": dict(self.drops),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }


def _set_nodelay(transport: asyncio.BaseTransport, on: bool) -> None:
    # Off by default, like shadowsocks-libev: with whole reads sealed into one writev, Nagle never
    # delays a request/response exchange, and leaving it on roughly doubles bulk throughput here.
    if not on:
        return

    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Pipe(asyncio.Protocol):
    """The far side of a relay: forwards received bytes through `on_data`, applies back-pressure."""

    def __init__(self, peer: _Endpoint) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _set_nodelay(transport, self.peer.nodelay)
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES, WRITE_LOW_BYTES)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.peer.from_far(data)

    def eof_received(self) -> bool:
        self.peer.far_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.far_closed()

    def pause_writing(self) -> None:
        self.peer.pause_near_reading()

    def resume_writing(self) -> None:
        self.peer.resume_near_reading()


class _Endpoint(asyncio.Protocol, abc.ABC):
    """Common near-side machinery: a near transport, a far _Pipe, back-pressure and closing.
    Abstract: each role (server, local) says what to do with bytes from the far side."""

    def __init__(self, stats: RelayStats, nodelay: bool = False) -> None:
        self.stats = stats
        self.nodelay = nodelay
        self.transport: asyncio.Transport | None = None
        self.far: _Pipe | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.closed = False
        self._near_eof = False
        self._far_eof = False
        self.connecting = False

    # near side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _set_nodelay(transport, self.nodelay)
        transport.set_write_buffer_limits(WRITE_HIGH_BYTES, WRITE_LOW_BYTES)  # type: ignore[attr-defined]
        self.stats.connections += 1
        self.stats.active += 1

    def pause_writing(self) -> None:
        if self.far is not None and self.far.transport is not None:
            self.far.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.far is not None and self.far.transport is not None and not self.far.transport.is_closing():
            self.far.transport.resume_reading()

    def pause_near_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_near_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self._near_eof = True
        if self.far is not None and self.far.transport is not None and not self.far.transport.is_closing():
            if self.far.transport.can_write_eof():
                self.far.transport.write_eof()
            if self._far_eof:
                self.close()
            return True
        if not self.connecting:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.active -= 1
        self.close()

    # far side
    @abc.abstractmethod
    def from_far(self, data: bytes) -> None:
        """Bytes arrived from the far side: pass them to the near side in this role's framing."""

    def far_eof(self) -> None:
        self._far_eof = True
        if self.transport is not None and not self.transport.is_closing() and self.transport.can_write_eof():
            self.transport.write_eof()
        if self._near_eof:
            self.close()

    def far_closed(self) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.far is not None and self.far.transport is not None:
            self.far.transport.close()

    async def _connect_far(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.connecting = True
        try:
            _, pipe = await asyncio.wait_for(
                loop.create_connection(lambda: _Pipe(self), host, port), CONNECT_TIMEOUT_S
            )
        except (TimeoutError, OSError) as exc:
            self.stats.drops["connect_failed"] += 1
            log.info("connect to %s:%s failed: %s", host, port, exc)
            self.close()
            return
        if self.closed:
            pipe.transport.close()
            return
        self.far = pipe
        self.connecting = False
        if self.pending:
            pipe.transport.writelines(self.pending)
            self.pending = []
        if self.pending_bytes > WRITE_HIGH_BYTES:
            self.resume_near_reading()
        self.pending_bytes = 0
        self.on_far_connected()
        if self._near_eof and pipe.transport.can_write_eof():
            pipe.transport.write_eof()

    def on_far_connected(self) -> None:
        pass

    def hold(self, pieces: list[bytes]) -> None:
        """Keep bytes for the far side until it is connected; stop reading past WRITE_HIGH_BYTES."""
        self.pending.extend(pieces)
        self.pending_bytes += sum(map(len, pieces))
        if self.pending_bytes > WRITE_HIGH_BYTES:
            self.pause_near_reading()


class ServerConnection(_Endpoint):
    """One client of the Shadowsocks server."""

    def __init__(self, server: ShadowsocksServer) -> None:
        super().__init__(server.stats, server.nodelay)
        self.server = server
        self.session = ServerSession(server.method, server.key, server.replay, server.rng)
        self.tls = FakeTlsServer(server.tls_key, server.tls_replay, server.rng) if server.tls_key else None
        self.raw = False  # FakeTLS fallback: bytes pass through unchanged to the real site
        self.draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.probes.admit(self, transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.server.probes.seen(self)
            return
        if self.raw:
            self.server.probes.seen(self)
            if self.far is None:
                self.hold([data])
            else:
                self.far.transport.write(data)
            return
        if self.tls is not None:
            try:
                decision, inner = self.tls.feed(data, time.time())
            except RemoteError as exc:
                self.stats.drops[exc.reason] += 1
                self.close()
                return
            if decision == NEED_MORE:
                self.server.probes.seen(self)
                return
            if decision == FALLBACK:
                self._start_fallback()
                return
            if self.tls.flight:
                self.transport.write(self.tls.flight)
                self.tls.flight = b""
            data = b"".join(inner)
            if not data:
                return
        session = self.session
        try:
            had_target = session.target is not None
            plain = session.feed(data, time.time())
        except RemoteError as exc:
            self.stats.drops[exc.reason] += 1
            if self.session.target is None or self.far is None:
                self._start_drain()
            else:
                self.close()
            return
        self.stats.bytes_up += len(data)
        if not had_target:
            if session.target is None:
                self.server.probes.seen(self)
                return
            self.server.probes.authenticated(self)
            self.hold(plain)
            asyncio.ensure_future(self._connect_far(session.target.host, session.target.port))
            return
        if self.far is None:
            self.hold(plain)
        elif plain:
            self.far.transport.writelines(plain)

    def _start_fallback(self) -> None:
        # an unauthenticated FakeTLS client (a browser, a prober, a replay) meets the real site
        self.stats.drops["faketls_" + self.tls.reason] += 1
        self.raw = True
        self.pending = [bytes(self.tls.buffered)]
        self.tls.buffered = bytearray()
        host, port = self.server.fallback
        asyncio.ensure_future(self._connect_far(host, port))

    def _start_drain(self) -> None:
        # same observable behaviour for every probe: keep reading, say nothing, close on idle/EOF
        # (a header that authenticated but whose request failed becomes a probe again)
        self.draining = True
        self.pending = []
        self.server.probes.admit(self, self.transport.get_extra_info("peername"))

    def eof_received(self) -> bool:
        if self.raw:
            return super().eof_received()
        if self.draining or self.session.target is None:
            self.close()
            return True
        return super().eof_received()

    def from_far(self, data: bytes) -> None:
        self.stats.bytes_down += len(data)
        if self.raw:
            self.server.probes.seen(self)  # a fallback relay is idle only when both sides are
            self.transport.write(data)
        elif self.tls is not None:
            self.transport.writelines(wrap_records(b"".join(self.session.encrypt(data, time.time()))))
        else:
            self.transport.writelines(self.session.encrypt(data, time.time()))

    def close(self) -> None:
        self.server.probes.closed(self)
        super().close()


class LocalConnection(_Endpoint):
    """One SOCKS5 client of the local proxy."""

    def __init__(self, local: ShadowsocksLocal) -> None:
        super().__init__(local.stats, local.nodelay)
        self.local = local
        self.buf = bytearray()
        self.stage = 0  # 0 greeting, 1 request, 2 relay, 3 udp-associate control
        self.session: ClientSession | None = None
        self._connected = False
        self._udp: LocalUdp | None = None
        self.tls: FakeTlsClient | None = None

    def data_received(self, data: bytes) -> None:
        if self.stage == 2:
            self.stats.bytes_up += len(data)
            if self._connected:
                sealed = self.session.encrypt(data)
                if self.tls is not None:
                    sealed = self.tls.wrap(b"".join(sealed))
                self.far.transport.writelines(sealed)
            else:
                self.buf += data
                if len(self.buf) > WRITE_HIGH_BYTES:
                    self.pause_near_reading()
            return
        if self.stage == 3:
            return  # the control connection carries nothing after UDP ASSOCIATE
        self.buf += data
        if len(self.buf) > SOCKS_MAX_HANDSHAKE_BYTES and self.stage < 2:
            self.stats.drops["socks_oversize"] += 1
            self.close()
            return
        try:
            self._handshake()
        except RemoteError as exc:
            self.stats.drops[exc.reason] += 1
            self.close()

    def _handshake(self) -> None:
        if self.stage == 0:
            n = socks5.parse_greeting(self.buf)
            if n is None:
                return
            del self.buf[:n]
            self.transport.write(socks5.greeting_reply())
            self.stage = 1
        if self.stage == 1:
            got = socks5.parse_request(self.buf)
            if got is None:
                return
            cmd, addr, n = got
            del self.buf[:n]
            if cmd == socks5.CMD_CONNECT:
                self.stage = 2
                self.session = ClientSession.create(self.local.method, self.local.key, addr, self.local.rng)
                sock = self.transport.get_extra_info("sockname")
                self.transport.write(socks5.reply(socks5.REP_OK, Address(sock[0], sock[1])))
                asyncio.ensure_future(self._connect_far(*self.local.server))
            elif cmd == socks5.CMD_UDP_ASSOCIATE and self.local.udp:
                self.stage = 3
                asyncio.ensure_future(self._udp_associate())
            else:
                self.transport.write(socks5.reply(socks5.REP_CMD_UNSUPPORTED))
                self.close()

    def on_far_connected(self) -> None:
        initial = bytes(self.buf)
        self.buf = bytearray()
        if len(initial) > WRITE_HIGH_BYTES:
            self.resume_near_reading()
        self._connected = True
        self.stats.bytes_up += len(initial)
        first = b"".join(self.session.first_write(initial, time.time()))
        if self.local.tls_key:
            self.tls = FakeTlsClient(self.local.tls_key, self.local.sni, self.local.rng, time.time())
            self.far.transport.write(self.tls.hello())
            self.tls.wrap(first)  # held until the server has proved itself
        else:
            self.far.transport.write(first)

    def from_far(self, data: bytes) -> None:
        try:
            if self.tls is not None:
                inner, send = self.tls.feed(data)
                if send:
                    self.far.transport.writelines(send)
                data = b"".join(inner)
            plain = self.session.decrypt(data, time.time()) if data else []
        except RemoteError as exc:
            self.stats.drops[exc.reason] += 1
            self.close()
            return
        if plain:
            self.transport.writelines(plain)
            self.stats.bytes_down += sum(map(len, plain))

    async def _udp_associate(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.transport.get_extra_info("sockname")[0]
        try:
            tr, proto = await loop.create_datagram_endpoint(lambda: LocalUdp(self.local), local_addr=(host, 0))
        except OSError:
            self.close()
            return
        self._udp = proto
        if self.closed:
            tr.close()
            return
        bound = tr.get_extra_info("sockname")
        self.transport.write(socks5.reply(socks5.REP_OK, Address(bound[0], bound[1])))

    def close(self) -> None:
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        super().close()


class _UdpCodec:
    """Per-direction UDP packet handling for both editions (client or server role)."""

    def __init__(self, method: Method, key: bytes, rng) -> None:
        self.method = method
        self.key = key
        self.rng = rng
        self.session_id = rng.randbytes(8)
        self.packet_id = 0
        self.windows: dict[bytes, SlidingWindow] = {}

    def seal(self, addr: Address, payload: bytes, client_session_id: bytes | None = None) -> bytes:
        if not self.method.is_2022:
            return encode_aead_packet(self.method, self.key, self.rng, addr, payload)
        pid = self.packet_id
        self.packet_id += 1
        return encode_2022_packet(
            self.method, self.key, self.rng, self.session_id, pid, time.time(), addr, payload, client_session_id
        )

    def open(self, packet: bytes, from_server: bool) -> tuple[Address, bytes, bytes | None]:
        """(address, payload, session id or None); raises RemoteError."""
        if not self.method.is_2022:
            addr, payload = decode_aead_packet(self.method, self.key, packet)
            return addr, payload, None
        p = decode_2022_packet(self.method, self.key, packet, time.time(), from_server)
        win = self.windows.get(p.session_id)
        if win is None:
            if len(self.windows) >= MAX_UDP_SESSIONS:
                self.windows.pop(next(iter(self.windows)))
            win = self.windows[p.session_id] = SlidingWindow()
        if not win.check_and_add(p.packet_id):
            raise ReplayError("packet id replayed", reason="replayed_packet")
        if from_server and p.client_session_id != self.session_id:
            raise DecodeError("reply for another session", reason="bad_session")
        return p.address, p.payload, p.session_id


class LocalUdp(asyncio.DatagramProtocol):
    """SOCKS5 UDP ASSOCIATE relay: client datagrams <-> encrypted packets to the server."""

    def __init__(self, local: ShadowsocksLocal) -> None:
        self.local = local
        self.codec = _UdpCodec(local.method, local.key, local.rng)
        self.transport: asyncio.DatagramTransport | None = None
        self.client: tuple | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        srv = self.local.server_sockaddr
        try:
            if srv is not None and addr[:2] == srv[:2]:
                target, payload, _ = self.codec.open(data, from_server=True)
                if self.client is not None:
                    self.transport.sendto(socks5.encode_udp(target, payload), self.client)
                return
            target, payload = socks5.parse_udp(data)
            self.client = addr
            if srv is not None:
                self.transport.sendto(self.codec.seal(target, payload), srv)
        except RemoteError as exc:
            self.local.stats.drops[exc.reason] += 1
        except (OSError, ValueError):
            self.local.stats.drops["udp_send_failed"] += 1


class ServerUdp(asyncio.DatagramProtocol):
    """Server UDP relay with a bounded NAT table (one outbound socket per client session)."""

    def __init__(self, server: ShadowsocksServer) -> None:
        self.server = server
        self.codec = _UdpCodec(server.method, server.key, server.rng)
        self.transport: asyncio.DatagramTransport | None = None
        self.nat: dict[bytes | tuple, _NatEntry] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            target, payload, sid = self.codec.open(data, from_server=False)
        except RemoteError as exc:
            self.server.stats.drops["udp_" + exc.reason] += 1
            return
        key = sid if sid is not None else addr
        entry = self.nat.get(key)
        if entry is None:
            if len(self.nat) >= MAX_UDP_SESSIONS:
                oldest = min(self.nat, key=lambda k: self.nat[k].last)
                self.nat.pop(oldest).close()
            entry = self.nat[key] = _NatEntry(self, addr, sid)
        entry.client = addr
        entry.send(target, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        for e in self.nat.values():
            e.close()
        self.nat.clear()


class _NatEntry(asyncio.DatagramProtocol):
    """One client session's outbound UDP sockets (one per address family, opened on first use).
    Domain targets are resolved asynchronously; at most UDP_MAX_PENDING packets wait for that."""

    def __init__(self, owner: ServerUdp, client: tuple, sid: bytes | None) -> None:
        self.owner = owner
        self.client = client
        self.sid = sid
        self.last = time.monotonic()
        self.transports: dict[int, asyncio.DatagramTransport] = {}
        self.pending = 0
        self.closed = False
        self.codec = _UdpCodec(owner.server.method, owner.server.key, owner.server.rng) if sid else owner.codec

    def send(self, target: Address, payload: bytes) -> None:
        self.last = time.monotonic()
        try:
            ip = ipaddress.ip_address(target.host)
        except ValueError:
            ip = None
        if ip is not None:
            tr = self.transports.get(ip.version)
            if tr is not None:
                self._sendto(tr, payload, (str(ip), target.port))
                return
        if self.pending >= UDP_MAX_PENDING:
            self.owner.server.stats.drops["udp_pending_full"] += 1
            return
        self.pending += 1
        asyncio.ensure_future(self._send_slow(target, ip, payload))

    def _sendto(self, tr: asyncio.DatagramTransport, payload: bytes, dst: tuple) -> None:
        try:
            tr.sendto(payload, dst)
        except (OSError, ValueError):
            self.owner.server.stats.drops["udp_send_failed"] += 1

    async def _send_slow(self, target: Address, ip, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            if ip is None:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM), CONNECT_TIMEOUT_S
                )
                ip = ipaddress.ip_address(infos[0][4][0])
            tr = self.transports.get(ip.version)
            if tr is None:
                local = ("::", 0) if ip.version == 6 else ("0.0.0.0", 0)  # wildcard source of the relay's outbound UDP socket # nosec B104
                tr, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=local)
                if self.closed:
                    tr.close()
                    return
                self.transports.setdefault(ip.version, tr)
            self._sendto(self.transports[ip.version], payload, (str(ip), target.port))
        except (OSError, TimeoutError, IndexError, ValueError):
            self.owner.server.stats.drops["udp_resolve_failed"] += 1
        finally:
            self.pending -= 1

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.last = time.monotonic()
        out = self.codec.seal(Address(addr[0], addr[1]), data, self.sid)
        try:
            self.owner.transport.sendto(out, self.client)
        except (OSError, ValueError):
            self.owner.server.stats.drops["udp_send_failed"] += 1

    def close(self) -> None:
        self.closed = True
        for tr in self.transports.values():
            tr.close()
        self.transports.clear()


class ShadowsocksServer:
    def __init__(
        self,
        method: Method,
        key: bytes,
        listen: tuple[str, int],
        udp: bool = False,
        rng=None,
        probe_idle_timeout_s: float = PROBE_IDLE_TIMEOUT_S,
        nodelay: bool = False,
        fallback: tuple[str, int] | None = None,
    ) -> None:
        """`fallback` set turns FakeTLS on: unauthenticated clients are relayed there."""
        self.fallback = fallback
        self.tls_key = auth_key(key) if fallback else b""
        self.nodelay = nodelay
        self.method = method
        self.key = key
        self.listen = listen
        self.udp = udp
        self.rng = rng or secrets.SystemRandom()
        self.replay = ReplayFilter()
        self.tls_replay = replay_filter()
        self.stats = RelayStats()
        self.probes = ProbeGuard(self.stats.drops, probe_idle_timeout_s)
        self._servers: list = []
        self._udp_tr: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: ServerConnection(self), self.listen[0], self.listen[1], reuse_address=True)
        self._servers.append(srv)
        bound = srv.sockets[0].getsockname()[:2]
        if self.udp:
            self._udp_tr, self._udp_proto = await loop.create_datagram_endpoint(
                lambda: ServerUdp(self), local_addr=(self.listen[0], bound[1])
            )
            self._sweeper = asyncio.ensure_future(self._sweep())
        return bound

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(UDP_NAT_TIMEOUT_S / 4)
            now = time.monotonic()
            nat = self._udp_proto.nat
            for k in [k for k, e in nat.items() if now - e.last > UDP_NAT_TIMEOUT_S]:
                nat.pop(k).close()

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        self.probes.stop()
        if self._udp_tr is not None:
            self._udp_tr.close()
        if self._sweeper is not None:
            self._sweeper.cancel()


class ShadowsocksLocal:
    def __init__(
        self,
        method: Method,
        key: bytes,
        server: tuple[str, int],
        listen: tuple[str, int],
        udp: bool = True,
        rng=None,
        nodelay: bool = False,
        sni: str | None = None,
    ) -> None:
        """`sni` set turns FakeTLS on towards the server (which must run with a fallback)."""
        self.sni = sni
        self.tls_key = auth_key(key) if sni else b""
        self.nodelay = nodelay
        self.method = method
        self.key = key
        self.server = server
        self.listen = listen
        self.udp = udp
        self.rng = rng or secrets.SystemRandom()
        self.stats = RelayStats()
        self.server_sockaddr: tuple | None = None
        self._servers: list = []

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.server[0], self.server[1], type=2)  # SOCK_DGRAM
        self.server_sockaddr = infos[0][4] if infos else None
        srv = await loop.create_server(lambda: LocalConnection(self), self.listen[0], self.listen[1], reuse_address=True)
        self._servers.append(srv)
        return srv.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
