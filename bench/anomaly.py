"""Anomaly inference latency: one node and one 64-node evaluation, feature preparation included.

Each measured call starts from raw feature vectors and an adjacency list and does what the daemon
does per tick: normalise (clip to pinned ranges), build the K-neighbour block with its mask, run the
live detector (int8 GraphSAGE through LiteRT) and threshold. Peers measured in the same run: the float
GNN, the MLP, the Isolation Forest and the rules. Median of many repetitions after a warm-up.
Last line: {"bench": "anomaly", "per_node_ms", "mesh64_ms", ...}.
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

from x0node.anomaly.bundle import load_bundle  # noqa: E402
from x0node.anomaly.chain import DetectorChain, load_chain  # noqa: E402
from x0node.anomaly.features import K_NEIGHBOURS, normalise  # noqa: E402
from x0node.anomaly.iforest import IsolationForest  # noqa: E402
from x0node.anomaly.scenarios import generate_scenario, suite_seed  # noqa: E402
from x0node.anomaly.tflite_model import TfliteModel  # noqa: E402

REPS = 300
WARMUP = 30


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

    chain, bundle = load_chain()
    if chain.live_layer != "gnn":
        print("GNN not live:", chain.status()["layers"]["gnn"]["reason"])
        return 1
    bundle = bundle or load_bundle()

    def eval_local(ch: DetectorChain) -> None:
        x = normalise(raw_local)
        mask = (idx_local >= 0).astype(np.float32)
        x_nbr = x[np.where(idx_local >= 0, idx_local, 0)] * mask[..., None]
        ch.evaluate(x[:1], x_nbr, mask)

    def eval64(ch: DetectorChain) -> None:
        ch.evaluate(*prepare(raw64, idx64))

    results: dict[str, tuple[float, float]] = {}
    results["gnn_int8"] = (timed(lambda: eval_local(chain)), timed(lambda: eval64(chain)))
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

    size = bundle.path("gnn_int8").stat().st_size
    print(f"model {bundle.path('gnn_int8').name}: {size} bytes; feature prep for 64 nodes: {prep:.4f} ms")
    print(f"{'detector':<10} {'per_node_ms':>12} {'mesh64_ms':>10}")
    for det, (one, many) in results.items():
        print(f"{det:<10} {one:>12.4f} {many:>10.4f}")
    one, many = results["gnn_int8"]
    out = {
        "bench": "anomaly",
        "per_node_ms": round(one, 4),
        "mesh64_ms": round(many, 4),
        "feature_prep64_ms": round(prep, 4),
        "gnn_float_mesh64_ms": round(results["gnn_float"][1], 4),
        "mlp_mesh64_ms": round(results["mlp"][1], 4),
        "int8_vs_float_ratio": round(many / results["gnn_float"][1], 3),
        "model_bytes": size,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
