import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.telemetry import btf, elf

OBJ = pathlib.Path(__file__).resolve().parents[2] / "build" / "bpf" / "tcp_rtt.bpf.o"
if not OBJ.exists():
    pytest.skip("BPF objects not built (make bpf)", allow_module_level=True)


def _sections() -> tuple[bytes, bytes]:
    o = elf.parse(OBJ.read_bytes())
    return o.section_data(o.section(".BTF")), o.section_data(o.section(".BTF.ext"))


def test_line_info_of_built_object():
    lines = btf.line_info(*_sections())
    (sec,) = lines
    assert sec == "raw_tp/tcp_probe"
    first = lines[sec][0]
    assert first.file.endswith("tcp_rtt.bpf.c") and "BPF_PROG(tcp_rtt" in first.text and first.line > 0


def test_missing_or_short_sections_give_nothing():
    assert btf.line_info(b"", b"") == {}
    b, e = _sections()
    assert btf.line_info(b[:10], e) == {}
    assert btf.line_info(b, e[:20]) == {}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_corruption_never_raises(pos, val, in_ext):
    b, e = (bytearray(x) for x in _sections())
    target = e if in_ext else b
    target[pos % len(target)] = val
    btf.line_info(bytes(b), bytes(e))
