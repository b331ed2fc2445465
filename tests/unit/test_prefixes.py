import pytest

from x0node.proto.prefixes import normalise, read_prefix, write_prefix
from x0node.proto.wire import DecodeError, Reader, Writer


def test_round_trip_and_normal_form():
    w = Writer()
    write_prefix(w, normalise("2001:DB8::/32"))
    assert read_prefix(Reader(w.bytes())) == "2001:db8::/32"


@pytest.mark.parametrize("bad", ["10.0.0.0/8", "fe80::/10", "fe80:1::/32", "ff02::1/128", "::1/128", "::/128",
                                 "::ffff:10.0.0.0/104"])
def test_space_the_mesh_never_routes(bad):
    with pytest.raises(ValueError):
        normalise(bad)
    w = Writer()
    write_prefix(w, bad)
    with pytest.raises(DecodeError):
        read_prefix(Reader(w.bytes()))


def test_malformed_wire_prefixes():
    for data in (bytes([5, 0]) + bytes(16), bytes([6, 129]) + bytes(16), bytes([6, 16, 0x20, 0x01, 0x0d]) + bytes(13),
                 bytes([6, 64])):
        with pytest.raises(DecodeError):
            read_prefix(Reader(data))
