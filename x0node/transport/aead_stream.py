"""AEAD chunk stream shared by Shadowsocks AEAD (SIP004) and 2022 (SIP022) over TCP.

Wire (after the salt, which the session codecs handle):
    [AEAD(len u16be)] [AEAD(payload of len bytes)] ...
with one nonce per AEAD call (96-bit little-endian counter from zero). SIP004 caps a payload at
0x3FFF bytes, SIP022 at 0xFFFF.

Invariants:
- The decryptor never yields plaintext that failed authentication; the first failure raises
  DecodeError and the decryptor stays failed (every later call raises too).
- A length above the cap is a DecodeError (fail closed, no resync).
- Buffered ciphertext is bounded by one sealed chunk plus one read.
"""

from __future__ import annotations

from x0node.transport.crypto import NONCE_LEN, TAG_LEN, Aead
from x0node.transport.errors import DecodeError

SIP004_MAX_PAYLOAD = 0x3FFF
SIP022_MAX_PAYLOAD = 0xFFFF
LEN_BLOCK = 2 + TAG_LEN


class StreamEncryptor:
    __slots__ = ("_aead", "_counter", "max_payload")

    def __init__(self, aead: Aead, max_payload: int) -> None:
        self._aead = aead
        self._counter = 0
        self.max_payload = max_payload

    def seal_block(self, plain: bytes) -> bytes:
        """One AEAD block (no length prefix) with the next nonce."""
        c = self._counter
        self._counter = c + 1
        return self._aead.encrypt(c.to_bytes(NONCE_LEN, "little"), plain, None)

    def seal(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Length-prefixed chunks carrying `data` (empty data yields nothing)."""
        enc = self._aead.encrypt
        c = self._counter
        cap = self.max_payload
        out: list[bytes] = []
        n = len(data)
        mv = memoryview(data) if n > cap else data
        pos = 0
        while pos < n:
            ln = n - pos if n - pos < cap else cap
            out.append(enc(c.to_bytes(NONCE_LEN, "little"), ln.to_bytes(2, "big"), None))
            piece = data if ln == n else mv[pos : pos + ln]
            out.append(enc((c + 1).to_bytes(NONCE_LEN, "little"), piece, None))
            c += 2
            pos += ln
        self._counter = c
        return out


class StreamDecryptor:
    __slots__ = ("_aead", "_counter", "_buf", "_pending", "_failed", "max_payload")

    def __init__(self, aead: Aead, max_payload: int) -> None:
        self._aead = aead
        self._counter = 0
        self._buf = bytearray()
        self._pending = -1  # payload length announced by the last length chunk, -1 = none
        self._failed = False
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise DecodeError("stream already failed", reason="failed")
        self._buf += data

    def _open(self, block: bytes | memoryview) -> bytes:
        c = self._counter
        self._counter = c + 1
        try:
            return self._aead.decrypt(c.to_bytes(NONCE_LEN, "little"), block, None)
        except Exception:  # cryptography raises InvalidTag; anything else is also a failure
            self._failed = True
            raise DecodeError("authentication failed", reason="bad_tag") from None

    def take_block(self, plain_len: int) -> bytes | None:
        """Decrypt exactly one block of `plain_len` plaintext bytes, or None if not buffered yet."""
        if self._failed:
            raise DecodeError("stream already failed", reason="failed")
        need = plain_len + TAG_LEN
        if len(self._buf) < need:
            return None
        block = bytes(self._buf[:need])
        del self._buf[:need]
        return self._open(block)

    def chunks(self, data: bytes | bytearray | memoryview = b"") -> list[bytes]:
        """Feed `data` and return the plaintext of every complete chunk now buffered.

        Fast path: with nothing buffered, chunks are opened straight from `data` (no copy) and
        only the incomplete tail is kept."""
        if self._failed:
            raise DecodeError("stream already failed", reason="failed")
        buf = self._buf
        if buf:
            if data:
                buf += data
            src = buf
        else:
            src = data
        out: list[bytes] = []
        n = len(src)
        pos = 0
        pending = self._pending
        dec = self._aead.decrypt
        c = self._counter
        mv = memoryview(src)
        try:
            while True:
                if pending < 0:
                    if n - pos < LEN_BLOCK:
                        break
                    try:
                        ln_b = dec(c.to_bytes(NONCE_LEN, "little"), mv[pos : pos + LEN_BLOCK], None)
                    except Exception:
                        self._failed = True
                        raise DecodeError("authentication failed (length)", reason="bad_tag") from None
                    c += 1
                    pos += LEN_BLOCK
                    pending = (ln_b[0] << 8) | ln_b[1]
                    if pending > self.max_payload or pending == 0:
                        self._failed = True
                        raise DecodeError(f"chunk length {pending} out of range", reason="bad_length")
                need = pending + TAG_LEN
                if n - pos < need:
                    break
                try:
                    out.append(dec(c.to_bytes(NONCE_LEN, "little"), mv[pos : pos + need], None))
                except Exception:
                    self._failed = True
                    raise DecodeError("authentication failed (payload)", reason="bad_tag") from None
                c += 1
                pos += need
                pending = -1
        finally:
            self._counter = c
            self._pending = pending
            if src is buf:
                mv.release()
                if pos:
                    del buf[:pos]
            else:
                if pos < n:
                    buf += mv[pos:]
                mv.release()
        return out
