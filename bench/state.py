"""Mesh-state bench: heal-to-convergence, idle gossip, bytes per update and revocation time on
namespace meshes of real x0node daemons (random:10 and random:50), with and without 30 % loss.

Per mesh size: start the daemons with the state service and wait for routing to converge; measure idle
gossip bytes on the wire (nftables counters on the state port, IPv6+UDP headers included) and CPU once
Trickle has slowed down; time updates to every node; split the mesh in two halves (every link between
them silent), write on both sides, heal, and time until every node reports the same digest; check that
every acknowledged write is present on every node; with 30 % loss (nftables `numgen random`) on every
link during the heal, again; on the largest mesh, publish a revocation list on one node and time until
every node's router holds it. Prints a table, then one JSON line.

The baseline is LibreMesh shared-state's fixed 120 s sync period (not installable here; its period is
its documented default) — the time a change waits there before it is even sent.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "lab"))

from tests.integration.state_mesh import (  # noqa: E402
    ask,
    last_change_wall,
    split,
    state_bed,
    wait_equal,
    wait_socket,
)
from x0lab.testbed import measure, provision  # noqa: E402
from x0lab.testbed.bed import Testbed, sh  # noqa: E402
from x0node.proto.protocol import ROUTE_PROTOCOL_NUMBER  # noqa: E402, F401
from x0node.state.gossip import STATE_UDP_PORT  # noqa: E402

LOSS_PCT = 30
WRITES_PER_SIDE = 5
UPDATES_FOR_BYTES = 10
UPDATE_SPACING_S = 2.0
IDLE_WARMUP_S = 20.0
"""Trickle doubles from 50 ms to its 8 s ceiling in ~16 s after the last change."""
IDLE_S = 30.0
CONVERGE_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 120.0
WRITE_TIMEOUT_S = 30.0
"""A write is answered once it is on disk (fsync); on a host whose disk is busy that took over 5 s."""
"""50 daemons starting at once on a loaded 2-core host can take more than the default 30 s."""
SPLIT_SETTLE_S = 1.0
LOSS_SETTLE_S = 3.0
"""The loss is the mesh's condition, the heal the event: loss starts on every link this long before the
heal, so the routing core's reaction to it (adjacency flaps, floods) is not timed as the heal's."""
POLL_S = 0.5
"""Digests are polled this slowly (a poll wakes every daemon); the convergence instant is each node's own
record of when its digest last changed, read once every node agrees."""
LIBREMESH_SYNC_PERIOD_S = 120.0
COUNT_TABLE = "x0st_count"
GOALS = {"converge_s_50_loss30": 3.0, "idle_bps_per_node": 300.0, "lost_updates": 0, "revocation_s_50": 2.0}


def install_counters(bed: Testbed) -> None:
    for node in bed.nodes.values():
        rules = "\n".join(f'    oifname "{i}" udp dport {STATE_UDP_PORT} counter' for i in node.ifaces.values())
        sh("nft", "-f", "-", ns=node.ns, input=f"table inet {COUNT_TABLE} {{\n  chain out {{\n    type filter hook "
           f"output priority 0; policy accept;\n{rules}\n  }}\n}}\n")


def wire_bytes(bed: Testbed) -> int:
    total = 0
    for node in bed.nodes.values():
        doc = json.loads(sh("nft", "-j", "list", "table", "inet", COUNT_TABLE, ns=node.ns))
        for item in doc.get("nftables", []):
            for e in item.get("rule", {}).get("expr", []):
                if "counter" in e:
                    total += e["counter"]["bytes"]
    return total


def components(bed: Testbed, nodes: set[int]) -> list[list[int]]:
    """Connected components of the mesh restricted to `nodes`."""
    left, out = set(nodes), []
    while left:
        comp, queue = [], [min(left)]
        left.discard(queue[0])
        while queue:
            k = queue.pop()
            comp.append(k)
            for j in bed.topology.neighbours(k):
                if j in left:
                    left.discard(j)
                    queue.append(j)
        out.append(sorted(comp))
    return out


def half(bed: Testbed) -> set[int]:
    """About half of the nodes, grown breadth-first from some start so that both halves stay connected
    (the first start that achieves it; else the one with the fewest pieces)."""
    best: tuple[int, set[int]] | None = None
    for start in sorted(bed.nodes):
        seen, queue = [start], [start]
        while queue and len(seen) < len(bed.nodes) // 2:
            k = queue.pop(0)
            for j in bed.topology.neighbours(k):
                if j not in seen and len(seen) < len(bed.nodes) // 2:
                    seen.append(j)
                    queue.append(j)
        pieces = len(components(bed, set(bed.nodes) - set(seen)))
        if best is None or pieces < best[0]:
            best = (pieces, set(seen))
        if pieces == 1:
            break
    assert best is not None
    return best[1]


def lost_updates(bed: Testbed, acked: list[tuple[str, object]]) -> int:
    missing = 0
    for k in bed.nodes:
        for key, value in acked:
            entry = ask(bed, k, {"op": "get", "ns": "kv", "key": key}).get("entry")
            if entry is None or entry.get("value") != value:
                missing += 1
    return missing


def partition_run(bed: Testbed, tag: str, loss: bool, rng: random.Random) -> dict:
    side = half(bed)
    other = set(bed.nodes) - side
    cut = split(bed, side)
    time.sleep(SPLIT_SETTLE_S)
    acked: list[tuple[str, object]] = []
    for group in (side, other):
        for i in range(WRITES_PER_SIDE):
            k = rng.choice(sorted(group))
            key, value = f"{tag}-n{k}-{i}", {"run": tag, "i": i, "node": k}
            if ask(bed, k, {"op": "put", "ns": "kv", "key": key, "value": value}, WRITE_TIMEOUT_S).get("ok"):
                acked.append((key, value))
    pieces = components(bed, side) + components(bed, other)
    sides_ok = all(wait_equal(bed, CONVERGE_TIMEOUT_S, comp) is not None for comp in pieces)
    if loss:
        bed.fault_links("loss", [ln for ln in bed.topology.links if ln not in cut], percent=LOSS_PCT)
        time.sleep(LOSS_SETTLE_S)
    before = {k: ask(bed, k, {"op": "status"}) for k in bed.nodes}
    cpu0 = sched_stats(bed)
    # every cut link's change is released at once (t0); the nft transactions land within heal_spread_s
    t0 = bed.fault_links("loss", cut, percent=LOSS_PCT) if loss else bed.heal_links(cut)  # loss replaces "silent"
    heal_spread = time.time() - t0
    conv = wait_equal(bed, CONVERGE_TIMEOUT_S, poll_s=POLL_S)
    done = last_change_wall(bed) if conv is not None else None
    converge = None if done is None else round(done - t0, 3)  # from the start of the heal
    if done is not None:
        show_slowest(bed, tag, t0, before, cpu0, time.time() - t0)
    lost = lost_updates(bed, acked)
    bed.heal_links(list(bed.topology.links))
    return {"converge_s": converge, "acked": len(acked), "lost": lost, "sides_converged": sides_ok,
            "cut_links": len(cut), "pieces": len(pieces), "heal_spread_s": round(heal_spread, 3)}


def sched_stats(bed: Testbed) -> dict[int, tuple[int, int, int]]:
    """Per node: the daemon's main thread's (ns on a CPU, ns waiting for one, times scheduled in)."""
    out = {}
    for k, node in bed.nodes.items():
        try:
            a, b, c = pathlib.Path(f"/proc/{node.pid}/schedstat").read_text().split()
            out[k] = (int(a), int(b), int(c))
        except (OSError, ValueError):
            continue
    return out


def show_slowest(bed: Testbed, tag: str, t0: float, before: dict[int, dict], cpu0: dict, span_s: float) -> None:
    """Print (stderr) the nodes whose digest changed last, with what their gossip did during the heal and
    how long their daemon waited for a CPU each time it woke up."""
    cpu1 = sched_stats(bed)
    per_node = {k: ask(bed, k, {"op": "digest"})["digest_changed_wall"] - t0 for k in bed.nodes}
    print(f"   {tag}: " + " ".join(f"n{k}:{per_node[k]:.2f}" for k in sorted(per_node, key=per_node.get)),  # type: ignore[arg-type]
          file=sys.stderr, flush=True)
    for k in sorted(per_node, key=per_node.get, reverse=True)[:5]:  # type: ignore[arg-type]
        now, was = ask(bed, k, {"op": "status"}), before[k]
        d = {c: now["counters"][c] - was["counters"][c] for c in ("trickle_resets", "tx_digest", "tx_vector",
                                                                   "tx_delta", "rx_datagrams", "records_duplicate")}
        drops = {c: v - was["drops"][c] for c, v in now["drops"].items() if v != was["drops"][c]}
        run, wait, n = (cpu1[k][i] - cpu0[k][i] for i in range(3)) if k in cpu0 and k in cpu1 else (0, 0, 0)
        print(f"   {tag}: n{k} changed {per_node[k]:.3f} s after the heal, degree "
              f"{len(bed.topology.neighbours(k))}, CPU {100 * run / 1e9 / span_s:.1f} %, "
              f"waited {wait / 1e6 / max(1, n):.1f} ms per wake-up, {d} drops {drops}; at the heal: "
              f"{was['neighbours']} gossip neighbours, Trickle {was['trickle_intervals_s']}", file=sys.stderr, flush=True)


def revocation_run(bed: Testbed) -> float | None:
    victim = max(bed.nodes)
    anchor = provision.mesh_anchor(bed.run_dir)
    crl = anchor.revoke([bytes.fromhex(bed.nodes[victim].node_id or "")], serial=1, issued_at=int(time.time()))
    others = [k for k in bed.nodes if k != victim]
    t0 = time.time()
    if not ask(bed, 1, {"op": "publish_crl", "crl_hex": crl.encode().hex()}, WRITE_TIMEOUT_S).get("ok"):
        return None
    while time.time() - t0 < CONVERGE_TIMEOUT_S:
        if all(ask(bed, k, {"op": "digest"}).get("crl_serial") == 1 for k in others):
            times = [ask(bed, k, {"op": "digest"}).get("crl_applied_wall") for k in others]
            return round(max(t for t in times if t is not None) - t0, 3)
        time.sleep(POLL_S)
    return None


def run_size(run_dir: pathlib.Path, n: int, seed: int, revoke: bool) -> dict:
    print(f"== random:{n}:{seed}", file=sys.stderr, flush=True)
    bed = state_bed(run_dir / f"n{n}", f"random:{n}:{seed}")
    rng = random.Random(seed)
    res: dict = {"nodes": n, "links": len(bed.topology.links)}
    try:
        install_counters(bed)
        wait_socket(bed, STARTUP_TIMEOUT_S)
        res["routing_converged"] = measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
        time.sleep(IDLE_WARMUP_S)
        b0, c0, t0 = wire_bytes(bed), bed.process_stats(), time.monotonic()
        time.sleep(IDLE_S)
        b1, c1, t1 = wire_bytes(bed), bed.process_stats(), time.monotonic()
        res["idle_bps_per_node"] = round((b1 - b0) / (t1 - t0) / n, 1)
        res["cpu_pct_per_node_idle"] = round(100 * statistics.mean(
            (c1[k][0] - c0[k][0]) / (t1 - t0) for k in c1 if k in c0), 2)
        res["rss_mb"] = round(statistics.mean(v[1] for v in c1.values()), 1)
        # bytes per update: updates spaced out, the idle rate subtracted
        b0, t0 = wire_bytes(bed), time.monotonic()
        times = []
        for i in range(UPDATES_FOR_BYTES):
            k = rng.choice(sorted(bed.nodes))
            w0 = time.monotonic()
            ask(bed, k, {"op": "put", "ns": "kv", "key": f"u{i}", "value": i}, WRITE_TIMEOUT_S)
            t_put = time.time()
            times.append(None if wait_equal(bed, CONVERGE_TIMEOUT_S, poll_s=POLL_S) is None
                         else last_change_wall(bed) - t_put)
            time.sleep(max(0.0, UPDATE_SPACING_S - (time.monotonic() - w0)))
        time.sleep(IDLE_WARMUP_S)
        b1, t1 = wire_bytes(bed), time.monotonic()
        extra = (b1 - b0) - res["idle_bps_per_node"] * n * (t1 - t0)
        res["bytes_per_update_mesh"] = round(extra / UPDATES_FOR_BYTES)
        res["bytes_per_update"] = round(extra / UPDATES_FOR_BYTES / n)
        ok = [x for x in times if x is not None]
        res["update_spread_s_median"] = round(statistics.median(ok), 3) if ok else None
        c0, t0 = bed.process_stats(), time.monotonic()
        res["heal"] = partition_run(bed, f"h{n}", False, rng)
        res["heal_loss30"] = partition_run(bed, f"l{n}", True, rng)
        c1, t1 = bed.process_stats(), time.monotonic()
        res["cpu_pct_per_node_busy"] = round(100 * statistics.mean(
            (c1[k][0] - c0[k][0]) / (t1 - t0) for k in c1 if k in c0), 2)
        if revoke:
            res["revocation_s"] = revocation_run(bed)
    finally:
        bed.down()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50", help="mesh sizes (default 10,50)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up in `finally`
    sizes = [int(x) for x in args.sizes.split(",")]
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="x0st", dir="/tmp"))
    results = {}
    try:
        for n in sizes:
            results[n] = run_size(run_dir, n, args.seed, revoke=n == max(sizes))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{'nodes':>5} {'heal s':>7} {'heal 30% s':>10} {'idle B/s':>9} {'B/update':>9} {'CPU idle %':>10} "
          f"{'CPU busy %':>10} {'lost':>5} {'revoke s':>8}")
    for n, r in results.items():
        print(f"{n:>5} {r['heal']['converge_s']!s:>7} {r['heal_loss30']['converge_s']!s:>10} "
              f"{r['idle_bps_per_node']:>9} {r['bytes_per_update']:>9} {r['cpu_pct_per_node_idle']:>10} "
              f"{r['cpu_pct_per_node_busy']:>10} {r['heal']['lost'] + r['heal_loss30']['lost']:>5} "
              f"{r.get('revocation_s')!s:>8}")
    big = max(results)
    out = {
        "bench": "state",
        "converge_s_10": results.get(10, {}).get("heal", {}).get("converge_s"),
        "converge_s_10_loss30": results.get(10, {}).get("heal_loss30", {}).get("converge_s"),
        "converge_s_50": results.get(50, {}).get("heal", {}).get("converge_s"),
        "converge_s_50_loss30": results.get(50, {}).get("heal_loss30", {}).get("converge_s"),
        "idle_bps_per_node": max(r["idle_bps_per_node"] for r in results.values()),
        "bytes_per_update": results[big]["bytes_per_update"],
        "lost_updates": sum(r["heal"]["lost"] + r["heal_loss30"]["lost"] for r in results.values()),
        "acked_updates": sum(r["heal"]["acked"] + r["heal_loss30"]["acked"] for r in results.values()),
        "revocation_s_50": results.get(50, {}).get("revocation_s"),
        "heal_spread_s_50_loss30": results.get(50, {}).get("heal_loss30", {}).get("heal_spread_s"),
        "cpu_pct_per_node_idle": results[big]["cpu_pct_per_node_idle"],
        "cpu_pct_per_node_busy": results[big]["cpu_pct_per_node_busy"],
        "rss_mb": results[big]["rss_mb"],
        "baseline_libremesh_sync_period_s": LIBREMESH_SYNC_PERIOD_S,
    }
    out["speedup_vs_libremesh_period"] = (round(LIBREMESH_SYNC_PERIOD_S / out["converge_s_50_loss30"], 1)
                                          if out["converge_s_50_loss30"] else None)
    out["goals_met"] = {k: (out.get(k) is not None and out[k] <= v) for k, v in GOALS.items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
