"""Source line information from a BPF object's .BTF / .BTF.ext sections (pure, bounded).

clang stores, per program section, records (instruction byte offset -> file, line, source text) in
.BTF.ext `line_info`, with the strings in .BTF. The explainer shows the C line above the
instructions compiled from it. Malformed sections give no line info (an empty mapping), never an
exception: line info is a reading aid, not something a decision depends on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BTF_MAGIC = 0xEB9F
LINE_RECORDS_MAX = 100_000


@dataclass(frozen=True)
class SourceLine:
    file: str
    line: int
    text: str


def _strings(btf: bytes) -> bytes | None:
    if len(btf) < 24:
        return None
    magic, _ver, _flags, hdr_len, _toff, _tlen, soff, slen = struct.unpack_from("<HBBIIIII", btf, 0)
    if magic != BTF_MAGIC or hdr_len + soff + slen > len(btf):
        return None
    return btf[hdr_len + soff : hdr_len + soff + slen]


def _str(table: bytes, off: int) -> str:
    if off >= len(table):
        return ""
    end = table.find(b"\0", off)
    return table[off : end if end >= 0 else len(table)].decode("utf-8", errors="replace")


def line_info(btf: bytes, btf_ext: bytes) -> dict[str, dict[int, SourceLine]]:
    """{section name: {instruction index: SourceLine}}; {} when the sections are missing or malformed."""
    strings = _strings(btf)
    if strings is None or len(btf_ext) < 24:
        return {}
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", btf_ext, 0)
    if magic != BTF_MAGIC or hdr_len < 24:
        return {}
    li_off, li_len = struct.unpack_from("<II", btf_ext, 16)
    start = hdr_len + li_off
    end = start + li_len
    if li_len < 4 or end > len(btf_ext):
        return {}
    (rec_size,) = struct.unpack_from("<I", btf_ext, start)
    if rec_size < 16:
        return {}
    out: dict[str, dict[int, SourceLine]] = {}
    pos = start + 4
    seen = 0
    while pos + 8 <= end:
        sec_off, count = struct.unpack_from("<II", btf_ext, pos)
        pos += 8
        if pos + count * rec_size > end or seen + count > LINE_RECORDS_MAX:
            return out
        sec = out.setdefault(_str(strings, sec_off), {})
        for i in range(count):
            insn_off, file_off, line_off, line_col = struct.unpack_from("<IIII", btf_ext, pos + i * rec_size)
            sec[insn_off // 8] = SourceLine(_str(strings, file_off), line_col >> 10, _str(strings, line_off).strip())
        pos += count * rec_size
        seen += count
    return out
