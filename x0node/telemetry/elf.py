"""A minimal, bounded ELF64 little-endian reader for BPF objects (pure: bytes in, tables out).

Rules:
- every offset and size is checked against the buffer before use; a malformed file raises
  `ElfError` with the reason, never IndexError/struct.error;
- only what the validator and the explainer need: section headers and names, the symbol table and
  REL relocations (BPF objects use SHT_REL);
- counts are capped *in total* before anything is built (ELF_MAX_SECTIONS, ELF_MAX_SYMBOLS over all
  symbol tables, ELF_MAX_RELOCS over all REL sections): section headers may point many tables at the
  same bytes, so a per-table cap would let a 2 MiB file describe billions of entries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_MAGIC = b"\x7fELF"
EM_BPF = 247
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_REL = 9
SHF_EXECINSTR = 0x4
ELF_MAX_SECTIONS = 512
ELF_MAX_SYMBOLS = 65536
ELF_MAX_RELOCS = 65536


class ElfError(ValueError):
    """The bytes are not a well-formed 64-bit little-endian BPF ELF object."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    section: int
    type: int  # STT_*
    bind: int


@dataclass(frozen=True)
class Reloc:
    offset: int  # byte offset inside the target section
    symbol: int
    type: int


@dataclass(frozen=True)
class ElfObject:
    data: bytes
    machine: int
    sections: tuple[Section, ...]
    symbols: tuple[Symbol, ...]

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def section_data(self, sec: Section) -> bytes:
        if sec.type == 8:  # SHT_NOBITS (.bss)
            return b""
        return self.data[sec.offset : sec.offset + sec.size]

    def relocations(self, target: Section) -> list[Reloc]:
        """REL entries that apply to `target`."""
        out: list[Reloc] = []
        for s in self.sections:
            if s.type == SHT_REL and s.info == target.index:
                raw = self.section_data(s)
                for off in range(0, len(raw) - 15, 16):
                    r_offset, r_info = struct.unpack_from("<QQ", raw, off)
                    out.append(Reloc(r_offset, r_info >> 32, r_info & 0xFFFFFFFF))
        return out

    def license(self) -> str | None:
        sec = self.section("license")
        if sec is None:
            return None
        return self.section_data(sec).split(b"\0", 1)[0].decode("ascii", errors="replace")


def _cstring(table: bytes, off: int) -> str:
    if off >= len(table):
        raise ElfError(f"string offset {off} outside string table")
    end = table.find(b"\0", off)
    if end < 0:
        raise ElfError("unterminated string in string table")
    return table[off:end].decode("utf-8", errors="replace")


def parse(data: bytes) -> ElfObject:
    if len(data) < 64 or data[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    (e_machine,) = struct.unpack_from("<H", data, 18)
    e_shoff, = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if e_shentsize != 64:
        raise ElfError(f"unexpected section header size {e_shentsize}")
    if e_shnum > ELF_MAX_SECTIONS:
        raise ElfError(f"{e_shnum} sections (at most {ELF_MAX_SECTIONS})")
    if e_shoff + e_shnum * 64 > len(data):
        raise ElfError("section headers run past the end of the file")
    raw_secs = []
    for i in range(e_shnum):
        name, typ, flags, _addr, off, size, link, info, _align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, e_shoff + i * 64
        )
        if typ != 8 and off + size > len(data):
            raise ElfError(f"section {i} runs past the end of the file")
        raw_secs.append((name, typ, flags, off, size, link, info, entsize))
    if e_shstrndx >= len(raw_secs):
        raise ElfError("bad section name table index")
    _, _, _, str_off, str_size, _, _, _ = raw_secs[e_shstrndx]
    shstr = data[str_off : str_off + str_size]
    sections = tuple(
        Section(i, _cstring(shstr, n) if i else "", t, f, o, s, lk, inf, es)
        for i, (n, t, f, o, s, lk, inf, es) in enumerate(raw_secs)
    )
    total = sum(sec.size // 24 for sec in sections if sec.type == SHT_SYMTAB)
    if total > ELF_MAX_SYMBOLS:
        raise ElfError(f"{total} symbols in all symbol tables (at most {ELF_MAX_SYMBOLS})")
    total = sum(sec.size // 16 for sec in sections if sec.type == SHT_REL)
    if total > ELF_MAX_RELOCS:
        raise ElfError(f"{total} relocations in all REL sections (at most {ELF_MAX_RELOCS})")
    symbols: list[Symbol] = []
    for sec in sections:
        if sec.type != SHT_SYMTAB:
            continue
        if sec.link >= len(sections):
            raise ElfError("symbol table links to a missing string table")
        strtab = data[sections[sec.link].offset : sections[sec.link].offset + sections[sec.link].size]
        for j in range(sec.size // 24):
            st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", data, sec.offset + j * 24
            )
            symbols.append(Symbol(_cstring(strtab, st_name), st_value, st_size, st_shndx, st_info & 0xF, st_info >> 4))
    return ElfObject(data, e_machine, sections, tuple(symbols))
