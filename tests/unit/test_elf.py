import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.telemetry import elf

OBJ = pathlib.Path(__file__).resolve().parents[2] / "build" / "bpf" / "xdp_mac_stats.bpf.o"
built = pytest.mark.skipif(not OBJ.exists(), reason="BPF objects not built (make bpf)")


def make_elf(sections: list[tuple[str, int, int, bytes, int, int]]) -> bytes:
    """A 64-bit little-endian EM_BPF object: (name, type, flags, data, link, info) per section after
    the null one; a section whose data is b"" and type SHT_SYMTAB/SHT_REL shares the previous
    section's bytes (overlapping tables, as a hostile file would have)."""
    names = b"\0.shstrtab\0" + b"".join(n.encode() + b"\0" for n, *_ in sections)
    blobs, offsets, off = [], [], 64
    for _, _, _, data, _, _ in sections:
        if data:
            offsets.append((off, len(data)))
            blobs.append(data)
            off += len(data)
        else:
            offsets.append(offsets[-1])
    shstr_off = off
    off += len(names)
    shoff = off
    headers = [bytes(64)]
    name_pos = len(b"\0.shstrtab\0")
    for (name, typ, flags, _, link, info), (o, size) in zip(sections, offsets, strict=True):
        entsize = {elf.SHT_SYMTAB: 24, elf.SHT_REL: 16}.get(typ, 0)
        headers.append(struct.pack("<IIQQQQIIQQ", name_pos, typ, flags, 0, o, size, link, info, 8, entsize))
        name_pos += len(name) + 1
    headers.append(struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, shstr_off, len(names), 0, 0, 1, 0))
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, elf.EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 len(headers), len(headers) - 1)
    return header + b"".join(blobs) + names + b"".join(headers)


def test_symbols_are_capped_in_total_not_per_table():
    table = bytes(24 * elf.ELF_MAX_SYMBOLS)  # every entry names string 0 (the empty name)
    ok = make_elf([(".strtab", 3, 0, b"\0", 0, 0), (".symtab", elf.SHT_SYMTAB, 0, table, 1, 0)])
    assert len(elf.parse(ok).symbols) == elf.ELF_MAX_SYMBOLS
    # a second table over the same bytes doubles the count without adding a byte to the file
    hostile = make_elf([(".strtab", 3, 0, b"\0", 0, 0), (".symtab", elf.SHT_SYMTAB, 0, table, 1, 0),
                        (".symtab2", elf.SHT_SYMTAB, 0, b"", 1, 0)])
    with pytest.raises(elf.ElfError, match="symbols"):
        elf.parse(hostile)


def test_relocations_are_capped_in_total():
    rels = bytes(16 * (elf.ELF_MAX_RELOCS // 2 + 1))
    hostile = make_elf([("xdp", elf.SHT_PROGBITS, elf.SHF_EXECINSTR, bytes(8), 0, 0),
                        (".relxdp", elf.SHT_REL, 0, rels, 0, 1), (".relxdp2", elf.SHT_REL, 0, b"", 0, 1)])
    with pytest.raises(elf.ElfError, match="relocations"):
        elf.parse(hostile)
    fine = make_elf([("xdp", elf.SHT_PROGBITS, elf.SHF_EXECINSTR, bytes(8), 0, 0), (".relxdp", elf.SHT_REL, 0, rels, 0, 1)])
    o = elf.parse(fine)
    assert len(o.relocations(o.section("xdp"))) == elf.ELF_MAX_RELOCS // 2 + 1


@built
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


@built
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


@built
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
