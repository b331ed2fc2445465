import pathlib

import pytest

from x0node.telemetry import explainer
from x0node.telemetry.loader import MapInfo

BPF = pathlib.Path(__file__).resolve().parents[2] / "build" / "bpf"
if not (BPF / "manifest.json").exists():
    pytest.skip("BPF objects not built (make bpf)", allow_module_level=True)


def test_explains_mac_stats_object():
    data = (BPF / "xdp_mac_stats.bpf.o").read_bytes()
    maps = [MapInfo("mac_stats", 10, 8, 16, 1024), MapInfo("if_slots", 6, 4, 56, 64), MapInfo("if_stats", 5, 4, 56, 64)]
    ex = explainer.explain_elf(data, maps, "xdp_mac_stats.bpf.o")
    (p,) = ex.programs
    assert p.name == "xdp_mac_stats" and p.section == "xdp"
    assert {m.name for m in p.maps} == {"mac_stats", "if_slots", "if_stats"}
    assert p.helpers == ("bpf_map_lookup_elem", "bpf_map_update_elem")
    text = explainer.render(ex)
    assert "r1 = if_slots ll" in text and "exit" in text and "license  GPL" in text
    dot = p.dot()
    assert dot.count("->") == len(p.cfg.edges)


def test_tracepoint_programs_use_probe_read():
    for name in ("tcp_states", "tcp_rtt", "tcp_retrans"):
        ex = explainer.explain_elf((BPF / f"{name}.bpf.o").read_bytes(), [], name)
        assert "bpf_probe_read_kernel" in ex.programs[0].helpers
        assert ex.programs[0].section.startswith("raw_tp/")


def test_listing_carries_c_source_lines():
    ex = explainer.explain_elf((BPF / "tcp_retrans.bpf.o").read_bytes(), [], "tcp_retrans")
    text = explainer.render(ex)
    assert "; tcp_retrans.bpf.c:" in text and "BPF_PROG(tcp_retrans" in text
    assert str(BPF.parents[1]) not in text  # no build-machine paths in the objects
