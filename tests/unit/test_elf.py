import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.telemetry import elf

OBJ = pathlib.Path(__file__).resolve().parents[2] / "build" / "bpf" / "xdp_mac_stats.bpf.o"
if not OBJ.exists():
    pytest.skip("BPF objects not built (make bpf)", allow_module_level=True)


def test_parses_built_object():
    o = elf.parse(OBJ.read_bytes())
    assert o.machine == elf.EM_BPF
    assert o.license() == "GPL"
    xdp = o.section("xdp")
    assert xdp is not None and xdp.executable
    assert {o.symbols[r.symbol].name for r in o.relocations(xdp)} >= {"if_stats", "mac_stats"}


@pytest.mark.parametrize(
    "data",
    [b"", b"\x7fELF", b"\x7fELF" + b"\x01" * 60, b"MZ" + bytes(100)],
)
def test_garbage_raises_elf_error(data):
    with pytest.raises(elf.ElfError):
        elf.parse(data)


def test_truncated_and_corrupted_headers_raise_elf_error():
    raw = bytearray(OBJ.read_bytes())
    with pytest.raises(elf.ElfError):
        elf.parse(bytes(raw[:200]))
    bad = bytearray(raw)
    struct.pack_into("<H", bad, 60, 60000)  # e_shnum
    with pytest.raises(elf.ElfError):
        elf.parse(bytes(bad))
    bad = bytearray(raw)
    struct.pack_into("<H", bad, 62, 999)  # e_shstrndx
    with pytest.raises(elf.ElfError):
        elf.parse(bytes(bad))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9607), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_objects_parse_or_raise_elf_error(edits):
    raw = bytearray(OBJ.read_bytes())
    for pos, val in edits:
        raw[pos % len(raw)] = val
    try:
        o = elf.parse(bytes(raw))
    except elf.ElfError:
        return
    for sec in o.sections:
        o.relocations(sec)
    o.license()
