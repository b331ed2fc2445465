"""Frame codec for the TAP tunnel."""

from __future__ import annotations

import pytest

from x0node.transport.frames import KEEPALIVE, FrameDecoder, encode_frame


def test_frames_any_split():
    frames = [b"a" * 60, b"b" * 1500, b"c"]
    wire = KEEPALIVE + b"".join(encode_frame(f) for f in frames) + KEEPALIVE
    d = FrameDecoder()
    got = []
    for i in range(len(wire)):
        got += d.feed(wire[i : i + 1])
    assert got == frames and d.keepalives == 2


def test_too_large():
    with pytest.raises(ValueError):
        encode_frame(bytes(70000))
