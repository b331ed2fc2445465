"""Anomaly detection: quality on real faults (as deployed) and inference cost per node and per mesh.

Quality: the real-fault dataset (models/realfaults, `x0node model collect`) judged by
x0lab.anomaly.realeval exactly as `x0node model eval --real` does: folds by topology kind, thresholds on
validation only, event recall, detect ticks, false alarms per node-hour, F1 with 95 % bootstrap CIs,
for the shipped detector (the held-loss models in the tree layer, run by the device's DetectorChain on
what the collector and the state layer delivered) and every baseline tuned on the same data (among
them the trained trees, `chain_gbt`), plus the full-neighbour reference.
Cost:

Each measured call starts from raw feature vectors and an adjacency list and does what the daemon
does per tick: normalise (clip to pinned ranges), build the K-neighbour block with its mask, run the
live detector (int8 GraphSAGE through LiteRT) and threshold. Peers measured in the same run: the float
GNN, the MLP, the Isolation Forest and the rules. Median of many repetitions after a warm-up.
Also measures the RSS the anomaly service adds: to a daemon-like process (RSS_PROBE) and, as root, to
real `x0node run` daemons on a 2-node namespace testbed (with vs without `[anomaly]`).
Last line: {"bench": "anomaly", "event_recall", "detect_ticks_p50", "false_alarms_per_node_hour" (fault-free
recordings), "false_alarms_between_faults_per_node_hour", "alarm_precision", "f1",
"ci95", "baselines": {name: {same keys}}, "as_deployed_f1", "full_neighbour_f1", "per_node_ms",
"mesh64_ms", ...}, and `federated` (federated fine-tuning of the final layer judged the same way,
realeval.fit_federated: the same keys, its deltas against the shipped detector, whether it improves
on it, what each fold's rounds did) with its cost (`federated_head_per_node_ms`: head inputs and
logit for one node; `federated_record_bytes`: one signed update's value). `--skip-real` leaves the
quality part out (cost only); `--cache=DIR` reuses the folds whose rows and detector are unchanged
(realeval.cross_predict); `--skip-daemon` leaves out the real daemons' RSS (no namespace testbed).
"""

from __future__ import annotations

import json
import pathlib
import random
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "lab"))

from x0lab.anomaly.scenarios import generate_scenario, suite_seed  # noqa: E402
from x0node.anomaly.bundle import load_bundle  # noqa: E402
from x0node.anomaly.chain import GBT, GBT_SELF, DetectorChain, load_chain  # noqa: E402
from x0node.anomaly.features import K_NEIGHBOURS, normalise  # noqa: E402
from x0node.anomaly.iforest import IsolationForest  # noqa: E402
from x0node.anomaly.tflite_model import TfliteModel  # noqa: E402

REPS = 300
WARMUP = 30

# RSS the service adds to a daemon-like process: the daemon's own libraries are imported first (they
# are resident in any case), then the service starts (LiteRT, numpy, model) and runs ticks.
RSS_PROBE = r"""
import asyncio, json, pathlib, sys, tempfile
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
import aiohttp, nacl.signing, prometheus_client, pyroute2, uvloop  # noqa: F401  daemon baseline
import x0node.daemon.bus, x0node.daemon.services, x0node.proto.router  # noqa: F401
from prometheus_client import CollectorRegistry
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.proto.views import NeighbourView, TopologyView
class Router:
    def neighbours(self): return tuple(NeighbourView("p%d" % i, "m0", "fe80::1", "up", 5.0, 0.0, None, "excellent", 100, 0.1, 1.0) for i in range(6))
    def topology(self): return TopologyView((), ())
async def main():
    base = rss_mb()
    from x0node.anomaly.service import create_service
    s = create_service({"interval_s": 3600, "seed": 1})
    ctx = ServiceContext(router=Router(), config=None, data_dir=pathlib.Path(tempfile.mkdtemp()),
                         registry=CollectorRegistry(), bus=EventBus(), interfaces=["lo"], node_id="me",
                         mesh_addr="fd00::1", provider=None)
    await s.start(ctx)
    await s.wait_loaded()  # start() loads the models in the background
    for i in range(63):
        s.update_peer("p%d" % i, [0.2, 0.4, 0.2, 10.0, 0.0, 0.0, 0.0, 1.0])
    for _ in range(30):
        await s.tick()
    after = rss_mb()
    layer = s.status()["live_layer"]
    await s.stop()
    print(json.dumps({"base_mb": round(base, 1), "after_mb": round(after, 1), "added_mb": round(after - base, 1),
                      "layer": layer}))
asyncio.run(main())
"""


def rss_daemon() -> dict:
    """VmRSS of two real daemons (`x0node run`) on a 2-node namespace testbed, one with [anomaly]
    enabled (interval 2 s), after 25 s. Needs root; returns {} when it cannot run."""
    import os
    import tempfile

    if os.geteuid() != 0:
        return {}
    try:
        from x0lab.testbed import bed as tb
    except ImportError:
        return {}
    extra = '\n[anomaly]\ninterval_s = 2.0\noverride = "observe"\n'
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="x0an-"))
    try:
        bed = tb.Testbed.create(run_dir, "line:2", daemon="x0node")
    except Exception as exc:  # noqa: BLE001 - a bench must still print its figures
        return {"error": str(exc)[:200]}
    orig = bed.write_x0node_config
    bed.write_x0node_config = lambda node, e="": orig(node, e + (extra if node.index == 1 else ""))
    out: dict = {}
    try:
        bed.start_all(timeout_s=90)
        time.sleep(25)
        rss = {}
        for k in (1, 2):
            with open(f"/proc/{bed.node(k).pid}/status") as fh:
                rss[k] = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS")) / 1024.0
        live = "layer=gnn" in bed.log_path(bed.node(1)).read_text()
        out = {"with_mb": round(rss[1], 1), "without_mb": round(rss[2], 1), "added_mb": round(rss[1] - rss[2], 1),
               "gnn_live": live}
    except Exception as exc:  # noqa: BLE001
        out = {"error": str(exc)[:200]}
    finally:
        bed.down()
    return out


def rss_added() -> dict:
    import subprocess

    out = subprocess.run([sys.executable, "-c", RSS_PROBE], capture_output=True, text=True, timeout=300,
                         cwd=str(pathlib.Path(__file__).resolve().parent.parent))
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"added_mb": None, "error": out.stderr[-500:]}


def prepare(raw: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = normalise(raw)
    mask = (idx >= 0).astype(np.float32)
    x_nbr = x[np.where(idx >= 0, idx, 0)] * mask[..., None]
    return x, x_nbr, mask


def timed(fn, reps: int = REPS) -> float:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000.0


def main() -> int:
    # a 64-node mesh from the scenario generator (first suite scenario with exactly 64 nodes or more)
    i = 0
    while True:
        sc = generate_scenario(suite_seed(1000 + i))
        if sc.n_nodes >= 64:
            break
        i += 1
    raw64 = sc.raw[sc.raw.shape[0] // 2, :64]
    rng = random.Random(6)
    idx64 = np.full((64, K_NEIGHBOURS), -1, dtype=np.int64)
    for v in range(64):
        nbs = [u for u in sc.neighbours[v] if u < 64]
        if len(nbs) > K_NEIGHBOURS:
            nbs = rng.sample(nbs, K_NEIGHBOURS)
        idx64[v, : len(nbs)] = nbs
    raw1, idx1 = raw64[:1], np.where(idx64[:1] >= 0, 0, -1)  # one node; its neighbours' rows follow
    # per-node: the node plus its neighbours' vectors, scoring only the node
    nb = [int(u) for u in idx64[0] if u >= 0]
    raw_local = raw64[[0, *nb]]
    idx_local = np.full((1, K_NEIGHBOURS), -1, dtype=np.int64)
    idx_local[0, : len(nb)] = np.arange(1, len(nb) + 1)
    del raw1, idx1

    quality: dict = {}
    if "--skip-real" not in sys.argv:
        from x0lab.anomaly import realdata, realeval

        t0 = time.perf_counter()
        cache = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--cache=")), None)
        res = realeval.evaluate(realdata.load(realeval.default_data_dir()), cache=cache)
        realeval.print_table(res)
        quality = realeval.summary(res)
        print(f"(real-fault evaluation took {time.perf_counter() - t0:.0f} s)\n")

    chain, bundle = load_chain()
    if not chain.layers["gnn"].live:
        print("GNN not live:", chain.status()["layers"]["gnn"]["reason"])
        return 1
    bundle = bundle or load_bundle()
    trees_live = chain.layers[GBT].live
    gnn_chain, _ = load_chain()
    for layer in (GBT, GBT_SELF):
        gnn_chain.layers[layer].live = False

    def eval_local(ch: DetectorChain) -> None:
        x = normalise(raw_local)
        mask = (idx_local >= 0).astype(np.float32)
        x_nbr = x[np.where(idx_local >= 0, idx_local, 0)] * mask[..., None]
        ch.evaluate(x[:1], x_nbr, mask)

    def eval64(ch: DetectorChain) -> None:
        ch.evaluate(*prepare(raw64, idx64))

    results: dict[str, tuple[float, float]] = {}
    if trees_live:
        results["gbt"] = (timed(lambda: eval_local(chain)), timed(lambda: eval64(chain)))
    results["gnn_int8"] = (timed(lambda: eval_local(gnn_chain)), timed(lambda: eval64(gnn_chain)))
    for det in ("gnn_float", "mlp"):
        ch = DetectorChain(TfliteModel(bundle.read_model(det)), bundle.threshold(det))
        results[det] = (timed(lambda ch=ch: eval_local(ch)), timed(lambda ch=ch: eval64(ch)))
    forest = IsolationForest.fit(normalise(sc.raw.reshape(-1, 8)), random.Random(6))
    ch_if = DetectorChain(None, 0.0, "bench")
    ch_if.set_iforest(forest)
    results["iforest"] = (timed(lambda: eval_local(ch_if)), timed(lambda: eval64(ch_if)))
    ch_rules = DetectorChain(None, 0.0, "bench")
    results["rules"] = (timed(lambda: eval_local(ch_rules)), timed(lambda: eval64(ch_rules)))
    prep = timed(lambda: prepare(raw64, idx64))

    from x0node.anomaly import federated as fed
    from x0node.anomaly.features import links_down_input, neighbour_aggregates
    from x0node.state.federated import VALUE_BYTES as FED_RECORD_BYTES

    head = fed.initial_params()

    def eval_head() -> None:
        x = normalise(raw_local)
        mask = (idx_local >= 0).astype(np.float32)
        x_nbr = x[np.where(idx_local >= 0, idx_local, 0)] * mask[..., None]
        own = np.concatenate([x[:1], links_down_input([0.0])], axis=1)
        fed.logits(head, fed.head_inputs(np.array([0.5]), own, neighbour_aggregates(x_nbr, mask)))

    head_ms = timed(eval_head)
    rss = rss_added()
    rss_d = {} if "--skip-daemon" in sys.argv else rss_daemon()
    size = bundle.path("gnn_int8").stat().st_size
    print(f"model {bundle.path('gnn_int8').name}: {size} bytes; feature prep for 64 nodes: {prep:.4f} ms")
    print(f"{'detector':<10} {'per_node_ms':>12} {'mesh64_ms':>10}")
    for det, (one, many) in results.items():
        print(f"{det:<10} {one:>12.4f} {many:>10.4f}")
    print(f"RSS added by the anomaly service (64 nodes, 30 ticks, live layer {rss.get('layer')}): "
          f"{rss.get('added_mb')} MB over a daemon-like baseline of {rss.get('base_mb')} MB")
    if rss_d.get("added_mb") is not None:
        print(f"real daemons on a 2-node namespace testbed: {rss_d['with_mb']} MB with [anomaly] (GNN live: "
              f"{rss_d['gnn_live']}), {rss_d['without_mb']} MB without -> added {rss_d['added_mb']} MB")
    elif rss_d:
        print("daemon RSS measurement failed:", rss_d.get("error"))
    live = "gbt" if trees_live else "gnn_int8"
    one, many = results[live]
    recipe = bundle.meta.get("trees_training", {}).get("recipe", "trees") if trees_live else None
    trees_bytes = bundle.path("trees").stat().st_size if trees_live else None
    out = {
        "bench": "anomaly",
        **{k: v for k, v in quality.items() if k != "dataset"},
        "live_detector": live,
        "tree_layer_recipe": recipe,
        "per_node_ms": round(one, 4),
        "mesh64_ms": round(many, 4),
        "gnn_int8_mesh64_ms": round(results["gnn_int8"][1], 4),
        "trees_bytes": trees_bytes,
        "feature_prep64_ms": round(prep, 4),
        "gnn_float_mesh64_ms": round(results["gnn_float"][1], 4),
        "mlp_mesh64_ms": round(results["mlp"][1], 4),
        "int8_vs_float_ratio": round(results["gnn_int8"][1] / results["gnn_float"][1], 3),
        "model_bytes": size,
        "rss_added_mb": rss.get("added_mb"),
        "rss_added_daemon_mb": rss_d.get("added_mb"),
        "federated_head_per_node_ms": round(head_ms, 4),
        "federated_record_bytes": FED_RECORD_BYTES,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
