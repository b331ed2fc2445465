"""The healing service inside real x0node daemons: a ring of four namespaces, one transit node drops 40 %
of what it forwards (nftables, forward hook only, so its hellos and routes stay perfect). Its
neighbours' probes see it, their analysis names it, and in observe mode they record what they would
do (steer around it) without doing it; the knowledge store on /data holds the timeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

try:  # the testbed moves to the fault lab's package (lab/x0lab) once that lands
    from x0lab.testbed import measure
    from x0lab.testbed.bed import Testbed
except ImportError:
    from x0node.testbed import measure
    from x0node.testbed.bed import Testbed

CONVERGE_TIMEOUT_S = 30.0
DETECT_TIMEOUT_S = 40.0
HEALING = {"mode": "observe", "interval_s": 0.5, "guard_after_boot_s": 0, "guard_after_start_s": 0}


def _incidents(data_dir: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "x0node", "healing", "incidents", "--data-dir", data_dir, "--json"],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout) if out.returncode == 0 else []


def _timeline(data_dir: str, incident: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "x0node", "healing", "incidents", "--data-dir", data_dir,
                          "--timeline", str(incident), "--json"], capture_output=True, text=True, timeout=30,
                         check=True)
    return json.loads(out.stdout)


def test_observe_mode_names_a_partial_black_hole_and_records_the_steering_it_would_do(tmp_path):
    bed = Testbed.create(tmp_path / "bed", "ring:4", "x0node", sections={"healing": HEALING})
    try:
        bed.start_all()
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
        sick = bed.nodes[2]
        script = ("table inet x0t_heal {\n chain transit {\n  type filter hook forward priority 0; policy accept;\n"
                  "  numgen random mod 100 < 40 drop\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", sick.ns, "nft", "-f", "-"], input=script, text=True, check=True,
                       capture_output=True)
        watcher = bed.nodes[1]  # neighbours 2 and 4; node 3 lies behind both
        deadline = time.monotonic() + DETECT_TIMEOUT_S
        found = None
        while time.monotonic() < deadline and found is None:
            time.sleep(1.0)
            # the answers from node 3 may come back through node 2 as well, so probes through node 4 can
            # suffer too: one incident, one cause
            found = next((i for i in _incidents(watcher.data_dir)
                          if f"forwarding_loss@node:{sick.node_id}" in i["symptoms"]), None)
        assert found is not None, [(i["symptoms"], i["root_cause"], i["element"]) for i in _incidents(watcher.data_dir)]
        timeline = _timeline(watcher.data_dir, found["id"])
        diagnosed = next(e for e in timeline if e["type"] == "Diagnosed")
        assert diagnosed["candidates"][0][:2] == [f"node:{sick.node_id}", "node_blackhole"], diagnosed
        decided = [e for e in timeline if e["type"] == "Decided"]
        assert decided and decided[0]["outcome"] == "observe_only" and decided[0]["action"] == "steer_around_node"
        assert decided[0]["target"] == f"node:{sick.node_id}"
        assert not [e for e in timeline if e["type"] == "ActionDone"]  # observe mode: nothing was done
        # the healthy neighbour is not blamed, and routing never noticed anything
        blamed = {c[0] for i in _incidents(watcher.data_dir) for c in
                  next(e for e in _timeline(watcher.data_dir, i["id"]) if e["type"] == "Diagnosed")["candidates"][:1]}
        assert f"node:{bed.nodes[4].node_id}" not in blamed
        assert bed.alive(1) and bed.alive(2)
    finally:
        bed.down()
