import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from x0node.telemetry import disasm


def ins(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


PROG = b"".join([
    ins(0xB7, dst=0, imm=2),            # 0: r0 = 2
    ins(0x61, dst=2, src=1, off=4),     # 1: r2 = *(u32 *)(r1 +4)
    ins(0x15, dst=2, off=2, imm=0),     # 2: if r2 == 0 goto 5
    ins(0x07, dst=0, imm=-1),           # 3: r0 += -1
    ins(0x05, off=1),                   # 4: goto 6
    ins(0x85, imm=1),                   # 5: call bpf_map_lookup_elem
    ins(0x95),                          # 6: exit
])


def test_decode_and_text():
    insns = disasm.decode(PROG)
    texts = [disasm.text(i) for i in insns]
    assert texts == [
        "r0 = 2", "r2 = *(u32 *)(r1 +4)", "if r2 == 0 goto L5", "r0 += -1", "goto L6",
        "call bpf_map_lookup_elem#1", "exit",
    ]
    assert disasm.helpers_used(insns) == ["bpf_map_lookup_elem"]


def test_lddw_takes_two_slots_and_names_maps():
    raw = ins(0x18, dst=1, src=1, imm=7) + ins(0, imm=0) + ins(0x95)
    insns = disasm.decode(raw)
    assert [i.pc for i in insns] == [0, 2]
    assert disasm.text(insns[0], map_name=lambda i: "mac_stats") == "r1 = map[mac_stats] ll"
    assert disasm.text(insns[0]) == "r1 = map[7] ll"


def test_cfg_blocks_and_edges():
    g = disasm.cfg(disasm.decode(PROG))
    assert [b.start for b in g.blocks] == [0, 3, 5, 6]
    assert set(g.edges) == {(0, 5, "T"), (0, 3, "F"), (3, 6, ""), (5, 6, "")}
    dot = disasm.dot(g, "t", disasm.text)
    assert dot.startswith('digraph "t"') and "b0 -> b5" in dot and dot.rstrip().endswith("}")


def test_garbage_never_raises():
    for blob in (b"", b"\x18" + bytes(7), bytes(range(256)) * 3, b"\xff" * 64):
        insns = disasm.decode(blob)
        for i in insns:
            disasm.text(i)
        disasm.cfg(insns)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_render_and_graph(blob):
    insns = disasm.decode(blob)
    assert sum(i.slots for i in insns) <= len(blob) // 8 + 1
    g = disasm.cfg(insns)
    disasm.dot(g, "fuzz", disasm.text)
    disasm.listing(insns, disasm.text)
