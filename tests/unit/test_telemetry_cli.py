import pathlib

import pytest

from x0node.cli import main

BPF = pathlib.Path(__file__).resolve().parents[2] / "build" / "bpf"
if not (BPF / "manifest.json").exists():
    pytest.skip("BPF objects not built (make bpf)", allow_module_level=True)


def test_explain_shipped_program_and_graphs(capsys, tmp_path):
    assert main(["bpf", "explain", "xdp_mac_stats", "--graph-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "program xdp_mac_stats  section xdp" in out and "helpers: bpf_map_lookup_elem" in out
    dot = (tmp_path / "xdp_mac_stats.dot").read_text()
    assert dot.startswith("digraph")


def test_explain_dot_only(capsys):
    assert main(["bpf", "explain", str(BPF / "tcp_rtt.bpf.o"), "--dot"]) == 0
    assert capsys.readouterr().out.startswith('digraph "tcp_rtt')


def test_explain_bad_targets_give_messages(capsys, tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an object")
    assert main(["bpf", "explain", str(junk)]) == 1
    assert "not an ELF file" in capsys.readouterr().err
    assert main(["bpf", "explain", "no_such_program"]) == 1
    assert "no object file or shipped program" in capsys.readouterr().err


def test_validate_reports_every_problem(capsys, tmp_path):
    bad = tmp_path / "x.bpf.o"
    bad.write_bytes((BPF / "tcp_states.bpf.o").read_bytes() + b"\0")
    assert main(["bpf", "validate", str(bad)]) == 1
    assert "is not in the manifest" in capsys.readouterr().err
    assert main(["bpf", "validate", str(BPF / "tcp_states.bpf.o")]) == 0
    assert "OK " in capsys.readouterr().out


def test_profile_rejects_bad_duration():
    assert main(["bpf", "profile", "--duration", "-1"]) == 2


def test_show_without_a_running_daemon(capsys, tmp_path):
    assert main(["bpf", "show", "--pin-root", str(tmp_path)]) == 1
    assert "no xdp_mac_stats maps pinned" in capsys.readouterr().err
