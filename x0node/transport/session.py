"""Shadowsocks session codecs (sans-I/O): one client or server side of one TCP connection.

Both editions expose the same shape so adapters do not care which one runs:
    client = ClientSession.create(method, key, target, rng, now)
    wire = client.first_write(initial_payload)      # salt + header (+ payload)
    wire = client.encrypt(data); plain = client.decrypt(wire_in, now)
    server = ServerSession(method, key, replay, rng)
    plain = server.feed(wire_in, now); server.target  # set once the header is authenticated
    wire = server.encrypt(data, now)
`now` is wall-clock unix seconds (SIP022 timestamps); `rng.randbytes(n)` supplies salts and
padding. Every remote fault raises a RemoteError subclass; the adapter reacts to all the same way.

SIP004/SIP007 (legacy AEAD): request = salt + chunks, the first plaintext starting with the target
address; response = salt + chunks. Replay: the server remembers request salts (ReplayFilter).

SIP022 (2022 edition), with 2022 methods:
    request  = salt + AEAD(type=0 | ts u64be | varlen u16be)
                    + AEAD(ATYP addr port | padlen u16be | padding | initial payload) + chunks
    response = salt + AEAD(type=1 | ts u64be | request salt | len u16be) + AEAD(payload) + chunks
Timestamps more than 30 s away are replays; salts are stored 60 s (no false positives); padding is
at most 900 bytes and must be non-zero when the request carries no payload; the client checks the
echoed request salt.
"""

from __future__ import annotations

from typing import Protocol

from x0node.transport.address import Address, decode_address
from x0node.transport.aead_stream import (
    SIP004_MAX_PAYLOAD,
    SIP022_MAX_PAYLOAD,
    StreamDecryptor,
    StreamEncryptor,
)
from x0node.transport.crypto import Method, session_subkey
from x0node.transport.errors import DecodeError, ReplayError
from x0node.transport.replay import ReplayFilter

HEADER_TYPE_CLIENT = 0
HEADER_TYPE_SERVER = 1
SIP022_MAX_TIME_DIFF_S = 30
SIP022_MAX_PADDING = 900
SIP022_CLIENT_FIXED_LEN = 1 + 8 + 2
MAX_FIRST_PLAINTEXT = SIP022_MAX_PAYLOAD  # bound on buffered plaintext before the address parses
_HEADER, _FIRST, _DONE = 0, 1, 2


class Rng(Protocol):
    def randbytes(self, n: int) -> bytes: ...
    def randint(self, a: int, b: int) -> int: ...


def _check_time(ts: int, now: float) -> None:
    if abs(ts - now) > SIP022_MAX_TIME_DIFF_S:
        raise ReplayError(f"timestamp off by {ts - now:.0f} s", reason="bad_timestamp")


class ClientSession:
    """Client side; use `create` to pick the edition from the method."""

    def __init__(self, method: Method, key: bytes, target: Address, rng: Rng) -> None:
        self.method = method
        self.key = key
        self.target = target
        self.rng = rng
        self.salt = rng.randbytes(method.salt_len)
        cap = SIP022_MAX_PAYLOAD if method.is_2022 else SIP004_MAX_PAYLOAD
        self._enc = StreamEncryptor(method.aead(session_subkey(method, key, self.salt)), cap)
        self._dec: StreamDecryptor | None = None
        self._resp_salt_buf = bytearray()
        self._resp_stage = _HEADER  # 2022 response: header -> first payload block -> chunks
        self._resp_first_len = 0

    @classmethod
    def create(cls, method: Method, key: bytes, target: Address, rng: Rng) -> ClientSession:
        return cls(method, key, target, rng)

    def first_write(self, initial: bytes, now: float) -> list[bytes]:
        if not self.method.is_2022:
            return [self.salt, *self._enc.seal(self.target.encode() + initial)]
        pad_len = 0 if initial else self.rng.randint(1, SIP022_MAX_PADDING)
        var = self.target.encode() + pad_len.to_bytes(2, "big") + self.rng.randbytes(pad_len) + initial
        if len(var) > SIP022_MAX_PAYLOAD:
            cut = len(var) - SIP022_MAX_PAYLOAD
            var, rest = var[:-cut], var[-cut:]
        else:
            rest = b""
        fixed = bytes((HEADER_TYPE_CLIENT,)) + int(now).to_bytes(8, "big") + len(var).to_bytes(2, "big")
        out = [self.salt, self._enc.seal_block(fixed), self._enc.seal_block(var)]
        if rest:
            out += self._enc.seal(rest)
        return out

    def encrypt(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        return self._enc.seal(data)

    def decrypt(self, data: bytes | bytearray | memoryview, now: float) -> list[bytes]:
        dec = self._dec
        if dec is None:
            self._resp_salt_buf += data
            sl = self.method.salt_len
            if len(self._resp_salt_buf) < sl:
                return []
            salt = bytes(self._resp_salt_buf[:sl])
            rest = bytes(self._resp_salt_buf[sl:])
            self._resp_salt_buf = bytearray()
            cap = SIP022_MAX_PAYLOAD if self.method.is_2022 else SIP004_MAX_PAYLOAD
            dec = self._dec = StreamDecryptor(self.method.aead(session_subkey(self.method, self.key, salt)), cap)
            data = rest
        if self._resp_stage == _DONE or not self.method.is_2022:
            return dec.chunks(data)
        dec.feed(data)
        if self._resp_stage == _HEADER:
            sl = self.method.salt_len
            hdr = dec.take_block(1 + 8 + sl + 2)
            if hdr is None:
                return []
            if hdr[0] != HEADER_TYPE_SERVER:
                raise DecodeError("bad response header type", reason="bad_header")
            _check_time(int.from_bytes(hdr[1:9], "big"), now)
            if hdr[9 : 9 + sl] != self.salt:
                raise DecodeError("response does not echo our request salt", reason="bad_salt_echo")
            self._resp_first_len = int.from_bytes(hdr[9 + sl :], "big")
            self._resp_stage = _FIRST if self._resp_first_len else _DONE
        out: list[bytes] = []
        if self._resp_stage == _FIRST:
            first = dec.take_block(self._resp_first_len)
            if first is None:
                return []
            out.append(first)
            self._resp_stage = _DONE
        return out + dec.chunks()


class ServerSession:
    """Server side of one connection. `target` is None until the request header authenticated."""

    def __init__(self, method: Method, key: bytes, replay: ReplayFilter, rng: Rng) -> None:
        self.method = method
        self.key = key
        self.replay = replay
        self.rng = rng
        self.target: Address | None = None
        self.request_salt: bytes | None = None
        self._salt_buf = bytearray()
        self._dec: StreamDecryptor | None = None
        self._enc: StreamEncryptor | None = None
        self._first_plain = bytearray()
        self._varlen = -1

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> list[bytes]:
        dec = self._dec
        if dec is not None and self.target is not None:
            return dec.chunks(data)
        if dec is None:
            self._salt_buf += data
            sl = self.method.salt_len
            if len(self._salt_buf) < sl:
                return []
            self.request_salt = bytes(self._salt_buf[:sl])
            data = bytes(self._salt_buf[sl:])
            self._salt_buf = bytearray()
            cap = SIP022_MAX_PAYLOAD if self.method.is_2022 else SIP004_MAX_PAYLOAD
            subkey = session_subkey(self.method, self.key, self.request_salt)
            dec = self._dec = StreamDecryptor(self.method.aead(subkey), cap)
        if self.method.is_2022:
            return self._feed_2022(dec, data, now)
        return self._feed_aead(dec, data, now)

    def _feed_aead(self, dec: StreamDecryptor, data: bytes | bytearray | memoryview, now: float) -> list[bytes]:
        for piece in dec.chunks(data):
            self._first_plain += piece
        if not self._first_plain:
            return []
        got = decode_address(self._first_plain)
        if got is None:
            if len(self._first_plain) > MAX_FIRST_PLAINTEXT:
                raise DecodeError("address does not fit the first chunk", reason="bad_address")
            return []
        assert self.request_salt is not None
        # replay is checked only after authentication, so random bytes never pollute the filter
        if not self.replay.check_and_add(self.request_salt, now):
            raise ReplayError("salt replayed", reason="replayed_salt")
        self.target, off = got
        rest = bytes(self._first_plain[off:])
        self._first_plain = bytearray()
        return [rest] if rest else []

    def _feed_2022(self, dec: StreamDecryptor, data: bytes | bytearray | memoryview, now: float) -> list[bytes]:
        dec.feed(data)
        if self._varlen < 0:
            fixed = dec.take_block(SIP022_CLIENT_FIXED_LEN)
            if fixed is None:
                return []
            if fixed[0] != HEADER_TYPE_CLIENT:
                raise DecodeError("bad request header type", reason="bad_header")
            _check_time(int.from_bytes(fixed[1:9], "big"), now)
            assert self.request_salt is not None
            if not self.replay.check_and_add(self.request_salt, now):
                raise ReplayError("salt replayed", reason="replayed_salt")
            self._varlen = int.from_bytes(fixed[9:11], "big")
            if self._varlen == 0:
                raise DecodeError("empty variable header", reason="bad_header")
        var = dec.take_block(self._varlen)
        if var is None:
            return []
        got = decode_address(var)
        if got is None or got[1] + 2 > len(var):
            raise DecodeError("truncated variable header", reason="bad_header")
        addr, off = got
        pad = int.from_bytes(var[off : off + 2], "big")
        off += 2
        if pad > SIP022_MAX_PADDING or off + pad > len(var):
            raise DecodeError("padding out of range", reason="bad_padding")
        payload = var[off + pad :]
        if not payload and pad == 0:
            raise DecodeError("no payload and no padding", reason="bad_padding")
        self.target = addr
        out = [payload] if payload else []
        return out + dec.chunks()

    def encrypt(self, data: bytes | bytearray | memoryview, now: float) -> list[bytes]:
        enc = self._enc
        if enc is not None:
            return enc.seal(data)
        salt = self.rng.randbytes(self.method.salt_len)
        cap = SIP022_MAX_PAYLOAD if self.method.is_2022 else SIP004_MAX_PAYLOAD
        enc = self._enc = StreamEncryptor(self.method.aead(session_subkey(self.method, self.key, salt)), cap)
        if not self.method.is_2022:
            return [salt, *enc.seal(data)]
        assert self.request_salt is not None
        first = bytes(data[:cap])
        hdr = (
            bytes((HEADER_TYPE_SERVER,))
            + int(now).to_bytes(8, "big")
            + self.request_salt
            + len(first).to_bytes(2, "big")
        )
        out = [salt, enc.seal_block(hdr)]
        if first:
            out.append(enc.seal_block(first))
        if len(data) > cap:
            out += enc.seal(memoryview(data)[cap:])
        return out

