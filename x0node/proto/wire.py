"""Bounds-checked binary codec primitives.

Rules:
- Bytes from outside are read only through `Reader`; every read checks the remaining length first and
  any violation (short input, trailing bytes, out-of-range value, unknown tag) raises `DecodeError`, the
  one error type of decoding. Nothing else escapes a decoder.
- All integers are big-endian and unsigned.
- `Writer` is for our own values and checks ranges too (a bad local value is a programming error:
  `ValueError`).
"""

from __future__ import annotations

import struct

from x0node.errors import DecodeError
from x0node.proto.protocol import MAX_DATAGRAM_BYTES

__all__ = ["DecodeError", "Reader", "Writer"]


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """Sequential reader over untrusted bytes."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, max_len: int = MAX_DATAGRAM_BYTES) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError("not bytes")
        if len(data) > max_len:
            raise DecodeError("too long")
        self._data = bytes(data)
        self._pos = 0

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def raw(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise DecodeError("truncated")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        if self._pos + 1 > len(self._data):
            raise DecodeError("truncated")
        v = self._data[self._pos]
        self._pos += 1
        return v

    def u16(self) -> int:
        return _U16.unpack(self.raw(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.raw(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.raw(8))[0]

    def count(self, maximum: int) -> int:
        """A u8 element count that must not exceed `maximum`."""
        n = self.u8()
        if n > maximum:
            raise DecodeError("count over limit")
        return n

    def end(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError("trailing bytes")

    def consumed(self) -> bytes:
        return self._data[: self._pos]


class Writer:
    """Builds bytes from our own (trusted) values."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def raw(self, b: bytes, n: int | None = None) -> Writer:
        if n is not None and len(b) != n:
            raise ValueError(f"expected {n} bytes, got {len(b)}")
        self._parts.append(bytes(b))
        return self

    def u8(self, v: int) -> Writer:
        if not 0 <= v <= 0xFF:
            raise ValueError(f"u8 out of range: {v}")
        self._parts.append(bytes((v,)))
        return self

    def u16(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"u16 out of range: {v}")
        self._parts.append(_U16.pack(v))
        return self

    def u32(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError(f"u32 out of range: {v}")
        self._parts.append(_U32.pack(v))
        return self

    def u64(self, v: int) -> Writer:
        if not 0 <= v <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError(f"u64 out of range: {v}")
        self._parts.append(_U64.pack(v))
        return self

    def bytes(self) -> bytes:
        return b"".join(self._parts)
