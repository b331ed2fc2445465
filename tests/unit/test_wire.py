import pytest

from x0node.proto.protocol import MAX_DATAGRAM_BYTES
from x0node.proto.wire import DecodeError, Reader, Writer


def test_round_trip_integers():
    data = Writer().u8(7).u16(0xBEEF).u32(0xDEADBEEF).u64(2**64 - 1).raw(b"xy").bytes()
    r = Reader(data)
    assert (r.u8(), r.u16(), r.u32(), r.u64(), r.raw(2)) == (7, 0xBEEF, 0xDEADBEEF, 2**64 - 1, b"xy")
    r.end()


def test_truncation_and_trailing_raise_decode_error():
    with pytest.raises(DecodeError):
        Reader(b"\x01").u16()
    with pytest.raises(DecodeError):
        Reader(b"").u8()
    r = Reader(b"\x01\x02")
    r.u8()
    with pytest.raises(DecodeError):
        r.end()
    with pytest.raises(DecodeError):
        Reader(b"ab").raw(3)


def test_count_limit_and_size_limit():
    with pytest.raises(DecodeError):
        Reader(b"\x05").count(4)
    assert Reader(b"\x04").count(4) == 4
    with pytest.raises(DecodeError):
        Reader(b"\x00" * (MAX_DATAGRAM_BYTES + 1))
    with pytest.raises(DecodeError):
        Reader("not bytes")  # type: ignore[arg-type]


def test_writer_rejects_out_of_range():
    with pytest.raises(ValueError):
        Writer().u8(256)
    with pytest.raises(ValueError):
        Writer().u16(-1)
    with pytest.raises(ValueError):
        Writer().raw(b"abc", 2)
