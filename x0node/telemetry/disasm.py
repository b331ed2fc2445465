"""BPF instruction decoding, disassembly text and the control-flow graph (pure).

Rules:
- input is the raw `struct bpf_insn` array (8 bytes each; `lddw` takes two slots); a truncated or
  unknown instruction is shown as `.insn <hex>` and never raises;
- `names` resolves what the caller knows: map names for `lddw` slots (from ELF relocations or map
  ids) and helper names for calls; the disassembler itself has no I/O;
- the CFG splits at jump targets and after jumps/exits; edges carry "T" (taken), "F" (fall through)
  or "" (unconditional); DOT output is deterministic.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from x0node.telemetry.helper_ids import helper_name

INSN_BYTES = 8
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
SIZE = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}
ALU_OPS = {
    0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=", 0x70: ">>=",
    0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=",
}
JMP_OPS = {
    0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>", 0x70: "s>=", 0xA0: "<",
    0xB0: "<=", 0xC0: "s<", 0xD0: "s<=",
}
ATOMIC_OPS = {0x00: "+=", 0x40: "|=", 0x50: "&=", 0xA0: "^="}
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE = 1, 2, 5, 6
PSEUDO_CALL, PSEUDO_KFUNC_CALL = 1, 2


@dataclass(frozen=True)
class Insn:
    pc: int  # index in 8-byte slots
    code: int
    dst: int
    src: int
    off: int
    imm: int
    imm64: int | None = None  # for lddw

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def slots(self) -> int:
        return 2 if self.imm64 is not None else 1

    @property
    def is_jump(self) -> bool:
        op = self.code & 0xF0
        return self.cls in (BPF_JMP, BPF_JMP32) and op not in (0x80, 0x90)

    @property
    def is_exit(self) -> bool:
        return self.cls == BPF_JMP and (self.code & 0xF0) == 0x90

    @property
    def is_call(self) -> bool:
        return self.cls == BPF_JMP and (self.code & 0xF0) == 0x80

    @property
    def is_conditional(self) -> bool:
        return self.is_jump and (self.code & 0xF0) != 0x00

    @property
    def target(self) -> int | None:
        if not self.is_jump:
            return None
        off = self.imm if (self.cls == BPF_JMP32 and (self.code & 0xF0) == 0x00) else self.off
        return self.pc + 1 + off


def decode(raw: bytes) -> list[Insn]:
    out: list[Insn] = []
    n = len(raw) // INSN_BYTES
    pc = 0
    while pc < n:
        code, regs, off, imm = struct.unpack_from("<BBhi", raw, pc * INSN_BYTES)
        dst, src = regs & 0x0F, regs >> 4
        if code == 0x18 and pc + 1 < n:  # lddw: 64-bit immediate in two slots
            (imm_hi,) = struct.unpack_from("<i", raw, (pc + 1) * INSN_BYTES + 4)
            imm64 = (imm & 0xFFFFFFFF) | ((imm_hi & 0xFFFFFFFF) << 32)
            out.append(Insn(pc, code, dst, src, off, imm, imm64))
            pc += 2
            continue
        out.append(Insn(pc, code, dst, src, off, imm))
        pc += 1
    return out


def _reg(n: int, wide: bool = True) -> str:
    return f"{'r' if wide else 'w'}{n}"


def text(
    insn: Insn,
    map_name: Callable[[Insn], str | None] = lambda i: None,
    call_name: Callable[[Insn], str | None] = lambda i: None,
) -> str:
    c, cls, op = insn.code, insn.cls, insn.code & 0xF0
    x = bool(c & 0x08)
    if cls in (BPF_ALU, BPF_ALU64):
        wide = cls == BPF_ALU64
        d = _reg(insn.dst, wide)
        if op == 0x80:
            return f"{d} = -{d}"
        if op == 0xD0:
            kind = "be" if x else ("le" if cls == BPF_ALU else "bswap")
            return f"{d} = {kind}{insn.imm} {d}"
        sym = ALU_OPS.get(op)
        if sym is None:
            return f".insn {c:02x}"
        if op == 0xB0 and x and wide and insn.off == 1:  # kernel-internal: per-CPU pointer to address
            return f"{d} = &(void __percpu *)({_reg(insn.src)})"
        if op == 0xB0 and x and insn.off in (8, 16, 32):  # cpu v4 sign-extending move
            return f"{d} = (s{insn.off}){_reg(insn.src, wide)}"
        rhs = _reg(insn.src, wide) if x else str(insn.imm)
        return f"{d} {sym} {rhs}"
    if cls in (BPF_JMP, BPF_JMP32):
        if op == 0x90:
            return "exit"
        if op == 0x80:
            name = call_name(insn)
            if insn.src == PSEUDO_CALL:
                return f"call pc{insn.pc + 1 + insn.imm:+d}" if name is None else f"call {name}"
            if insn.src == PSEUDO_KFUNC_CALL:
                return f"call kfunc#{insn.imm}" if name is None else f"call {name}"
            return f"call {name or helper_name(insn.imm)}#{insn.imm}"
        if op == 0x00:
            return f"goto L{insn.target}"
        sym = JMP_OPS.get(op)
        if sym is None:
            return f".insn {c:02x}"
        wide = cls == BPF_JMP
        rhs = _reg(insn.src, wide) if x else str(insn.imm)
        return f"if {_reg(insn.dst, wide)} {sym} {rhs} goto L{insn.target}"
    size = SIZE[c & 0x18]
    mode = c & 0xE0
    if cls == BPF_LD and insn.imm64 is not None:
        name = map_name(insn)
        if insn.src in (PSEUDO_MAP_FD, PSEUDO_MAP_IDX):
            return f"r{insn.dst} = map[{name or insn.imm}] ll"
        if insn.src in (PSEUDO_MAP_VALUE, PSEUDO_MAP_IDX_VALUE):
            return f"r{insn.dst} = map_value[{name or insn.imm}] + {insn.imm64 >> 32} ll"
        return f"r{insn.dst} = {insn.imm64:#x} ll" if name is None else f"r{insn.dst} = {name} ll"
    if cls == BPF_LD and mode in (0x20, 0x40):
        where = f"{insn.imm}" if mode == 0x20 else f"r{insn.src} + {insn.imm}"
        return f"r0 = *({size} *)skb[{where}]"
    if cls == BPF_LDX and mode == 0x60:
        return f"r{insn.dst} = *({size} *)(r{insn.src} {insn.off:+d})"
    if cls == BPF_LDX and mode == 0x80:
        return f"r{insn.dst} = *(s{size[1:]} *)(r{insn.src} {insn.off:+d})"
    if cls == BPF_ST and mode == 0x60:
        return f"*({size} *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
    if cls == BPF_STX and mode == 0x60:
        return f"*({size} *)(r{insn.dst} {insn.off:+d}) = r{insn.src}"
    if cls == BPF_STX and mode == 0xC0:
        base = insn.imm & ~0x01
        sym = ATOMIC_OPS.get(base)
        fetch = " (fetch)" if insn.imm & 0x01 else ""
        if sym:
            return f"lock *({size} *)(r{insn.dst} {insn.off:+d}) {sym} r{insn.src}{fetch}"
        return f"atomic#{insn.imm:#x} *({size} *)(r{insn.dst} {insn.off:+d}), r{insn.src}"
    return f".insn {c:02x}"


@dataclass(frozen=True)
class Block:
    start: int
    end: int  # pc of the last instruction in the block
    insns: tuple[Insn, ...]


@dataclass(frozen=True)
class Cfg:
    blocks: tuple[Block, ...]
    edges: tuple[tuple[int, int, str], ...]  # (from block start, to block start, label)


def cfg(insns: list[Insn]) -> Cfg:
    if not insns:
        return Cfg((), ())
    valid = {i.pc for i in insns}
    leaders = {insns[0].pc}
    for idx, i in enumerate(insns):
        if i.is_jump:
            if i.target in valid:
                leaders.add(i.target)  # type: ignore[arg-type]
            if idx + 1 < len(insns):
                leaders.add(insns[idx + 1].pc)
        elif i.is_exit and idx + 1 < len(insns):
            leaders.add(insns[idx + 1].pc)
    blocks: list[Block] = []
    cur: list[Insn] = []
    for i in insns:
        if i.pc in leaders and cur:
            blocks.append(Block(cur[0].pc, cur[-1].pc, tuple(cur)))
            cur = []
        cur.append(i)
    if cur:
        blocks.append(Block(cur[0].pc, cur[-1].pc, tuple(cur)))
    edges: list[tuple[int, int, str]] = []
    for n, b in enumerate(blocks):
        last = b.insns[-1]
        nxt = blocks[n + 1].start if n + 1 < len(blocks) else None
        if last.is_exit:
            continue
        if last.is_jump:
            if last.target in valid:
                edges.append((b.start, last.target, "T" if last.is_conditional else ""))  # type: ignore[arg-type]
            if last.is_conditional and nxt is not None:
                edges.append((b.start, nxt, "F"))
        elif nxt is not None:
            edges.append((b.start, nxt, ""))
    return Cfg(tuple(blocks), tuple(edges))


def _dot_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\<").replace(">", "\\>").replace(
        "{", "\\{").replace("}", "\\}").replace("|", "\\|")


def dot(graph: Cfg, title: str, label_of: Callable[[Insn], str]) -> str:
    lines = [
        f'digraph "{_dot_escape(title)}" {{',
        '  node [shape=record, fontname="monospace", fontsize=9];',
        f'  label="{_dot_escape(title)}"; labelloc=t;',
    ]
    for b in graph.blocks:
        body = "\\l".join(_dot_escape(f"{i.pc:4d}: {label_of(i)}") for i in b.insns) + "\\l"
        lines.append(f'  b{b.start} [label="{{L{b.start}|{body}}}"];')
    for a, z, lab in graph.edges:
        attr = f' [label="{lab}"]' if lab else ""
        lines.append(f"  b{a} -> b{z}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def listing(
    insns: list[Insn],
    label_of: Callable[[Insn], str],
    targets: set[int] | None = None,
    source: Mapping[int, str] | None = None,
) -> str:
    """Disassembly text with `L<pc>:` jump labels and optional per-pc notes (source lines) above."""
    targets = targets if targets is not None else {i.target for i in insns if i.is_jump and i.target is not None}
    out = []
    for i in insns:
        if i.pc in targets:
            out.append(f"L{i.pc}:")
        if source and i.pc in source:
            out.append(f"        {source[i.pc]}")
        out.append(f"  {i.pc:4d}: {label_of(i)}")
    return "\n".join(out)


def helpers_used(insns: list[Insn], call_name: Mapping[int, str] | None = None) -> list[str]:
    names = set()
    for i in insns:
        if i.is_call and i.src == 0:
            names.add((call_name or {}).get(i.pc) or helper_name(i.imm))
    return sorted(names)
