"""Shadowsocks UDP packet codecs (sans-I/O).

SIP004/SIP007: packet = salt + AEAD(HKDF-SHA1 subkey, nonce 0, ATYP addr port + payload), the same
in both directions (the server puts the source address of the reply in the address field).

SIP022:
- 2022-blake3-aes-*-gcm: AES-ECB(psk, session id u64 | packet id u64be) + AEAD(subkey(psk, session
  id), nonce = separate header[4:16], body).
- 2022-blake3-chacha20-poly1305: nonce(24) + XChaCha20-Poly1305(psk, nonce, session id | packet id |
  body).
- body = type | ts u64be | [client session id, server->client only] | padlen u16be | padding |
  ATYP addr port | payload.
Replay: timestamp within 30 s and a per-session SlidingWindow on packet ids (the caller keeps one
window per session). Every fault raises a RemoteError subclass; nothing is returned unauthenticated.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl import bindings as sodium

from x0node.transport.address import Address, decode_address
from x0node.transport.crypto import NONCE_LEN, TAG_LEN, Method, blake3_subkey, session_subkey
from x0node.transport.errors import DecodeError, ReplayError
from x0node.transport.session import (
    HEADER_TYPE_CLIENT,
    HEADER_TYPE_SERVER,
    SIP022_MAX_TIME_DIFF_S,
    Rng,
)

MAX_UDP_PAYLOAD = 65507
XNONCE_LEN = 24


def encode_aead_packet(method: Method, key: bytes, rng: Rng, addr: Address, payload: bytes) -> bytes:
    salt = rng.randbytes(method.salt_len)
    aead = method.aead(session_subkey(method, key, salt))
    return salt + aead.encrypt(bytes(NONCE_LEN), addr.encode() + payload, None)


def decode_aead_packet(method: Method, key: bytes, packet: bytes) -> tuple[Address, bytes]:
    sl = method.salt_len
    if len(packet) < sl + TAG_LEN + 1:
        raise DecodeError("short packet", reason="short")
    aead = method.aead(session_subkey(method, key, packet[:sl]))
    try:
        plain = aead.decrypt(bytes(NONCE_LEN), packet[sl:], None)
    except Exception:
        raise DecodeError("authentication failed", reason="bad_tag") from None
    got = decode_address(plain)
    if got is None:
        raise DecodeError("truncated address", reason="bad_address")
    addr, off = got
    return addr, plain[off:]


@dataclass(frozen=True)
class Packet2022:
    session_id: bytes
    packet_id: int
    type: int
    timestamp: int
    client_session_id: bytes | None
    address: Address
    payload: bytes


def _ecb(psk: bytes):
    return Cipher(algorithms.AES(psk), modes.ECB())  # SIP022's separate header is one AES block under ECB by specification # nosec B305


def encode_2022_packet(
    method: Method,
    psk: bytes,
    rng: Rng,
    session_id: bytes,
    packet_id: int,
    now: float,
    addr: Address,
    payload: bytes,
    client_session_id: bytes | None = None,
    padding: int = 0,
) -> bytes:
    """Encode one packet; `client_session_id` set means a server->client packet."""
    is_server = client_session_id is not None
    body = (
        bytes((HEADER_TYPE_SERVER if is_server else HEADER_TYPE_CLIENT,))
        + int(now).to_bytes(8, "big")
        + (client_session_id or b"")
        + padding.to_bytes(2, "big")
        + rng.randbytes(padding)
        + addr.encode()
        + payload
    )
    header = session_id + packet_id.to_bytes(8, "big")
    if method.family == "chacha20":
        nonce = rng.randbytes(XNONCE_LEN)
        return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(header + body, None, nonce, psk)
    enc = _ecb(psk).encryptor()
    sep = enc.update(header) + enc.finalize()
    aead = method.aead(blake3_subkey(psk, session_id))
    return sep + aead.encrypt(header[4:16], body, None)


def decode_2022_packet(method: Method, psk: bytes, packet: bytes, now: float, from_server: bool) -> Packet2022:
    if method.family == "chacha20":
        if len(packet) < XNONCE_LEN + TAG_LEN + 16:
            raise DecodeError("short packet", reason="short")
        try:
            plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(packet[XNONCE_LEN:], None, packet[:XNONCE_LEN], psk)
        except Exception:
            raise DecodeError("authentication failed", reason="bad_tag") from None
        header, body = plain[:16], plain[16:]
    else:
        if len(packet) < 16 + TAG_LEN:
            raise DecodeError("short packet", reason="short")
        dec = _ecb(psk).decryptor()
        header = dec.update(packet[:16]) + dec.finalize()
        aead = method.aead(blake3_subkey(psk, header[:8]))
        try:
            body = aead.decrypt(header[4:16], packet[16:], None)
        except Exception:
            raise DecodeError("authentication failed", reason="bad_tag") from None
    want_type = HEADER_TYPE_SERVER if from_server else HEADER_TYPE_CLIENT
    if len(body) < 11 or body[0] != want_type:
        raise DecodeError("bad packet header", reason="bad_header")
    ts = int.from_bytes(body[1:9], "big")
    if abs(ts - now) > SIP022_MAX_TIME_DIFF_S:
        raise ReplayError("timestamp out of window", reason="bad_timestamp")
    off = 9
    csid = None
    if from_server:
        csid = body[off : off + 8]
        off += 8
    if len(body) < off + 2:
        raise DecodeError("truncated header", reason="bad_header")
    pad = int.from_bytes(body[off : off + 2], "big")
    off += 2 + pad
    got = decode_address(body, off) if off < len(body) else None
    if got is None:
        raise DecodeError("truncated address", reason="bad_address")
    addr, off = got
    return Packet2022(header[:8], int.from_bytes(header[8:16], "big"), body[0], ts, csid, addr, body[off:])
