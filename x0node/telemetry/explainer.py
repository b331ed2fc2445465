"""`x0node bpf explain`: what a BPF program does, in terms a reviewer can check.

For an object file (or a shipped program's name) it shows, per program: section and kind,
instruction count, the maps it uses (with type, key/value size, entries), the helpers it calls, the
disassembly with jump labels, and its control-flow graph as DOT (and SVG when Graphviz `dot` is
installed). For a program loaded in the kernel (`id:N`) it shows the same from the kernel's
translated instructions, with map names from map ids and calls named from /proc/kallsyms.

Rules: the building of an explanation (`explain_elf`, `render`) is pure; reading files, libbpf,
kallsyms and running `dot` happen in the thin functions at the bottom; a bad object gives an error
message, not a traceback.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess  # graphviz `dot` with a fixed argv, never a shell # nosec B404
from collections.abc import Mapping
from dataclasses import dataclass, field

from x0node.telemetry import btf, disasm, elf
from x0node.telemetry.loader import MapInfo

STT_FUNC, STT_SECTION = 2, 3
DOT_TIMEOUT_S = 20.0
KALLSYMS_MAX_LINES = 2_000_000


@dataclass(frozen=True)
class ProgramExplanation:
    name: str
    section: str
    insns: tuple[disasm.Insn, ...]
    names: Mapping[int, str]  # pc -> map or call name
    maps: tuple[MapInfo, ...]
    helpers: tuple[str, ...]
    cfg: disasm.Cfg
    lines: Mapping[int, btf.SourceLine] = field(default_factory=dict)  # pc -> C source line

    def label(self, insn: disasm.Insn) -> str:
        return disasm.text(insn, map_name=lambda i: self.names.get(i.pc), call_name=lambda i: self.names.get(i.pc))

    def dot(self) -> str:
        return disasm.dot(self.cfg, f"{self.name} ({self.section})", self.label)


@dataclass(frozen=True)
class ObjectExplanation:
    source: str
    license: str
    sha256: str
    programs: tuple[ProgramExplanation, ...]
    extra: Mapping[str, str]


def _symbol_name(obj: elf.ElfObject, idx: int) -> str:
    if idx >= len(obj.symbols):
        return f"sym#{idx}"
    sym = obj.symbols[idx]
    if sym.type == STT_SECTION and sym.section < len(obj.sections):
        return obj.sections[sym.section].name
    return sym.name


def explain_elf(data: bytes, maps: list[MapInfo], source: str) -> ObjectExplanation:
    import hashlib

    obj = elf.parse(data)
    by_name = {m.name: m for m in maps}
    btf_sec, ext_sec = obj.section(".BTF"), obj.section(".BTF.ext")
    lines = btf.line_info(obj.section_data(btf_sec), obj.section_data(ext_sec)) if btf_sec and ext_sec else {}
    progs = []
    for sec in obj.sections:
        if not sec.executable or sec.size == 0:
            continue
        insns = disasm.decode(obj.section_data(sec))
        names = {r.offset // disasm.INSN_BYTES: _symbol_name(obj, r.symbol) for r in obj.relocations(sec)}
        funcs = [s for s in obj.symbols if s.section == sec.index and s.type == STT_FUNC]
        func_name = min(funcs, key=lambda s: s.value).name if funcs else sec.name
        used = []
        for n in sorted(set(names.values())):
            m = by_name.get(n) or next((v for k, v in by_name.items() if k.endswith(n)), None)
            if m is not None and m not in used:
                used.append(m)
        helpers = tuple(disasm.helpers_used(insns))
        progs.append(
            ProgramExplanation(
                func_name, sec.name, tuple(insns), names, tuple(used), helpers, disasm.cfg(insns), lines.get(sec.name, {})
            )
        )
    return ObjectExplanation(source, obj.license() or "(none)", hashlib.sha256(data).hexdigest(), tuple(progs), {})


def render(ex: ObjectExplanation, with_listing: bool = True) -> str:
    out = [f"object   {ex.source}", f"sha256   {ex.sha256}", f"license  {ex.license}"]
    for k, v in ex.extra.items():
        out.append(f"{k:<8} {v}")
    for p in ex.programs:
        n_cond = sum(1 for i in p.insns if i.is_conditional)
        out += [
            "",
            f"program {p.name}  section {p.section}",
            f"  instructions {sum(i.slots for i in p.insns)}  basic blocks {len(p.cfg.blocks)}  "
            f"branches {n_cond}  cfg edges {len(p.cfg.edges)}",
            "  maps:",
        ]
        for m in p.maps:
            out.append(
                f"    {m.name:<20} {m.type_name:<16} key {m.key_size}B value {m.value_size}B max_entries {m.max_entries}"
            )
        if not p.maps:
            out.append("    (none)")
        out.append("  helpers: " + (", ".join(p.helpers) if p.helpers else "(none)"))
        if with_listing:
            out.append("  disassembly:" + ("  (C source lines from BTF as ;-comments)" if p.lines else ""))
            out.append(disasm.listing(list(p.insns), p.label, source=_source_notes(p)))
    return "\n".join(out) + "\n"


def _source_notes(p: ProgramExplanation) -> dict[int, str]:
    """pc -> '; file:line text', only where the source line changes and has text."""
    notes: dict[int, str] = {}
    last: tuple[str, int] | None = None
    for i in p.insns:
        sl = p.lines.get(i.pc)
        if sl is None or not sl.text or (sl.file, sl.line) == last:
            continue
        last = (sl.file, sl.line)
        notes[i.pc] = f"; {sl.file.rsplit('/', 1)[-1]}:{sl.line}  {sl.text}"
    return notes


# --- I/O adapters ----------------------------------------------------------------------------------


def explain_file(path: str) -> ObjectExplanation:
    from x0node.telemetry.loader import BpfObject

    with open(path, "rb") as fh:
        data = fh.read(8 * 1024 * 1024)
    maps: list[MapInfo] = []
    try:
        obj = BpfObject(path, pin_root=None)
        try:
            maps = obj.map_infos()
        finally:
            obj.close()
    except Exception:  # noqa: BLE001 - without libbpf we still disassemble, just without map shapes
        maps = []
    return explain_elf(data, maps, path)


def _kallsyms() -> tuple[int, dict[int, str]]:
    base = 0
    table: dict[int, str] = {}
    try:
        with open("/proc/kallsyms", encoding="ascii", errors="replace") as fh:
            for n, line in enumerate(fh):
                if n > KALLSYMS_MAX_LINES:
                    break
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue
                addr = int(parts[0], 16)
                if parts[2] == "__bpf_call_base":
                    base = addr
                table[addr] = parts[2]
    except OSError:
        pass
    return base, table


def explain_loaded(prog_id: int) -> ObjectExplanation:
    """Explain a program loaded in the kernel from its translated (xlated) instructions."""
    import ctypes

    from x0node.telemetry import libbpf, profiler

    fd = libbpf.prog_fd_by_id(prog_id)
    try:
        info = profiler.parse_prog_info(libbpf.obj_info(fd, libbpf.PROG_INFO_BYTES))
        nbytes = info.xlated_bytes
        insn_buf = ctypes.create_string_buffer(max(nbytes, 8))
        buf = ctypes.create_string_buffer(libbpf.PROG_INFO_BYTES)
        struct.pack_into("<I", buf, 20, nbytes)
        struct.pack_into("<Q", buf, 32, ctypes.addressof(insn_buf))
        ln = ctypes.c_uint32(libbpf.PROG_INFO_BYTES)
        libbpf.check(libbpf.lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(ln)), "xlated instructions")
        stats = profiler.read_all(frozenset({info.name}))
        map_ids = next((s.map_ids for s in stats if s.id == prog_id), ())
    finally:
        os.close(fd)
    maps: dict[int, MapInfo] = {}
    for mid in map_ids:
        try:
            mfd = libbpf.map_fd_by_id(mid)
        except libbpf.BpfError:
            continue
        try:
            raw = libbpf.obj_info(mfd, libbpf.MAP_INFO_BYTES)
            mtype, _id, ks, vs, me = struct.unpack_from("<IIIII", raw, 0)
            name = raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
            maps[mid] = MapInfo(name, mtype, ks, vs, me)
        finally:
            os.close(mfd)
    insns = disasm.decode(insn_buf.raw[:nbytes])
    base, syms = _kallsyms()
    names: dict[int, str] = {}
    for i in insns:
        if i.imm64 is not None and i.src in (disasm.PSEUDO_MAP_FD, disasm.PSEUDO_MAP_VALUE) and i.imm in maps:
            names[i.pc] = maps[i.imm].name
        elif i.is_call and i.src == 0 and base:
            sym = syms.get(base + i.imm)
            if sym:
                names[i.pc] = sym
    helpers = tuple(sorted({names.get(i.pc, f"call#{i.imm}") for i in insns if i.is_call and i.src == 0}))
    prog = ProgramExplanation(
        info.name, info.type, tuple(insns), names, tuple(maps.values()), helpers, disasm.cfg(insns)
    )
    extra = {"id": str(prog_id), "tag": info.tag, "runs": str(info.run_cnt)}
    return ObjectExplanation(f"kernel program id {prog_id}", "(loaded)", "(n/a)", (prog,), extra)


def write_graphs(ex: ObjectExplanation, outdir: str, svg: bool = True) -> list[str]:
    """Write <program>.dot (and .svg when Graphviz is installed) into `outdir`; returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    written = []
    have_dot = shutil.which("dot") is not None
    for p in ex.programs:
        base = os.path.join(outdir, p.name)
        with open(base + ".dot", "w", encoding="utf-8") as fh:
            fh.write(p.dot())
        written.append(base + ".dot")
        if svg and have_dot:
            subprocess.run(  # fixed argv, no shell; `dot` from PATH on development hosts # nosec B603 B607
                ["dot", "-Tsvg", base + ".dot", "-o", base + ".svg"], check=True, timeout=DOT_TIMEOUT_S,
                capture_output=True,
            )
            written.append(base + ".svg")
    return written
