"""Smoke test of bench/healing.py's harness on a small mesh: one silent link under x0node (routing only)
and under babeld — path tracing, the pingers, the fault lab's inject and heal, MTTR from the samples and
the last JSON line with the keys the bench promises. Figures are not judged (the machine is loaded)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = {"bench", "mttr_p95_s", "mttr_p95_s_routing_only", "mttr_p95_s_babeld", "recovery_success", "rca_top1",
        "rca_top3", "false_actions_per_node_hour", "cycle_p95_ms", "cpu_pct", "rss_mb", "loadavg_start"}


def test_the_harness_injects_heals_and_reports_one_json_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "healing.py"), "--topology", "ring:4", "--settings", "routing,babeld",
         "--kinds", "silent", "--injections", "1", "--max-obs", "15", "--steady", "1", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(doc) and doc["bench"] == "healing"
    assert set(doc["mttr_p95_s_routing_only"]) == {"silent"} and set(doc["mttr_p95_s_babeld"]) == {"silent"}
    for setting in ("routing", "babeld"):
        rows = [json.loads(line) for line in (tmp_path / f"{setting}-injections.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["kind"] == "silent" and rows[0]["pairs"]
        assert rows[0]["t0"] < rows[0]["t_heal"] and all(rows[0]["samples"])  # pings flowed around the fault
        truth = (tmp_path / setting / "faults.jsonl").read_text()
        assert '"link-silent"' in truth and '"end"' in truth  # injected and healed, on the record
