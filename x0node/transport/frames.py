"""Ethernet frames over a byte stream (sans-I/O): each frame is u16be length + frame bytes.

A zero length is a keepalive. Invariants: frames are at most MAX_FRAME_BYTES; a decoder never
buffers more than one partial frame (plus the read that completed it); a frame is delivered
whole or not at all.
"""

from __future__ import annotations

MAX_FRAME_BYTES = 65535
KEEPALIVE = b"\x00\x00"


def encode_frame(frame: bytes) -> bytes:
    if len(frame) > MAX_FRAME_BYTES:
        raise ValueError("frame too large")
    return len(frame).to_bytes(2, "big") + frame


class FrameDecoder:
    __slots__ = ("_buf", "keepalives")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.keepalives = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            ln = (buf[pos] << 8) | buf[pos + 1]
            if n - pos - 2 < ln:
                break
            if ln == 0:
                self.keepalives += 1
            else:
                out.append(bytes(buf[pos + 2 : pos + 2 + ln]))
            pos += 2 + ln
        if pos:
            del buf[:pos]
        return out
