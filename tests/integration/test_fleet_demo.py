"""`make fleet-demo` end to end: Prometheus scrapes a namespace mesh through `x0node fleet targets`, a
killed node fires X0NodeDown, visible through the Prometheus and Alertmanager APIs and delivered to the
webhook; pictures of the alert page and panels are taken; `down` leaves no process or namespace behind."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
                                 reason="prometheus and alertmanager: make deps (mk/fleet.mk)")]


def test_killed_node_fires_an_alert_seen_by_both_apis(tmp_path):
    run_dir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "x0lab.fleet.demo"]
    try:
        up = subprocess.run([*cmd, "up", "--run-dir", str(run_dir), "--nodes", "4", "--fault", "kill:3",
                             "--shots", str(tmp_path / "shots")],
                            capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        result = json.loads(up.stdout[up.stdout.index("{"):up.stdout.rindex("}") + 1])
        state = json.loads((run_dir / "fleet" / "demo.json").read_text())
        victim = state["nodes"]["3"]
        assert result["alert"] == "X0NodeDown" and result["node_id"] == victim["node_id"]
        assert result["instance"] == f"[{victim['mesh_addr']}]:8080"
        assert result["prometheus"]["state"] == "firing"
        assert result["alertmanager"]["state"] == "active" and result["alertmanager"]["receivers"] == ["fleet-page"]
        assert result["webhook"]["status"] == "firing"
        targets = json.loads((run_dir / "fleet" / "targets" / "x0node.json").read_text())
        assert len(targets) == 4  # every node of the mesh, from node 1's view
        ns = state["ns"]
        pictures = sorted(p.name for p in (tmp_path / "shots").glob("*.png"))
        assert pictures == sorted(result["pictures"][i].rsplit("/", 1)[1] for i in range(len(result["pictures"])))
        assert "prometheus-alerts.png" in pictures and len(pictures) == 5
        assert all((tmp_path / "shots" / p).stat().st_size > 10_000 for p in pictures)
    finally:
        down = subprocess.run([*cmd, "down", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    assert not pathlib.Path(f"/run/netns/{ns}").exists()
    left = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout.split()
    assert left == [], left
