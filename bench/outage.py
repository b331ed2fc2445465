"""Outage benchmark: x0node against babeld (Debian package) on the same 6-node ring of namespaces.

For each daemon setting (babeld default timers, babeld with 0.2 s hellos, x0node default timers,
x0node fast timers) in one run:
- cold start: all daemons spawned at once on a linked ring -> every node has a route to every other;
- control traffic: bytes/s per node sent to the routing UDP port on the mesh interfaces, IPv6 packet
  length (nftables counters in each namespace's output hook; identical method for both daemons);
- RSS (MB) and CPU (% of one core) per daemon process, averaged over the nodes;
- data-plane outage from a 10 ms ping n1 -> n4 (3 hops either way round the ring) when the first link
  of the path n1 uses at that moment fails: carrier down (`link-down`, set down at the neighbour's end
  so n1 sees its carrier go) and silent (nftables drop on both ends, carrier up), >= 10 trials each
  (--trials), median and p95; after each trial the link is healed and both ends again route to each
  other directly before the next trial.
Then a 50-node random mesh of x0node (links brought up at once after every daemon is ready): time to
full convergence and CPU per node; and the same again with busy-looping processes competing for the
host's CPUs (--big-load, default 2).

Needs root. Prints a table and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lab"))

from x0lab.testbed import measure  # noqa: E402
from x0lab.testbed.bed import Testbed  # noqa: E402

SRC, DST = 1, 4  # ping n1 -> n4; the failing link is n1 to the next hop it uses
BABEL_FAST_HELLO_S = 0.2
STEADY_DELAY_S = 3.0  # after every daemon is ready, before the traffic/CPU window opens
BIG_FALLBACK_ROUTING = {"hello_interval_s": 0.5}
BUSY_LOOP_MAX_S = 600.0
LINKDOWN_NEAR = os.environ.get("X0_BENCH_LINKDOWN_END", "far") == "near"


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(0.95 * (len(s) - 1)))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ready_wall(bed: Testbed, k: int) -> float:
    """Wall-clock time of node k's last ready line (from its log's timestamp)."""
    found = 0.0
    for line in bed.log_path(bed.nodes[k]).read_text(errors="replace").splitlines():
        if "x0node ready" in line:
            stamp, ms = line[:19], line[20:23]
            found = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000.0
    return found


def start_all_now(bed: Testbed) -> float:
    """Spawn every daemon without waiting; returns the spawn time (monotonic)."""
    if bed.daemon == "x0node":
        bed._provision_trust()
    t0 = time.monotonic()
    for k in bed.nodes:
        bed.start(k, wait=False)
    return t0


def run_setting(name: str, daemon: str, run_dir: pathlib.Path, trials: int, steady_s: float,
                routing: dict | None = None, babel_hello_s: float | None = None,
                max_outage_s: float = 30.0, settle_s: float = 60.0) -> dict:
    print(f"== {name}", file=sys.stderr, flush=True)
    bed = Testbed.create(run_dir / name, "ring:6", daemon, routing=routing, babel_hello_s=babel_hello_s)
    res: dict = {"name": name}
    try:
        with measure.RouteWatcher(bed) as watch:
            wall0 = time.time()
            t0 = start_all_now(bed)
            t_wait = time.monotonic()
            conv = watch.wait_complete(60.0)
        res["coldstart_s"] = None if conv is None else round(conv + (t_wait - t0), 3)
        bed.wait_ready()
        if daemon == "x0node":
            res["startup_s"] = round(max(ready_wall(bed, k) for k in bed.nodes) - wall0, 3)
        # steady state (start-up flooding over): traffic, RSS, CPU
        time.sleep(STEADY_DELAY_S)
        b0, c0, w0 = bed.control_bytes(), bed.process_stats(), time.monotonic()
        time.sleep(steady_s)
        b1, c1, w1 = bed.control_bytes(), bed.process_stats(), time.monotonic()
        dt = w1 - w0
        res["ctrl_bps_per_node"] = round(sum(b1[k] - b0[k] for k in b1) / len(b1) / dt, 1)
        res["rss_mb"] = round(statistics.mean(v[1] for v in c1.values()), 2)
        res["cpu_pct"] = round(100 * statistics.mean((c1[k][0] - c0[k][0]) / dt for k in c1 if k in c0), 2)
        dst_addr = bed.nodes[DST].mesh_addr

        def settle(nb: int) -> None:
            a, b = bed.nodes[SRC], bed.nodes[nb]
            ok = measure.wait_route_dev(bed, SRC, b.mesh_addr, a.ifaces[nb], settle_s)
            ok = ok and measure.wait_route_dev(bed, nb, a.mesh_addr, b.ifaces[SRC], settle_s)
            if not ok:
                print(f"   {name}: link n{SRC}-n{nb} not routed directly within {settle_s} s", file=sys.stderr)
            time.sleep(0.5)

        for kind in ("link-down", "link-silent"):
            values = []
            for i in range(trials):
                dev = measure.route_dev(bed, SRC, dst_addr)
                nb = next((j for j, ifname in bed.nodes[SRC].ifaces.items() if ifname == dev), None)
                if nb is None:
                    print(f"   {name}: n{SRC} has no route to n{DST}; trial skipped", file=sys.stderr)
                    time.sleep(1.0)
                    continue
                ms = measure.outage_trial(
                    bed, SRC, dst_addr,
                    inject=lambda kind=kind, nb=nb: bed.fault(kind, *((SRC, nb) if LINKDOWN_NEAR else (nb, SRC))),
                    heal=lambda nb=nb: bed.heal(nb, SRC),
                    settle=lambda nb=nb: settle(nb), max_outage_s=max_outage_s,
                )
                values.append(ms)
                print(f"   {name} {kind} trial {i + 1} (link n{SRC}-n{nb}): {ms:.0f} ms", file=sys.stderr, flush=True)
            key = "linkdown" if kind == "link-down" else "silent"
            res[f"{key}_median_ms"] = round(median(values), 1)
            res[f"{key}_p95_ms"] = round(p95(values), 1)
            res[f"{key}_all_ms"] = [round(v, 1) for v in values]
    finally:
        bed.down()
    return res


def busy_loops(n: int) -> list[subprocess.Popen]:
    """n processes that spin on the CPU (other load on the host), for at most BUSY_LOOP_MAX_S."""
    code = f"import time\nend = time.monotonic() + {BUSY_LOOP_MAX_S}\nwhile time.monotonic() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def run_big(run_dir: pathlib.Path, size: int, seed: int, steady_s: float, routing: dict | None = None,
            timeout_s: float = 60.0, load: int = 0) -> dict:
    print(f"== x0node random:{size}:{seed} {routing or 'default timers'}"
          + (f", {load} busy loops on the host" if load else ""), file=sys.stderr, flush=True)
    name = "big-" + "-".join(f"{k}{v}" for k, v in (routing or {}).items()) + (f"-load{load}" if load else "")
    bed = Testbed.create(run_dir / name, f"random:{size}:{seed}", "x0node", links_down=True, routing=routing)
    res: dict = {"size": size, "links": len(bed.topology.links), "routing": routing or {}, "load": load}
    hogs = busy_loops(load)
    try:
        t_spawn = start_all_now(bed)
        bed.wait_ready(timeout_s=180.0)
        res["all_ready_s"] = round(time.monotonic() - t_spawn, 2)
        time.sleep(1.0)
        with measure.RouteWatcher(bed) as watch:
            t0 = time.monotonic()
            bed.links_up()
            t_wait = time.monotonic()
            conv = watch.wait_complete(timeout_s)
        res["converge_s"] = None if conv is None else round(conv + (t_wait - t0), 2)
        c0, w0 = bed.process_stats(), time.monotonic()
        time.sleep(steady_s)
        c1, w1 = bed.process_stats(), time.monotonic()
        res["cpu_pct_per_node"] = round(100 * statistics.mean((c1[k][0] - c0[k][0]) / (w1 - w0) for k in c1 if k in c0), 2)
        res["rss_mb"] = round(statistics.mean(v[1] for v in c1.values()), 2)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        bed.down()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10, help="outage trials per fault kind (default 10)")
    ap.add_argument("--babeld-default-trials", type=int, default=None, metavar="N",
                    help="trials for babeld with default timers (each takes ~50 s to settle; default --trials)")
    ap.add_argument("--quick", action="store_true", help="3 trials, short steady window, 20-node mesh")
    ap.add_argument("--only", choices=("babeld", "x0node"), help="run one daemon's settings only")
    ap.add_argument("--big", type=int, default=50, help="size of the random mesh (0 = skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--big-load", type=int, default=2, metavar="N",
                    help="also time the random mesh with N busy-looping processes on the host (0 = skip; default 2)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/outage.py needs root (network namespaces)", file=sys.stderr)
        return 2
    trials = 3 if args.quick else args.trials
    steady_s = 8.0 if args.quick else 30.0
    big = min(args.big, 20) if args.quick else args.big
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="x0bench-") as tmp:
        run_dir = pathlib.Path(tmp)
        settings = []
        if args.only in (None, "babeld"):
            settings += [("babeld", "babeld", {}), ("babeld_fast", "babeld", {"babel_hello_s": BABEL_FAST_HELLO_S})]
        if args.only in (None, "x0node"):
            settings += [("x0node", "x0node", {}), ("x0node_fast", "x0node", {"routing": fast_routing()})]
        for name, daemon, kw in settings:
            max_outage = 30.0 if name == "babeld" else 10.0
            n = trials if name != "babeld" or args.babeld_default_trials is None else args.babeld_default_trials
            results[name] = run_setting(name, daemon, run_dir, n, steady_s, max_outage_s=max_outage, **kw)
        bigres: dict = {}
        bigslow: dict = {}
        bigload: dict = {}
        if big and args.only != "babeld":
            bigres = run_big(run_dir, big, args.seed, steady_s=min(steady_s, 10.0))
            if bigres.get("converge_s") is None:  # default timers did not converge on this machine
                bigslow = run_big(run_dir, big, args.seed, steady_s=min(steady_s, 10.0), routing=BIG_FALLBACK_ROUTING)
            if args.big_load:
                bigload = run_big(run_dir, big, args.seed, steady_s=min(steady_s, 10.0), load=args.big_load)

    cols = ["coldstart_s", "startup_s", "ctrl_bps_per_node", "rss_mb", "cpu_pct", "linkdown_median_ms", "linkdown_p95_ms",
            "silent_median_ms", "silent_p95_ms"]
    print(f"{'setting':<12}" + "".join(f"{c:>20}" for c in cols))
    for name, r in results.items():
        print(f"{name:<12}" + "".join(f"{str(r.get(c)):>20}" for c in cols))
    for b in (bigres, bigslow, bigload):
        if b:
            print(f"random mesh of {b['size']} x0node nodes ({b['links']} links, routing {b['routing'] or 'defaults'}"
                  f"{', ' + str(b['load']) + ' busy loops on the host' if b['load'] else ''}): "
                  f"converged in {b['converge_s']} s after links up (None = not within the timeout; all daemons "
                  f"ready {b['all_ready_s']} s after spawn), CPU {b['cpu_pct_per_node']} % per node, RSS {b['rss_mb']} MB")
    out: dict = {"bench": "outage", "topology": "ring:6", "trials": trials}
    for name, r in results.items():
        for key in ("silent_p95_ms", "silent_median_ms", "linkdown_p95_ms", "linkdown_median_ms", "coldstart_s",
                    "startup_s", "ctrl_bps_per_node", "rss_mb", "cpu_pct"):
            if key in r:
                out[f"{name}_{key}"] = r[key]
    x, bf = results.get("x0node", {}), results.get("babeld_fast", {})
    if x.get("silent_p95_ms") is not None and bf.get("silent_p95_ms"):
        out["x0node_vs_babeld_fast_silent_p95_ratio"] = round(x["silent_p95_ms"] / bf["silent_p95_ms"], 3)
    if x.get("ctrl_bps_per_node") is not None and bf.get("ctrl_bps_per_node"):
        out["x0node_vs_babeld_fast_ctrl_ratio"] = round(x["ctrl_bps_per_node"] / bf["ctrl_bps_per_node"], 3)
    if bigres:
        out[f"x0node_mesh{bigres['size']}_converge_s"] = bigres["converge_s"]
        out[f"x0node_mesh{bigres['size']}_cpu_pct_per_node"] = bigres["cpu_pct_per_node"]
        out[f"x0node_mesh{bigres['size']}_ready_s"] = bigres["all_ready_s"]
    if bigload:
        out[f"x0node_mesh{bigload['size']}_load{bigload['load']}_converge_s"] = bigload["converge_s"]
    if bigslow:
        out[f"x0node_mesh{bigslow['size']}_hello0.5_converge_s"] = bigslow["converge_s"]
        out[f"x0node_mesh{bigslow['size']}_hello0.5_cpu_pct_per_node"] = bigslow["cpu_pct_per_node"]
    print(json.dumps(out))
    return 0


def fast_routing() -> dict:
    """x0node's fastest sane timers: half the default hello interval (see docs/routing.md)."""
    try:
        from x0node.proto.protocol import HELLO_INTERVAL_S
    except ImportError:
        return {}
    from x0node.daemon.routing_config import routing_fields

    fields = routing_fields() or {}
    return {"hello_interval_s": HELLO_INTERVAL_S / 2} if "hello_interval_s" in fields else {}


if __name__ == "__main__":
    sys.exit(main())
