"""The anomaly service inside real daemons (`x0node run`) on a 2-node namespace testbed.

Node 1 runs with `[anomaly]` (1 s interval): the service must start with the tree models live, evaluate
on its timer, and persist its observe-mode state when the daemon stops on SIGTERM. Node 2 runs
without it (the section is optional).
"""

import json
import pathlib
import time

import pytest

ANOMALY = '\n[anomaly]\ninterval_s = 1.0\nobserve_days = 0.0\nmin_outcomes = 5\n'


@pytest.fixture
def bed(tmp_path):
    from x0lab.testbed import bed as tb

    b = tb.Testbed.create(tmp_path / "bed", "line:2", daemon="x0node")
    orig = b.write_x0node_config
    b.write_x0node_config = lambda node, extra="": orig(node, extra + (ANOMALY if node.index == 1 else ""))
    try:
        yield b
    finally:
        b.down()


def test_service_runs_in_the_daemon_with_the_trained_models_live(bed):
    bed.start_all(timeout_s=90)
    log_path = bed.log_path(bed.node(1))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "anomaly models loaded" not in log_path.read_text():
        time.sleep(0.2)
    log = log_path.read_text()
    assert "anomaly models loaded layer=gbt" in log, log[-2000:]
    assert "anomaly tick failed" not in log
    time.sleep(6)  # a few evaluations
    bed.stop(1)
    state = json.loads((pathlib.Path(bed.node(1).data_dir) / "anomaly" / "observe.json").read_text())
    assert state["predictions"] >= 3
    assert "anomaly" not in bed.log_path(bed.node(2)).read_text().lower()
