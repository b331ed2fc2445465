"""FakeTLS: a TLS 1.3-shaped handshake and record framing around an inner stream (sans-I/O).

What goes on the wire:
  client: ClientHello (TLS 1.3 shape: GREASE, Chrome-like cipher suites and extensions, SNI,
          x25519 key share, ALPN h2/http1.1, padding to 517 bytes)
  server: ServerHello (TLS 1.3: supported_versions 0x0304, x25519 key share) + ChangeCipherSpec +
          one application_data record of filler (where a real server sends its encrypted
          certificate flight)
  client: ChangeCipherSpec + one application_data filler record (the "Finished"), then data
  both:   application_data records (0x17 0x0303 len<=2^14) carrying the inner stream bytes.
No TLS cryptography is performed: the inner stream (Shadowsocks 2022) provides confidentiality.

Client authentication is hidden in ClientHello.random:
  mac = HMAC-SHA256(auth_key, ClientHello handshake message with random zeroed)
  random = mac[:28] || (mac[28:32] XOR timestamp u32le)
The server recomputes the MAC, checks the 28 bytes, the timestamp window (+-MAX_TIME_DIFF_S) and
that the random was not seen before (ReplayFilter). A hello is valid for 2 * MAX_TIME_DIFF_S + 1 s of
server time (the client's clock may be ahead or behind; timestamps are whole seconds), so the replay
filter must remember at least that long: `replay_filter()` makes one with HELLO_REPLAY_WINDOW_S, and
FakeTlsServer refuses a filter with a shorter memory. Anything else - not a handshake record, a bad
MAC, a stale or replayed hello - is a FALLBACK: the adapter relays every byte, unchanged, to a real
fallback site, so a prober talks to a real TLS server. The server proves itself in
ServerHello.random = HMAC-SHA256(auth_key, "server" || client random).
Parsers are bounded (a ClientHello up to MAX_HELLO_BYTES) and never raise on remote input except
DecodeError after the handshake (a broken record stream is closed).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from x0node.transport.errors import DecodeError
from x0node.transport.replay import ReplayFilter

REC_HANDSHAKE = 0x16
REC_CCS = 0x14
REC_APPDATA = 0x17
REC_ALERT = 0x15
TLS12 = b"\x03\x03"
TLS10 = b"\x03\x01"
MAX_RECORD_PAYLOAD = 16384
MAX_RECORD_WIRE = 16384 + 256
MAX_HELLO_BYTES = 16384
MAX_TIME_DIFF_S = 60
HELLO_REPLAY_WINDOW_S = 2 * MAX_TIME_DIFF_S + 1  # how long one hello stays valid, in server time
CLIENT_HELLO_TARGET_LEN = 517  # Chrome pads its ClientHello record to this size
AUTH_CONTEXT = "x0node faketls auth v1"

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]
CIPHER_SUITES = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
                 0x009C, 0x009D, 0x002F, 0x0035]
SIG_ALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]


def replay_filter() -> ReplayFilter:
    """A replay filter for hellos: shared by all connections of one server, remembering each hello
    for as long as its timestamp keeps it valid."""
    return ReplayFilter(window_s=HELLO_REPLAY_WINDOW_S)


def auth_key(secret: bytes) -> bytes:
    import blake3

    return blake3.blake3(secret, derive_key_context=AUTH_CONTEXT).digest()


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _vec16(b: bytes) -> bytes:
    return _u16(len(b)) + b


def _ext(t: int, body: bytes) -> bytes:
    return _u16(t) + _vec16(body)


def record(rtype: int, payload: bytes, version: bytes = TLS12) -> bytes:
    return bytes((rtype,)) + version + _u16(len(payload)) + payload


def build_client_hello(key: bytes, sni: str, now: float, rng, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> bytes:
    """A complete ClientHello record carrying our authenticator in its random."""
    g1, g2, g3, g4 = (rng.choice(GREASE) for _ in range(4))
    name = sni.encode("idna")
    alpn_list = b"".join(bytes((len(a),)) + a.encode() for a in alpn)
    exts = [
        _ext(0x0000, _vec16(b"\x00" + _vec16(name))),  # server_name
        _ext(0x0017, b""),  # extended_master_secret
        _ext(0xFF01, b"\x00"),  # renegotiation_info
        _ext(0x000A, _vec16(b"".join(_u16(x) for x in (g2, 0x001D, 0x0017, 0x0018)))),  # supported_groups
        _ext(0x000B, b"\x01\x00"),  # ec_point_formats
        _ext(0x0023, b""),  # session_ticket
        _ext(0x0010, _vec16(alpn_list)),  # ALPN
        _ext(0x0005, b"\x01\x00\x00\x00\x00"),  # status_request
        _ext(0x000D, _vec16(b"".join(_u16(x) for x in SIG_ALGS))),  # signature_algorithms
        _ext(0x0012, b""),  # signed_certificate_timestamp
        _ext(0x0033, _vec16(_u16(g2) + _vec16(b"\x00") + _u16(0x001D) + _vec16(rng.randbytes(32)))),  # key_share
        _ext(0x002D, b"\x01\x01"),  # psk_key_exchange_modes
        _ext(0x002B, bytes((6,)) + _u16(g3) + b"\x03\x04\x03\x03"),  # supported_versions
        _ext(0x001B, b"\x02\x00\x02"),  # compress_certificate (brotli)
        _ext(0x4469, _vec16(b"\x02h2")),  # application_settings
    ]
    rng.shuffle(exts)  # current Chrome permutes its extensions on every connection
    exts = [_ext(g1, b""), *exts, _ext(g4 if g4 != g1 else g1 ^ 0x1010, b"\x00")]
    session_id = rng.randbytes(32)
    suites = _vec16(b"".join(_u16(x) for x in (g1, *CIPHER_SUITES)))

    def hello(ext_bytes: bytes, random: bytes) -> bytes:
        body = TLS12 + random + bytes((32,)) + session_id + suites + b"\x01\x00" + _vec16(ext_bytes)
        return b"\x01" + len(body).to_bytes(3, "big") + body

    ext_bytes = b"".join(exts)
    unpadded = 5 + len(hello(ext_bytes, bytes(32)))
    pad = CLIENT_HELLO_TARGET_LEN - unpadded - 4
    if pad >= 0:
        ext_bytes += _ext(0x0015, bytes(pad))
    msg = hello(ext_bytes, bytes(32))
    mac = hmac.new(key, msg, hashlib.sha256).digest()
    ts = struct.pack("<I", int(now) & 0xFFFFFFFF)
    random = mac[:28] + bytes(a ^ b for a, b in zip(mac[28:], ts, strict=True))
    return record(REC_HANDSHAKE, msg[:6] + random + msg[38:], TLS10)


@dataclass(frozen=True)
class HelloInfo:
    random: bytes
    session_id: bytes
    sni: str | None
    record_len: int  # bytes of the whole ClientHello record


def parse_client_hello(buf: bytes | bytearray) -> HelloInfo | None:
    """Parse a ClientHello record; None if incomplete, DecodeError if it is not one."""
    if len(buf) < 5:
        return None
    if buf[0] != REC_HANDSHAKE or buf[1] != 3:
        raise DecodeError("not a TLS handshake record", reason="not_tls")
    rlen = int.from_bytes(buf[3:5], "big")
    if rlen > MAX_HELLO_BYTES or rlen < 42:
        raise DecodeError("handshake record length out of range", reason="not_tls")
    if len(buf) < 5 + rlen:
        return None
    msg = bytes(buf[5 : 5 + rlen])
    if msg[0] != 1 or int.from_bytes(msg[1:4], "big") != rlen - 4:
        raise DecodeError("not a single ClientHello", reason="not_tls")
    random = msg[6:38]
    sid_len = msg[38]
    if sid_len > 32:
        raise DecodeError("bad session id", reason="not_tls")
    sid = msg[39 : 39 + sid_len]
    pos = 39 + sid_len
    try:
        cs_len = int.from_bytes(msg[pos : pos + 2], "big")
        pos += 2 + cs_len
        comp_len = msg[pos]
        pos += 1 + comp_len
        ext_end = pos + 2 + int.from_bytes(msg[pos : pos + 2], "big")
        pos += 2
        sni = None
        while pos + 4 <= ext_end <= len(msg):
            et = int.from_bytes(msg[pos : pos + 2], "big")
            el = int.from_bytes(msg[pos + 2 : pos + 4], "big")
            body = msg[pos + 4 : pos + 4 + el]
            if et == 0 and len(body) >= 5:
                sni = body[5 : 5 + int.from_bytes(body[3:5], "big")].decode("ascii", "replace")
            pos += 4 + el
    except IndexError:
        raise DecodeError("truncated ClientHello", reason="not_tls") from None
    return HelloInfo(random, sid, sni, 5 + rlen)


def verify_client_hello(key: bytes, record_bytes: bytes, now: float) -> bool:
    """True if the hello carries a valid authenticator with a timestamp inside the window."""
    msg = record_bytes[5:]
    random = msg[6:38]
    mac = hmac.new(key, msg[:6] + bytes(32) + msg[38:], hashlib.sha256).digest()
    if not hmac.compare_digest(mac[:28], random[:28]):
        return False
    ts = struct.unpack("<I", bytes(a ^ b for a, b in zip(mac[28:], random[28:], strict=True)))[0]
    diff = (int(now) - ts) & 0xFFFFFFFF
    return diff <= MAX_TIME_DIFF_S or diff >= 0x100000000 - MAX_TIME_DIFF_S


def server_random(key: bytes, client_random: bytes) -> bytes:
    return hmac.new(key, b"server" + client_random, hashlib.sha256).digest()


def build_server_flight(key: bytes, hello: HelloInfo, rng) -> bytes:
    exts = _ext(0x002B, b"\x03\x04") + _ext(0x0033, _u16(0x001D) + _vec16(rng.randbytes(32)))
    body = TLS12 + server_random(key, hello.random) + bytes((len(hello.session_id),)) + hello.session_id
    body += _u16(0x1301) + b"\x00" + _vec16(exts)
    sh = b"\x02" + len(body).to_bytes(3, "big") + body
    filler = rng.randbytes(rng.randint(1200, 4000))  # stands in for the encrypted certificate flight
    return record(REC_HANDSHAKE, sh) + record(REC_CCS, b"\x01") + record(REC_APPDATA, filler)


class RecordReader:
    """Splits a byte stream into TLS records; yields (type, payload). Bounded by MAX_RECORD_WIRE."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 5:
            rtype = buf[pos]
            ln = (buf[pos + 3] << 8) | buf[pos + 4]
            if rtype not in (REC_HANDSHAKE, REC_CCS, REC_APPDATA, REC_ALERT) or buf[pos + 1] != 3 or ln > MAX_RECORD_WIRE:
                raise DecodeError("bad TLS record header", reason="bad_record")
            if n - pos < 5 + ln:
                break
            out.append((rtype, bytes(buf[pos + 5 : pos + 5 + ln])))
            pos += 5 + ln
        if pos:
            del buf[:pos]
        return out


def wrap_records(data: bytes | bytearray | memoryview, max_payload: int = MAX_RECORD_PAYLOAD) -> list[bytes]:
    """Application-data records carrying `data` (header + payload slices, for writelines)."""
    out: list[bytes] = []
    n = len(data)
    mv = memoryview(data)
    pos = 0
    while pos < n:
        ln = min(max_payload, n - pos)
        out.append(b"\x17\x03\x03" + ln.to_bytes(2, "big"))
        out.append(bytes(mv[pos : pos + ln]))
        pos += ln
    return out


class FakeTlsClient:
    """Client side: `hello()` first; `feed()` returns inner bytes; `wrap()` frames outgoing bytes.
    `ready` turns True after the server proved itself; until then `wrap` output is held back."""

    def __init__(self, key: bytes, sni: str, rng, now: float) -> None:
        self.key = key
        self.rng = rng
        self._hello = build_client_hello(key, sni, now, rng)
        self._random = self._hello[11:43]
        self.reader = RecordReader()
        self.ready = False
        self._stage = 0  # 0 wait ServerHello, 1 wait CCS/filler, 2 data
        self._held: list[bytes] = []

    def hello(self) -> bytes:
        return self._hello

    def feed(self, data: bytes) -> tuple[list[bytes], list[bytes]]:
        """(inner bytes received, wire bytes to send now). Raises DecodeError on a wrong server."""
        inner: list[bytes] = []
        send: list[bytes] = []
        for rtype, payload in self.reader.feed(data):
            if self._stage == 0:
                if rtype != REC_HANDSHAKE or len(payload) < 38 or payload[0] != 2:
                    raise DecodeError("expected ServerHello", reason="bad_server_hello")
                if not hmac.compare_digest(payload[6:38], server_random(self.key, self._random)):
                    raise DecodeError("server did not authenticate", reason="bad_server_auth")
                self._stage = 1
            elif self._stage == 1:
                if rtype == REC_CCS:
                    continue
                if rtype != REC_APPDATA:
                    raise DecodeError("unexpected record in handshake", reason="bad_record")
                self._stage = 2  # the filler record stands for the encrypted server handshake
                self.ready = True
                send.append(record(REC_CCS, b"\x01"))
                send.append(record(REC_APPDATA, self.rng.randbytes(53)))  # "Finished"
                send.extend(self._held)
                self._held = []
            elif rtype == REC_APPDATA:
                inner.append(payload)
            elif rtype == REC_ALERT:
                raise DecodeError("alert from server", reason="alert")
            else:
                raise DecodeError("unexpected record type", reason="bad_record")
        return inner, send

    def wrap(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        recs = wrap_records(data)
        if not self.ready:
            self._held.extend(recs)
            return []
        return recs


ACCEPT = "accept"
FALLBACK = "fallback"
NEED_MORE = "need_more"


class FakeTlsServer:
    """Server side: `feed()` until the decision is ACCEPT (then `flight` is the reply and the
    rest of the stream goes through `unwrap`) or FALLBACK (then `buffered` is everything
    received, to be replayed to the fallback site)."""

    def __init__(self, key: bytes, replay: ReplayFilter, rng) -> None:
        if replay.window_s < HELLO_REPLAY_WINDOW_S:
            raise ValueError(f"the hello replay filter must remember at least {HELLO_REPLAY_WINDOW_S} s")
        self.key = key
        self.replay = replay
        self.rng = rng
        self.buffered = bytearray()
        self.decision = NEED_MORE
        self.flight = b""
        self.reader = RecordReader()
        self.reason = ""
        self._client_finished = False

    def feed(self, data: bytes, now: float) -> tuple[str, list[bytes]]:
        if self.decision == ACCEPT:
            return ACCEPT, self.unwrap(data)
        if self.decision == FALLBACK:
            return FALLBACK, []
        self.buffered += data
        try:
            info = parse_client_hello(self.buffered)
        except DecodeError as exc:
            return self._fallback(exc.reason)
        if info is None:
            if len(self.buffered) > MAX_HELLO_BYTES + 5:
                return self._fallback("oversize")
            return NEED_MORE, []
        rec = bytes(self.buffered[: info.record_len])
        if not verify_client_hello(self.key, rec, now):
            return self._fallback("bad_auth")
        if not self.replay.check_and_add(b"tls" + info.random, now):
            return self._fallback("replayed_hello")
        self.decision = ACCEPT
        self.flight = build_server_flight(self.key, info, self.rng)
        rest = bytes(self.buffered[info.record_len :])
        self.buffered = bytearray()
        return ACCEPT, self.unwrap(rest) if rest else []

    def _fallback(self, reason: str) -> tuple[str, list[bytes]]:
        self.decision = FALLBACK
        self.reason = reason
        return FALLBACK, []

    def unwrap(self, data: bytes) -> list[bytes]:
        out = []
        for rtype, payload in self.reader.feed(data):
            if rtype == REC_APPDATA:
                if not self._client_finished:
                    self._client_finished = True  # the client's "Finished" filler
                    continue
                out.append(payload)
            elif rtype == REC_CCS and not self._client_finished:
                continue
            else:
                raise DecodeError("unexpected record type", reason="bad_record")
        return out
