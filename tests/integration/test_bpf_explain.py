"""`x0node bpf explain id:N` on programs loaded in the kernel: translated instructions, map names
from map ids, and the control-flow graph written as DOT/SVG."""

from __future__ import annotations

import os
import shutil

from tests.integration.bpf_support import BPF_DIR
from x0node.cli import main
from x0node.telemetry import explainer, libbpf
from x0node.telemetry.loader import BpfObject


def _loaded(name: str) -> tuple[BpfObject, int]:
    obj = BpfObject(str(BPF_DIR / f"{name}.bpf.o"), pin_root=None)
    if name == "xdp_mac_stats":
        obj.set_global(".rodata", os.urandom(16))
    obj.load()
    prog_id = int.from_bytes(libbpf.obj_info(obj.prog_fds[name], libbpf.PROG_INFO_BYTES)[4:8], "little")
    return obj, prog_id


def test_explain_loaded_program_names_its_maps():
    obj, prog_id = _loaded("xdp_mac_stats")
    try:
        ex = explainer.explain_loaded(prog_id)
    finally:
        obj.close()
    (p,) = ex.programs
    assert p.name == "xdp_mac_stats" and p.section == "xdp"
    assert {m.name for m in p.maps} >= {"mac_stats", "if_slots", "if_stats"}
    text = explainer.render(ex)
    assert "map[mac_stats]" in text and f"id       {prog_id}" in text
    assert p.cfg.blocks and any(i.is_exit for i in p.insns)


def test_cli_explain_id_writes_graphs(tmp_path, capsys):
    obj, prog_id = _loaded("tcp_rtt")
    try:
        assert main(["bpf", "explain", f"id:{prog_id}", "--graph-dir", str(tmp_path)]) == 0
    finally:
        obj.close()
    out = capsys.readouterr().out
    assert "program tcp_rtt" in out and "rtt_hist" in out
    assert (tmp_path / "tcp_rtt.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        assert (tmp_path / "tcp_rtt.svg").read_text().lstrip().startswith("<?xml")


def test_cli_explain_unknown_id(capsys):
    assert main(["bpf", "explain", "id:4000000000"]) == 1
    assert "bpf_prog_get_fd_by_id" in capsys.readouterr().err
