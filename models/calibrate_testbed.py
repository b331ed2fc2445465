"""Record real per-node telemetry from a namespace testbed with injected faults (calibration sample).

Usage (root; creates and removes its own namespaces via lab/x0lab/testbed/):
    .venv/bin/python models/calibrate_testbed.py [--out models/calibration/testbed_sample.json]

What it does:
- A 2x3 grid of network namespaces running babeld (the Debian package) for routing, so transit
  traffic is really forwarded by the kernel. Bounded ping traffic between far corners (a few hundred
  packets per second in total, loopback-only namespaces) provides transit load.
- Phases of WINDOW_S windows: normal; lossy link (nftables random drop 25 % on one link); normal;
  blackhole (a transit node drops everything it would forward, its babel hellos keep going); normal;
  flapping link (one link set down and up every window); normal.
- Per window and node, the features of x0node/anomaly/features.py are measured the way the device
  does: kernel counters read inside the namespace by x0node.anomaly.collector.read_counters (CPU and
  memory are the host's, shared by every namespace), RTT and loss from PROBES pings to each
  neighbour's link-local address, neighbour reachability changes over LINK_CHANGES_WINDOW_S.
- Labels: 1 for the endpoints of a faulted link / the blackhole node during its phase, else 0;
  -1 (don't care, excluded from metrics) for windows within LINK_CHANGES_WINDOW_S after the flapping
  ended, whose link_changes feature still counts those flaps by definition.
The sample is small JSON (rows of raw features with labels, plus the adjacency); `x0node model eval`
scores it when present.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lab"))

from x0lab.testbed import bed as tb  # noqa: E402
from x0lab.testbed.measure import wait_converged  # noqa: E402
from x0node.anomaly.collector import Counters, FeatureState  # noqa: E402
from x0node.anomaly.features import FEATURES, LINK_CHANGES_WINDOW_S  # noqa: E402

WINDOW_S = 4.0
PROBES = 20
PROBE_INTERVAL_S = 0.05
TRAFFIC_INTERVAL_S = 0.01
PHASES = (
    ("normal", 5),
    ("blackhole", 5),
    ("normal", 3),
    ("lossy_link", 5),
    ("normal", 3),
    ("link_flapping", 5),
    ("normal", 3),
)
LOSSY = (2, 5)
BLACKHOLE = 2
FLAP = (4, 5)
_PING_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")
_RTT_RE = re.compile(r"= [\d.]+/([\d.]+)/")


def link_local(bed: tb.Testbed, node: int, ifname: str) -> str | None:
    out = bed.exec(node, "ip", "-j", "-6", "addr", "show", "dev", ifname, check=False)
    try:
        for a in json.loads(out or "[]")[0].get("addr_info", []):
            if a.get("local", "").startswith("fe80"):
                return a["local"]
    except (IndexError, ValueError):
        pass
    return None


def probe(bed: tb.Testbed, node: int, ifname: str, addr: str) -> tuple[float | None, float]:
    out = bed.exec(node, "ping", "-6", "-q", "-n", "-c", str(PROBES), "-i", str(PROBE_INTERVAL_S), "-W", "1",
                   f"{addr}%{ifname}", check=False, timeout=PROBES * PROBE_INTERVAL_S + 5)
    m = _PING_RE.search(out or "")
    if not m or int(m.group(1)) == 0:
        return None, 1.0
    sent, got = int(m.group(1)), int(m.group(2))
    r = _RTT_RE.search(out)
    return (float(r.group(1)) if r else None), 1.0 - got / sent


def counters_in(bed: tb.Testbed, node: int) -> dict:
    ifaces = list(bed.node(node).ifaces.values())
    code = ("import json,sys;from x0node.anomaly.collector import read_counters as r;"
            "c=r(sys.argv[1:]);print(json.dumps(c.__dict__))")
    out = bed.exec(node, sys.executable, "-c", code, *ifaces, timeout=20)
    return json.loads(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "models" / "calibration" / "testbed_sample.json")
    args = ap.parse_args()
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="x0cal-"))
    bed = tb.up(run_dir, "grid:2x3", daemon="babeld", babel_hello_s=0.5)
    traffic: list[subprocess.Popen[bytes]] = []
    rows = []
    try:
        conv = wait_converged(bed, timeout_s=60.0)
        print(f"converged in {conv}s", flush=True)
        lladdr = {(k, j): link_local(bed, j, bed.node(j).ifaces[k]) for k in bed.nodes for j in bed.topology.neighbours(k)}
        total_windows = sum(n for _, n in PHASES)
        count = int(total_windows * (WINDOW_S + 4) / TRAFFIC_INTERVAL_S)
        for a, b in ((1, 3), (3, 1), (4, 6), (6, 4), (1, 6), (6, 1)):
            traffic.append(subprocess.Popen(
                ["ip", "netns", "exec", bed.node(a).ns, "ping", "-6", "-q", "-n", "-i", str(TRAFFIC_INTERVAL_S),
                 "-c", str(count), "-s", "256", bed.node(b).mesh_addr],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        states = {k: FeatureState() for k in bed.nodes}
        reach: dict[tuple[int, int], bool] = {}
        changes: dict[int, list[float]] = {k: [] for k in bed.nodes}
        t0 = time.monotonic()
        flap_end: float | None = None
        w = 0
        for phase, n_windows in PHASES:
            if phase == "lossy_link":
                bed.fault("loss", *LOSSY, percent=25)
            elif phase == "blackhole":
                bed.fault("partial-blackhole", BLACKHOLE, percent=100)
            for i in range(n_windows):
                if phase == "link_flapping":
                    if i % 2 == 0:
                        bed.fault("link-down", *FLAP)
                    else:
                        bed.heal(*FLAP)
                start = time.monotonic()
                with cf.ThreadPoolExecutor(max_workers=16) as ex:
                    futs = {(k, j): ex.submit(probe, bed, k, bed.node(k).ifaces[j], lladdr[(k, j)])
                            for (k, j) in lladdr if lladdr[(k, j)]}
                    res = {kj: f.result() for kj, f in futs.items()}
                    cnt = {k: ex.submit(counters_in, bed, k) for k in bed.nodes}
                    counters = {k: f.result() for k, f in cnt.items()}
                now = time.monotonic() - t0
                for k in bed.nodes:
                    nbs = []
                    for j in bed.topology.neighbours(k):
                        rtt, loss = res.get((k, j), (None, 1.0))
                        up = loss < 1.0
                        if reach.get((k, j), True) != up:
                            changes[k].append(now)
                        reach[(k, j)] = up
                        nbs.append({"node_id": str(j), "state": "up" if up else "down", "rtt_ms": rtt, "loss": loss})
                    c = counters[k]
                    c.pop("extra", None)
                    raw = states[k].update(Counters(**c), nbs, now)
                    # link_changes from reachability (the babel testbed has no x0node neighbour view)
                    raw[FEATURES.index("link_changes")] = sum(1 for t in changes[k] if now - t <= LINK_CHANGES_WINDOW_S)
                    label = 0
                    if phase == "normal" and flap_end is not None and now - flap_end <= LINK_CHANGES_WINDOW_S:
                        label = -1  # link_changes still counts the flaps of the last 300 s: don't care
                    if phase == "lossy_link" and k in LOSSY or phase == "blackhole" and k == BLACKHOLE \
                            or phase == "link_flapping" and k in FLAP:
                        label = 1
                    if w > 0:  # the first window has no rates yet
                        rows.append({"window": w, "node": k, "phase": phase, "label": label,
                                     "raw": [round(float(v), 6) for v in raw], "deltas": dict(states[k].deltas)})
                print(f"window {w} {phase}: " + " ".join(
                    f"n{r['node']}:{r['label']}" for r in rows[-len(bed.nodes):]), flush=True)
                w += 1
                time.sleep(max(0.0, WINDOW_S - (time.monotonic() - start)))
            if phase == "lossy_link":
                bed.heal(*LOSSY)
            elif phase == "blackhole":
                bed.heal(BLACKHOLE)
            elif phase == "link_flapping":
                bed.heal(*FLAP)
                flap_end = time.monotonic() - t0
    finally:
        for p in traffic:
            p.terminate()
        for p in traffic:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        bed.down()
    doc = {
        "format": 1,
        "features": list(FEATURES),
        "topology": "grid:2x3",
        "routing": "babeld (hello 0.5 s)",
        "window_s": WINDOW_S,
        "probes_per_neighbour": PROBES,
        "faults": {"lossy_link": list(LOSSY), "blackhole": BLACKHOLE, "link_flapping": list(FLAP)},
        "kernel": platform.release(),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adjacency": {str(k): [str(j) for j in bed.topology.neighbours(k)] for k in bed.nodes},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
