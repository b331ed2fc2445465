"""OTLP export from a running daemon: with `[healing].otlp_endpoint` set, the node's MAPE-K cycle spans
and its web API request spans reach an OTLP/HTTP receiver (tests/otlp_receiver.py) inside the node's
namespace, under one resource naming the node."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from tests.integration.processes import stop_processes
from x0lab.testbed.bed import Testbed

RECEIVER = pathlib.Path(__file__).resolve().parents[1] / "otlp_receiver.py"
ENDPOINT = "http://[::1]:4318/v1/traces"
HEALING = {"mode": "observe", "interval_s": 0.5, "guard_after_boot_s": 0, "guard_after_start_s": 0,
           "otlp_endpoint": ENDPOINT}
EXPORT_TIMEOUT_S = 45.0


def _spans(path: pathlib.Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def test_daemon_exports_cycle_and_api_spans_over_otlp(tmp_path):
    bed = Testbed.create(tmp_path / "bed", "line:2", "x0node", web=True, sections={"healing": HEALING})
    out = tmp_path / "spans.jsonl"
    node = bed.nodes[1]
    recv = subprocess.Popen(["ip", "netns", "exec", node.ns, sys.executable, str(RECEIVER), "--listen", "::1",
                             "--port", "4318", "--out", str(out)], stderr=subprocess.PIPE)
    try:
        bed.start_all()
        base = f"http://[{node.mesh_addr}]:8080"
        deadline = time.monotonic() + EXPORT_TIMEOUT_S
        names: set[str] = set()
        while time.monotonic() < deadline:
            for path in ("/api/v1/auth/state", "/api/v1/status", "/metrics"):
                subprocess.run(["ip", "netns", "exec", node.ns, "curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                                "-g", base + path], capture_output=True, timeout=15)
            got = _spans(out)
            names = {s["name"] for s in got}
            if {"GET /api/v1/auth/state", "GET /api/v1/status", "mape_k_cycle", "monitor"} <= names:
                break
            time.sleep(1.0)
        assert {"GET /api/v1/auth/state", "GET /api/v1/status", "GET /metrics", "mape_k_cycle", "monitor"} <= names, names
        api = next(s for s in got if s["name"] == "GET /api/v1/status")
        assert api["kind"] == 2  # SERVER
        assert api["attributes"] == {"http.request.method": "GET", "http.route": "/api/v1/status",
                                     "http.response.status_code": 401}
        cycle = next(s for s in got if s["name"] == "mape_k_cycle")
        assert any(s["parent_span_id"] == cycle["span_id"] for s in got if s["name"] == "monitor")
        for s in (api, cycle):
            assert s["resource"]["service.name"] == "x0node"
            assert s["resource"]["service.instance.id"] == node.node_id
        assert not [s for s in got if "/static" in s["name"] or s["name"].startswith("GET /?")]
    finally:
        stop_processes([recv])
        bed.down()
