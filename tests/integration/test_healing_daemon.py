"""The healing service inside real x0node daemons: a ring of namespaces, one transit node drops 40 %
of what it forwards (the fault lab's partial-blackhole: forward hook only, so its hellos and routes stay
perfect). Its neighbours' probes see it, their analysis names it, and in observe mode they record what
they would do (steer around it) without doing it — no routing command, no route moved; the knowledge
store on /data holds the timeline. In active mode they steer around it through the routing core's
command API, traffic through it recovers, and once the fault is healed the steering is lifted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from x0lab.testbed import measure
from x0lab.testbed.bed import Testbed

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
        bed.fault("partial-blackhole", 2, percent=40)  # the fault lab's forward-hook drop
        watcher = bed.nodes[1]  # neighbours 2 and 4; node 3 lies behind both
        # the answers from node 3 may come back through node 2 as well, so probes through node 4 can
        # suffer too; the first guess may blame either, and the analysis settles on node 2 as evidence
        # grows (incidents blaming one cause merge)
        deadline = time.monotonic() + DETECT_TIMEOUT_S
        settled = None
        while time.monotonic() < deadline and settled is None:
            time.sleep(1.0)
            for inc in _incidents(watcher.data_dir):
                if inc["outcome"] is not None:
                    continue  # closed (merged) incidents keep their first guess
                timeline = _timeline(watcher.data_dir, inc["id"])
                diagnosed = [e for e in timeline if e["type"] == "Diagnosed"]
                decided = [e for e in timeline if e["type"] == "Decided" and e["outcome"] == "observe_only"]
                if diagnosed and decided and diagnosed[-1]["candidates"][0][:2] == [f"node:{sick.node_id}",
                                                                                   "node_blackhole"] \
                        and decided[-1]["action"] in ("steer_around_node", "drain_link") \
                        and sick.node_id in str(decided[-1]["target"]):  # a steer, or a drain where it cannot
                    settled = (inc, timeline)
        assert settled is not None, (sick.node_id, [(i["symptoms"], i["outcome"], [
            (e["type"], e.get("candidates", e.get("target")), e.get("outcome")) for e in _timeline(watcher.data_dir, i["id"])
            if e["type"] in ("Diagnosed", "Decided")]) for i in _incidents(watcher.data_dir)])
        _, timeline = settled
        # probes that cross it lose: its own loop probes, the path probes through it, or path probes to
        # node 3 through node 4 whose answers come back through it (the analysis weighs the way back as
        # well: analyze.py, NODE_BLACKHOLE) — named in the evidence of a diagnosis that blames it; each
        # diagnosis lists only its 16 strongest indicators, and a first diagnosis may hold only one
        far = bed.nodes[3].node_id
        blaming = [e["evidence"] for e in timeline if e["type"] == "Diagnosed"
                   and e["candidates"][0][:2] == [f"node:{sick.node_id}", "node_blackhole"]]
        assert any(ev.startswith(f"probe_via@node:{sick.node_id}")
                   or (ev.startswith("probe_") and sick.node_id in ev)
                   or (ev.startswith("probe_loss@") and ev.split("=", 1)[0].endswith(f"'{far}']"))
                   for evidence in blaming for ev in evidence), blaming
        for i in _incidents(watcher.data_dir):  # observe mode: nothing was done anywhere
            assert not [e for e in _timeline(watcher.data_dir, i["id"]) if e["type"] == "ActionDone"]
        for k in bed.nodes:  # and the routing core holds no command
            assert measure.node_status(bed, k)["commands"] == []
        assert bed.alive(1) and bed.alive(2)
    finally:
        bed.down()


# the daemon's start guard (60 s by default) shortened, not off: in the first seconds five daemons start
# on a busy host and young hello-loss estimates can name a healthy link lossy; that is what the guard is
# for, and not the fault under test
START_GUARD_S = 10.0
ACTIVE = dict(HEALING, mode="active", mitigation_hold_s=3.0, guard_after_start_s=START_GUARD_S)
QUIET_TIMEOUT_S = 40.0
STEER_TIMEOUT_S = 40.0
LIFT_TIMEOUT_S = 60.0
RECOVER_TIMEOUT_S = 30.0
PINGS = 200


def _commands(bed: Testbed, k: int) -> list[dict]:
    return measure.node_status(bed, k)["commands"]  # the routing core's read model (views.CommandView)


def test_active_mode_steers_around_a_partial_black_hole_and_lifts_the_steering_after_heal(tmp_path):
    """ring:5 — 1-2-3-4-5-1: between 1 and 3 the path through 2 is the shortest (2 hops against 3), so
    both directions cross the black hole at 2 and every answer's way back is known (the analysis reads
    it from the LSDB). Nodes 1 and 3 steer around 2 where their other neighbour is a downstream
    alternate (RFC 5286: equal distance counts only from a lower node id) for every route through 2, and
    otherwise drain their link to 2 at once — both are routing commands about node 2, each verified,
    lifted after the heal."""
    bed = Testbed.create(tmp_path / "bed", "ring:5", "x0node", sections={"healing": ACTIVE})
    try:
        started = time.monotonic()
        bed.start_all()
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
        n1, n3 = bed.nodes[1], bed.nodes[3]
        x, nx = 2, bed.nodes[2]

        def quiet() -> bool:  # past the start guard, no incident open, no routing command anywhere
            return time.monotonic() - started >= START_GUARD_S \
                and all(i["outcome"] is not None for k in (1, 3) for i in _incidents(bed.nodes[k].data_dir)) \
                and not any(_commands(bed, k) for k in bed.nodes)

        deadline = time.monotonic() + QUIET_TIMEOUT_S
        while time.monotonic() < deadline and not quiet():
            time.sleep(0.5)
        assert quiet(), [_incidents(bed.nodes[k].data_dir) for k in (1, 3)]
        assert measure.wait_route_dev(bed, 1, n3.mesh_addr, n1.ifaces[2], 15.0)
        assert measure.wait_route_dev(bed, 3, n1.mesh_addr, n3.ifaces[2], 15.0)
        bed.fault("partial-blackhole", x, percent=40)
        deadline = time.monotonic() + STEER_TIMEOUT_S
        steered = {}
        while time.monotonic() < deadline and len(steered) < 2:
            time.sleep(0.5)
            for k in (1, 3):
                cmds = _commands(bed, k)
                if any(c["kind"] in ("steer", "drain") and c["target"] == nx.node_id for c in cmds):
                    steered[k] = cmds
        assert set(steered) == {1, 3}, [_incidents(bed.nodes[k].data_dir) for k in (1, 3)]
        # traffic through the faulted element is back within its SLO (loss < 1 % over a 2 s window of
        # pings) while the fault stays, by RECOVER_TIMEOUT_S after the steering
        windows: list[tuple[float, float]] = []
        deadline = time.monotonic() + RECOVER_TIMEOUT_S
        while time.monotonic() < deadline and (not windows or max(windows[-1]) >= 0.01):
            windows.append((measure.ping_loss(bed, 1, n3.mesh_addr, PINGS, interval_s=0.01),
                            measure.ping_loss(bed, 3, n1.mesh_addr, PINGS, interval_s=0.01)))
        everything = {k: _commands(bed, k) for k in bed.nodes}
        paths = {f"{a}-{b}": [(k, measure.route_dev(bed, k, bed.nodes[b].mesh_addr)) for k in bed.nodes]
                 for a, b in ((1, 3), (3, 1))}
        assert max(windows[-1]) < 0.01, json.dumps([windows, paths, everything, {
            k: [[(e["type"], e.get("action"), e.get("outcome"), e.get("reason")) for e in _timeline(bed.nodes[k].data_dir, i["id"])]
                for i in _incidents(bed.nodes[k].data_dir)] for k in (1, 3)}], default=str)
        assert measure.ping_ok(bed, 1, nx.mesh_addr)  # the node itself stays reachable (directly, unless drained)
        for k in (1, 3):  # a steer where every route through 2 can move, else a drain; verified, on /data
            events = [e for i in _incidents(bed.nodes[k].data_dir) for e in _timeline(bed.nodes[k].data_dir, i["id"])
                      if e.get("action") in ("steer_around_node", "drain_link")]
            assert any(e["type"] == "ActionDone" and e.get("ok") for e in events), events
            assert any(e["type"] == "Verified" and e.get("success") for e in events), events
        # heal: the symptoms clear, the hold passes, the steering is lifted
        bed.heal(x)

        def about_x() -> dict[int, list[dict]]:
            return {k: [c for c in _commands(bed, k) if c["target"] == nx.node_id] for k in bed.nodes}

        deadline = time.monotonic() + LIFT_TIMEOUT_S
        while time.monotonic() < deadline and any(about_x().values()):
            time.sleep(1.0)
        assert not any(about_x().values()), about_x()
        assert measure.ping_loss(bed, 1, n3.mesh_addr, PINGS, interval_s=0.01) < 0.01
    finally:
        bed.down()
