"""Throughput bench: x0node's per-neighbour throughput estimate on tbf-shaped veths (namespace testbed).

One run, daemons as deployed (`x0node run` in each namespace, default settings):
1. Estimate: star:4, n1 linked to n2, n3, n4 by veths shaped with tbf at 1, 10 and 100 Mbit/s on both
   ends (the fault lab's congest with a one-frame bucket: every packet serialised at the rate, as on a
   real link of that rate) before the daemons start. Error = each end's estimate once learnt and again
   after the idle window, against the tbf rate; the worst of the four per rate. Baselines in the same
   run: what iperf3 over TCP gets through each link (3 s), and the speed the kernel reports for the
   veth (what a metric that trusts link speeds would use).
2. Probe overhead when idle: nftables counters in each namespace's output hook count PROBE and
   PROBE_REPORT datagrams (IPv6 packet length, as the outage bench counts control traffic) per
   interface over an idle window after learning; bytes/s each node sends per neighbour, mean and max.
3. Re-classification: with a ping stream from n1 to n4 (500 B every 10 ms, 440 kbit/s), the n1-n4 link
   is throttled from 100 to 2 Mbit/s (tbf replaced in place) and back, --trials times: seconds from the
   change until n1's status shows the new class (poor; then good or excellent). Then once more with no
   traffic (the idle bound: the next steady train).
4. Path choice: ring:4 with n1-n2-n3 at 50 Mbit/s and n1-n4-n3 at 5 Mbit/s (equal hops, equal veth
   delay): the route n1 -> n3, and the interface 200 pings leave n1 by (packets sent on each, which
   also count the keepalives and probes both carry).

Needs root. Prints a table and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lab"))

from x0lab.testbed import measure  # noqa: E402
from x0lab.testbed.bed import Testbed  # noqa: E402
from x0lab.testbed.command import sh  # noqa: E402
from x0lab.testbed.faults import ONE_FRAME_BURST_BYTES  # noqa: E402
from x0node.proto.messages import T_PROBE, T_PROBE_REPORT  # noqa: E402
from x0node.proto.protocol import MESH_UDP_PORT  # noqa: E402

RATES_BPS = {2: 1e6, 3: 10e6, 4: 100e6}  # leaf -> rate of its link to n1
THROTTLE_BPS, THROTTLE_CLASS = 2e6, "poor"
BACK_CLASSES = ("good", "excellent")
LEARN_TIMEOUT_S = 60.0
RECLASS_TIMEOUT_S = 60.0
IDLE_RECLASS_TIMEOUT_S = 420.0
PING_SIZE, PING_INTERVAL_S = 500, 0.01
PROBE_TABLE = "x0bench_probe"


def shaped(run_dir: pathlib.Path, topology: str, rates: dict[tuple[int, int], float]) -> Testbed:
    bed = Testbed.create(run_dir, topology, "x0node")
    try:
        for (a, b), rate in rates.items():
            bed.fault("congest", a, b, rate=int(rate), burst=ONE_FRAME_BURST_BYTES)
        count_probes(bed)
        bed.start_all()
    except BaseException:
        bed.down()
        raise
    return bed


def count_probes(bed: Testbed) -> None:
    """An nftables counter per mesh interface of every node for the probe datagrams it sends."""
    for node in bed.nodes.values():
        rules = "\n".join(f'    oifname "{ifn}" udp dport {MESH_UDP_PORT} @th,72,8 {{ {T_PROBE}, {T_PROBE_REPORT} }} '
                          f'counter comment "{peer}"' for peer, ifn in node.ifaces.items())
        sh("nft", "-f", "-", ns=node.ns, input=(
            f"table inet {PROBE_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
            f"{rules}\n  }}\n}}\n"))


def probe_bytes(bed: Testbed) -> dict[tuple[int, int], int]:
    """(node, neighbour) -> probe and report bytes the node has sent on its link to the neighbour."""
    out = {}
    for node in bed.nodes.values():
        doc = json.loads(bed.exec(node.index, "nft", "-j", "list", "table", "inet", PROBE_TABLE))
        for item in doc.get("nftables", []):
            rule = item.get("rule")
            if rule and "comment" in rule:
                count = next(e["counter"]["bytes"] for e in rule["expr"] if "counter" in e)
                out[(node.index, int(rule["comment"]))] = count
    return out


def wait_for(what: str, cond, timeout_s: float, poll_s: float = 0.1):  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got is not None and got is not False:
            return got
        time.sleep(poll_s)
    raise RuntimeError(f"{what}: not within {timeout_s} s")


def probed(bed: Testbed, a: int, b: int) -> dict | None:
    n = measure.neighbour_of(bed, a, b)
    return n if n is not None and n["throughput_source"] == "probe" else None


def estimates(bed: Testbed) -> dict[float, list[float]]:
    out: dict[float, list[float]] = {}
    for leaf, rate in RATES_BPS.items():
        for a, b in ((1, leaf), (leaf, 1)):
            n = wait_for(f"n{a}'s estimate of its link to n{b}", lambda a=a, b=b: probed(bed, a, b), LEARN_TIMEOUT_S)
            out.setdefault(rate, []).append(n["throughput_bps"])
    return out


def reclass(bed: Testbed, leaf: int, rate: float, classes: tuple[str, ...], timeout_s: float = RECLASS_TIMEOUT_S) -> float:
    """Change the n1-leaf tbf to `rate`; seconds until n1 shows one of `classes` for the link."""
    bed.fault("congest", 1, leaf, rate=int(rate), burst=ONE_FRAME_BURST_BYTES)
    t0 = time.monotonic()
    wait_for(f"n1's link to n{leaf} re-classified", lambda: measure.neighbour_of(bed, 1, leaf)["quality"] in classes,
             timeout_s)
    return time.monotonic() - t0


def run_star(run_dir: pathlib.Path, idle_s: float, trials: int, idle_reclass: bool) -> dict:
    print("== star:4 at 1, 10, 100 Mbit/s", file=sys.stderr, flush=True)
    bed = shaped(run_dir / "star", "star:4", {(1, leaf): rate for leaf, rate in RATES_BPS.items()})
    res: dict = {}
    try:
        learnt = estimates(bed)
        time.sleep(5.0)  # the last learning reports are in
        c0, w0 = probe_bytes(bed), time.monotonic()
        ctl0 = bed.control_bytes()
        print(f"   learnt; idle window of {idle_s:.0f} s", file=sys.stderr, flush=True)
        time.sleep(idle_s)
        c1, w1 = probe_bytes(bed), time.monotonic()
        ctl1 = bed.control_bytes()
        later = estimates(bed)
        per_pair = {k: (c1[k] - c0[k]) / (w1 - w0) for k in c1}
        res["probe_bps_pairs"] = {f"n{a}->n{b}": round(v, 1) for (a, b), v in sorted(per_pair.items())}
        res["probe_bps_per_neighbour"] = round(statistics.mean(per_pair.values()), 1)
        res["probe_bps_per_neighbour_max"] = round(max(per_pair.values()), 1)
        res["ctrl_bps_per_node_idle"] = round(statistics.mean((ctl1[k] - ctl0[k]) / (w1 - w0) for k in ctl1), 1)
        res["estimates"] = {rate: learnt[rate] + later[rate] for rate in RATES_BPS.values()}
        res["iperf3_bps"] = {rate: measure.tcp_throughput_bps(bed, 1, leaf, seconds=3.0) for leaf, rate in RATES_BPS.items()}
        res["kernel_speed_bps"] = float(bed.exec(1, "cat", f"/sys/class/net/{bed.nodes[1].ifaces[4]}/speed").strip()) * 1e6

        leaf = 4
        down, up = [], []
        pinger = measure.Pinger(bed.nodes[1].ns, bed.nodes[leaf].mesh_addr, interval_s=PING_INTERVAL_S, size=PING_SIZE)
        try:
            time.sleep(3.0)  # the adapter has seen the traffic
            for i in range(trials):
                down.append(reclass(bed, leaf, THROTTLE_BPS, (THROTTLE_CLASS,)))
                up.append(reclass(bed, leaf, RATES_BPS[leaf], BACK_CLASSES))
                print(f"   trial {i + 1}: 100 -> 2 Mbit/s re-classified in {down[-1]:.1f} s, back in {up[-1]:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            pinger.stop()
        res["reclass_down_s"], res["reclass_up_s"] = [round(v, 2) for v in down], [round(v, 2) for v in up]
        if idle_reclass:
            time.sleep(8.0)  # the adapter's traffic figure goes stale: the link is idle again
            res["reclass_idle_s"] = round(reclass(bed, leaf, THROTTLE_BPS, (THROTTLE_CLASS,), IDLE_RECLASS_TIMEOUT_S), 1)
            print(f"   idle: re-classified in {res['reclass_idle_s']} s", file=sys.stderr, flush=True)
    finally:
        bed.down()
    return res


def run_paths(run_dir: pathlib.Path) -> dict:
    print("== ring:4, n1-n2-n3 at 50 Mbit/s, n1-n4-n3 at 5 Mbit/s", file=sys.stderr, flush=True)
    bed = shaped(run_dir / "ring", "ring:4", {(1, 2): 50e6, (2, 3): 50e6, (1, 4): 5e6, (3, 4): 5e6})
    try:
        n1, n3 = bed.nodes[1], bed.nodes[3]
        fast, slow = n1.ifaces[2], n1.ifaces[4]
        if measure.wait_converged(bed, 30.0) is None:
            raise RuntimeError("ring:4 did not converge")
        ok = measure.wait_route_dev(bed, 1, n3.mesh_addr, fast, LEARN_TIMEOUT_S)
        before = measure.tx_packets(bed, 1, fast), measure.tx_packets(bed, 1, slow)
        loss = measure.ping_loss(bed, 1, n3.mesh_addr, count=200, interval_s=0.005)
        via = {"fast": measure.tx_packets(bed, 1, fast) - before[0], "slow": measure.tx_packets(bed, 1, slow) - before[1]}
        # both counters also hold our keepalives (10/s on each) and probes: compare what the pings added
        return {"faster_path_chosen": bool(ok and via["fast"] - via["slow"] >= 180),
                "route_dev": measure.route_dev(bed, 1, n3.mesh_addr), "fast_dev": fast, "pings_by_path": via,
                "ping_loss": loss, "costs": {p: measure.neighbour_of(bed, 1, p)["cost"] for p in (2, 4)}}
    finally:
        bed.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-s", type=float, default=300.0, help="idle window for the probe overhead (default 300 s)")
    ap.add_argument("--trials", type=int, default=3, help="throttle/restore trials under traffic (default 3)")
    ap.add_argument("--no-idle-reclass", action="store_true", help="skip the throttle without traffic (up to 7 min)")
    ap.add_argument("--quick", action="store_true", help="120 s idle window, 1 trial, no idle throttle")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/throughput.py needs root (network namespaces)", file=sys.stderr)
        return 2
    idle_s, trials = (120.0, 1) if args.quick else (args.idle_s, args.trials)
    with tempfile.TemporaryDirectory(prefix="x0bench-") as tmp:
        star = run_star(pathlib.Path(tmp), idle_s, trials, idle_reclass=not (args.quick or args.no_idle_reclass))
        paths = run_paths(pathlib.Path(tmp))

    def err(rate: float, v: float) -> float:
        return 100.0 * (v - rate) / rate

    print(f"{'tbf rate':>10} {'estimates (Mbit/s: both ends, learnt and after idle)':>56} {'worst error':>12} "
          f"{'iperf3 TCP':>12} {'veth speed':>12}")
    worst: dict[str, float] = {}
    for rate, values in star["estimates"].items():
        w = max(values, key=lambda v: abs(err(rate, v)))
        worst[f"{rate / 1e6:g}"] = round(err(rate, w), 1)
        print(f"{rate / 1e6:>7g} Mb {' '.join(f'{v / 1e6:.2f}' for v in values):>56} {err(rate, w):>+11.1f}% "
              f"{star['iperf3_bps'][rate] / 1e6:>8.2f} Mb {star['kernel_speed_bps'] / 1e6:>8.0f} Mb")
    print(f"probe bytes/s sent per neighbour when idle ({idle_s:.0f} s): mean {star['probe_bps_per_neighbour']}, "
          f"max {star['probe_bps_per_neighbour_max']} ({star['probe_bps_pairs']}); control traffic per node in the "
          f"same window {star['ctrl_bps_per_node_idle']} B/s")
    print(f"re-classified under 440 kbit/s of traffic: 100 -> 2 Mbit/s {star['reclass_down_s']} s, back "
          f"{star['reclass_up_s']} s; idle: {star.get('reclass_idle_s', 'not run')} s")
    print(f"two equal-hop paths 50 vs 5 Mbit/s: route n1 -> n3 dev {paths['route_dev']} (fast path {paths['fast_dev']}), "
          f"pings {paths['pings_by_path']}, costs {paths['costs']}")
    reclass = star["reclass_down_s"] + star["reclass_up_s"]
    out = {
        "bench": "throughput",
        "est_error_pct": worst,
        "probe_bps_per_neighbour": star["probe_bps_per_neighbour"],
        "probe_bps_per_neighbour_max": star["probe_bps_per_neighbour_max"],
        "reclass_s": round(max(reclass), 2),
        "reclass_median_s": round(statistics.median(reclass), 2),
        "reclass_down_s": star["reclass_down_s"],
        "reclass_up_s": star["reclass_up_s"],
        "reclass_idle_s": star.get("reclass_idle_s"),
        "faster_path_chosen": paths["faster_path_chosen"],
        "iperf3_tcp_error_pct": {f"{r / 1e6:g}": round(err(r, v), 1) for r, v in star["iperf3_bps"].items()},
        "veth_speed_error_pct": round(err(100e6, star["kernel_speed_bps"]), 1),
        "ctrl_bps_per_node_idle": star["ctrl_bps_per_node_idle"],
        "idle_window_s": idle_s,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
