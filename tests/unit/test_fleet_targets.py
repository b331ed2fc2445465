"""`x0node fleet targets`: file-SD JSON from x0node_node_info, bad rows dropped by reason, bounded."""

from __future__ import annotations

import json

import pytest

from x0node.fleet import targets
from x0node.fleet.targets import Discovery, TargetsError

A, B, C = "a" * 16, "b" * 16, "c" * 16
TEXT = f"""# HELP x0node_node_info Nodes
# TYPE x0node_node_info gauge
x0node_node_info{{node_id="{B}",mesh_addr="fd58:7830:746c::b",role="gateway",self="0"}} 1.0
x0node_node_info{{node_id="{A}",mesh_addr="fd58:7830:746c::a",role="node",self="1"}} 1.0
x0node_node_info{{node_id="XYZ",mesh_addr="fd58::1",role="node",self="0"}} 1.0
x0node_node_info{{node_id="{C}",mesh_addr="not-an-address",role="node",self="0"}} 1.0
x0node_node_info{{node_id="{C}",mesh_addr="fd58::c",role="root",self="0"}} 1.0
# TYPE mesh_peers_count gauge
mesh_peers_count 2.0
"""


def test_file_sd_from_node_info() -> None:
    d = Discovery()
    assert d.add_exposition(TEXT) == 5
    assert d.file_sd(8080) == [
        {"targets": ["[fd58:7830:746c::a]:8080"], "labels": {"node_id": A, "role": "node"}},
        {"targets": ["[fd58:7830:746c::b]:8080"], "labels": {"node_id": B, "role": "gateway"}},
    ]
    assert dict(d.dropped) == {"bad_node_id": 1, "bad_address": 1, "bad_role": 1}


def test_views_merge_and_output_is_stable(tmp_path) -> None:
    d1, d2 = Discovery(), Discovery()
    d1.add_exposition(TEXT)
    d2.add_exposition(TEXT.replace('role="gateway"', 'role=""'))
    d2.add_exposition(TEXT)
    assert d1.file_sd(9100) == d2.file_sd(9100)
    out = tmp_path / "t" / "x0node.json"
    data = targets.render(d1.file_sd(9100))
    assert targets.write_if_changed(out, data) and not targets.write_if_changed(out, data)
    assert json.loads(out.read_text())[0]["targets"] == ["[fd58:7830:746c::a]:9100"]


def test_bounds_and_malformed_text(monkeypatch) -> None:
    monkeypatch.setattr(targets, "MAX_TARGETS", 1)
    d = Discovery()
    d.add_exposition(TEXT)
    assert len(d.nodes) == 1 and d.dropped["too_many"] == 1
    with pytest.raises(TargetsError):
        Discovery().add_exposition('x0node_node_info{node_id="a" 1\n')
    with pytest.raises(TargetsError):
        targets.fetch("file:///etc/passwd")


def test_cli_reads_a_router_over_http_and_keeps_targets_when_all_sources_fail(tmp_path, capsys) -> None:
    import http.server
    import threading

    from x0node.cli import main

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = TEXT.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "x0node.json"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        assert main(["fleet", "targets", "--from", url, "--out", str(out), "--port", "9100"]) == 0
        assert "2 nodes" in capsys.readouterr().out
        before = out.read_bytes()
        gone = "http://127.0.0.1:1/metrics"
        assert main(["fleet", "targets", "--from", gone, "--out", str(out)]) == 1
        assert out.read_bytes() == before  # never replaced by an empty list
    finally:
        server.shutdown()


def test_a_node_gone_from_every_view_stays_a_target_until_forgotten(tmp_path) -> None:
    memory = tmp_path / "x0node.json.known"
    first = Discovery()
    first.add_exposition(TEXT)
    assert first.remember(memory, 1000.0, forget_after_s=3600) == 0
    only_a = "\n".join(line for line in TEXT.splitlines() if B not in line) + "\n"
    later = Discovery()
    later.add_exposition(only_a)
    assert later.remember(memory, 2000.0, forget_after_s=3600) == 1  # B kept from memory
    assert [g["labels"]["node_id"] for g in later.file_sd(8080)] == [A, B]
    gone = Discovery()
    gone.add_exposition(only_a)
    assert gone.remember(memory, 1000.0 + 3601, forget_after_s=3600) == 0  # B last seen at 1000
    assert [g["labels"]["node_id"] for g in gone.file_sd(8080)] == [A]
    memory.write_text("[not a map")
    broken = Discovery()
    broken.add_exposition(only_a)
    assert broken.remember(memory, 5000.0) == 0 and broken.dropped["bad_memory"] == 1
