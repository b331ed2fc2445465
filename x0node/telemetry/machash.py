"""SipHash-2-4 (Aumasson & Bernstein, 2012) as computed in the kernel by xdp_mac_stats (pure).

The program hashes the 6-byte source MAC under a 128-bit key (two little-endian u64 words, as
written into its read-only globals) and uses the 64-bit result as the map key; this module is the
reference the tests compare the kernel's output against. It is not used on the data path.
"""

from __future__ import annotations

import struct

MASK64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & MASK64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & MASK64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & MASK64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & MASK64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(key: bytes, msg: bytes) -> int:
    if len(key) != 16:
        raise ValueError("SipHash key is 16 bytes")
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    tail = len(msg) % 8
    for off in range(0, len(msg) - tail, 8):
        (m,) = struct.unpack_from("<Q", msg, off)
        v3 ^= m
        for _ in range(2):
            v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    b = ((len(msg) & 0xFF) << 56) | int.from_bytes(msg[len(msg) - tail :], "little")
    v3 ^= b
    for _ in range(2):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(4):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def mac_id(key: bytes, mac: bytes) -> str:
    """The source id (16 hex digits) that the telemetry reports for `mac` under `key`."""
    if len(mac) != 6:
        raise ValueError("a MAC address is 6 bytes")
    return f"{siphash24(key, mac):016x}"
