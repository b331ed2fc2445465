"""Blocking SOCKS5 client (CONNECT and UDP ASSOCIATE) for command-line checks, tests and benches.

Uses the sans-I/O messages of `socks5`; every read is bounded by the socket timeout.
"""

from __future__ import annotations

import socket

from x0node.transport import socks5
from x0node.transport.address import Address, decode_address


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise ConnectionError("SOCKS5 proxy closed the connection")
        buf += got
    return buf


def _read_reply(sock: socket.socket) -> Address:
    head = _recv_exact(sock, 5)
    if head[0] != socks5.VERSION or head[1] != socks5.REP_OK:
        raise ConnectionError(f"SOCKS5 request refused (reply {head[1]})")
    atyp = head[3]
    rest = {1: 4 + 2 - 1, 4: 16 + 2 - 1}.get(atyp, head[4] + 2)
    tail = _recv_exact(sock, rest)
    got = decode_address(head[3:] + tail)
    assert got is not None
    return got[0]


def _greet(proxy: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(proxy, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"\x05\x01\x00")
    if _recv_exact(sock, 2) != b"\x05\x00":
        sock.close()
        raise ConnectionError("SOCKS5 proxy refused no-auth")
    return sock


def connect(proxy: tuple[str, int], host: str, port: int, timeout: float = 10.0) -> socket.socket:
    sock = _greet(proxy, timeout)
    sock.sendall(b"\x05\x01\x00" + Address(host, port).encode())
    _read_reply(sock)
    return sock


class UdpAssociation:
    def __init__(self, proxy: tuple[str, int], timeout: float = 10.0) -> None:
        self.ctrl = _greet(proxy, timeout)
        self.ctrl.sendall(b"\x05\x03\x00" + Address("0.0.0.0", 0).encode())  # RFC 1928 UDP ASSOCIATE with an unspecified client address, not a bind # nosec B104
        relay = _read_reply(self.ctrl)
        host = proxy[0] if relay.host in ("0.0.0.0", "::") else relay.host  # a comparison, not a bind # nosec B104
        self.relay = (host, relay.port)
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def sendto(self, payload: bytes, host: str, port: int) -> None:
        self.sock.sendto(socks5.encode_udp(Address(host, port), payload), self.relay)

    def recvfrom(self) -> tuple[Address, bytes]:
        data, _ = self.sock.recvfrom(65535)
        return socks5.parse_udp(data)

    def close(self) -> None:
        self.sock.close()
        self.ctrl.close()
