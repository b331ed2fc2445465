"""Evaluation of the shipped anomaly models on the seeded scenario suite (`x0node model eval`).

Rules:
- Scores the held-out test split of the seeded suite (x0lab.anomaly.scenarios) with every detector
  (gnn_int8, gnn_float, mlp, iforest, rules) and prints one table plus per-fault-kind recall; the last
  line is JSON with one object per detector (precision, recall, f1, fpr, auc).
- Thresholds: the neural models use the ones chosen on the validation split at training time
  (anomaly_model.json); the Isolation Forest is fitted exactly as on a device (NORMAL_BUFFER_ROWS rows
  seen as normal, here normal rows of the training split) and its threshold chosen on the validation
  split the same way; the rules use their fixed link-quality thresholds.
- The recorded testbed sample (models/calibration/) is scored too; it is read bounded
  (MAX_SAMPLE_BYTES) and a malformed sample is skipped, never fatal.
- Development only: the scenario generator and the metrics live in x0lab, which routers do not install.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import numpy as np

DETECTORS = ("gnn_int8", "gnn_float", "mlp", "iforest", "rules")
EVAL_SEED = 6
SAMPLE_NAME = "calibration/testbed_sample.json"
HOST_SHARED = ("cpu_util", "mem_util")  # one value for every namespace on the testbed host
MAX_SAMPLE_BYTES = 4 * 1024 * 1024


def evaluate_all(model_dir: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-detector metric dicts, extra info) on the held-out test split."""
    from x0lab.anomaly import scenarios as S
    from x0lab.anomaly.metrics import best_f1_threshold, evaluate
    from x0node.anomaly.bundle import load_bundle
    from x0node.anomaly.chain import NORMAL_BUFFER_ROWS
    from x0node.anomaly.iforest import IsolationForest
    from x0node.anomaly.rules import rule_scores
    from x0node.anomaly.tflite_model import TfliteModel

    bundle = load_bundle(model_dir)
    size = int(bundle.meta["training"]["suite_size"])
    test = S.split_rows("test", size)
    info: dict[str, Any] = {"rows": int(len(test.y)), "positives": int(test.y.sum()),
                            "scenarios": len(S.suite_indices("test", size))}
    info["digest_ok"] = S.rows_digest(test) == bundle.meta.get("test_digest")
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    for det in ("gnn_int8", "gnn_float", "mlp"):
        model = TfliteModel(bundle.read_model(det))
        scores[det] = model.logits(test.x_self, test.x_nbr, test.mask)
        thresholds[det] = bundle.threshold(det)
    train = S.split_rows("train", size)
    val = S.split_rows("val", size)
    normal = train.x_self[train.y == 0]
    rng = random.Random(EVAL_SEED)
    pick = np.random.default_rng(EVAL_SEED).choice(len(normal), size=NORMAL_BUFFER_ROWS, replace=False)
    forest = IsolationForest.fit(normal[pick], rng)
    thresholds["iforest"] = best_f1_threshold(val.y, forest.score(val.x_self))
    scores["iforest"] = forest.score(test.x_self)
    scores["rules"] = rule_scores(test.x_self)
    thresholds["rules"] = 1.0
    results: dict[str, Any] = {}
    per_kind: dict[str, dict[str, float]] = {}
    for det in DETECTORS:
        r = evaluate(test.y, scores[det], thresholds[det])
        results[det] = r.as_dict()
        pred = scores[det] >= thresholds[det]
        per_kind[det] = {
            kind: round(float(pred[test.kind == i + 1].mean()), 3)
            for i, kind in enumerate(S.FAULT_KINDS)
            if (test.kind == i + 1).any()
        }
        results[det]["_counts"] = {"tp": r.tp, "fp": r.fp, "tn": r.tn, "fn": r.fn}
    info["per_kind_recall"] = per_kind
    info["thresholds"] = {k: round(v, 4) for k, v in thresholds.items()}
    return results, info


def evaluate_sample(model_dir: str | None = None) -> dict[str, Any] | None:
    """Scores of every detector on the recorded testbed sample (None when there is no sample).

    CPU and memory are the testbed host's, shared by all namespaces, so they carry no per-node signal
    there and are set to their neutral values; everything else is used as recorded.
    """
    from x0lab.anomaly.metrics import evaluate
    from x0node.anomaly.bundle import load_bundle
    from x0node.anomaly.features import FEATURES, K_NEIGHBOURS, NEUTRAL_RAW, normalise
    from x0node.anomaly.rules import rule_scores
    from x0node.anomaly.tflite_model import TfliteModel

    bundle = load_bundle(model_dir)
    path = bundle.directory / SAMPLE_NAME
    try:
        if path.stat().st_size > MAX_SAMPLE_BYTES:
            return None
        doc = json.loads(path.read_text())
        adjacency = {str(k): [str(v) for v in vs] for k, vs in doc["adjacency"].items()}
        by_window: dict[int, dict[str, tuple[list[float], int]]] = {}
        for r in doc["rows"]:
            by_window.setdefault(int(r["window"]), {})[str(r["node"])] = ([float(v) for v in r["raw"]], int(r["label"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    xs, xn, ms, ys = [], [], [], []
    for nodes in by_window.values():
        ids = sorted(nodes)  # every node of the window is a neighbour input; -1 rows are not scored
        raw = np.array([nodes[i][0] for i in ids], dtype=np.float64)
        for name in HOST_SHARED:
            raw[:, FEATURES.index(name)] = NEUTRAL_RAW[FEATURES.index(name)]
        x = normalise(raw)
        pos = {nid: i for i, nid in enumerate(ids)}
        for i, nid in enumerate(ids):
            if nodes[nid][1] < 0:
                continue
            nb = [pos[m] for m in adjacency.get(nid, []) if m in pos][:K_NEIGHBOURS]
            block = np.zeros((K_NEIGHBOURS, x.shape[1]), np.float32)
            mask = np.zeros(K_NEIGHBOURS, np.float32)
            block[: len(nb)] = x[nb]
            mask[: len(nb)] = 1.0
            xs.append(x[i])
            xn.append(block)
            ms.append(mask)
            ys.append(nodes[nid][1])
    x_self, x_nbr, mask, y = np.array(xs), np.array(xn), np.array(ms), np.array(ys)
    out: dict[str, Any] = {"rows": int(len(y)), "positives": int(y.sum())}
    for det in ("gnn_int8", "gnn_float", "mlp"):
        s = TfliteModel(bundle.read_model(det)).logits(x_self, x_nbr, mask)
        out[det] = evaluate(y, s, bundle.threshold(det))
    out["rules"] = evaluate(y, rule_scores(x_self), 1.0)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    results, info = evaluate_all(args.model_dir)
    print(f"held-out test split: {info['scenarios']} scenarios, {info['rows']} node-windows, "
          f"{info['positives']} anomalous")
    if not info["digest_ok"]:
        print("WARNING: the regenerated test split differs from the one recorded at training time")
    print(f"{'detector':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'fpr':>7} {'auc':>7} "
          f"{'tp':>6} {'fp':>6} {'fn':>6} {'threshold':>10}")
    for det in DETECTORS:
        r = results[det]
        c = r["_counts"]
        print(f"{det:<10} {r['precision']:>9.4f} {r['recall']:>7.4f} {r['f1']:>7.4f} {r['fpr']:>7.4f} "
              f"{r['auc']:>7.4f} {c['tp']:>6} {c['fp']:>6} {c['fn']:>6} {info['thresholds'][det]:>10.4f}")
    kinds = sorted({k for d in info["per_kind_recall"].values() for k in d})
    print("\nrecall per fault kind")
    print(f"{'kind':<18} " + " ".join(f"{d:>9}" for d in DETECTORS))
    for k in kinds:
        print(f"{k:<18} " + " ".join(f"{info['per_kind_recall'][d].get(k, 0.0):>9.3f}" for d in DETECTORS))
    sample = evaluate_sample(args.model_dir)
    if sample is not None:
        print(f"\nrecorded testbed sample ({SAMPLE_NAME}): {sample['rows']} node-windows, "
              f"{sample['positives']} anomalous; cpu/mem are host-wide there and set neutral")
        for det in ("gnn_int8", "gnn_float", "mlp", "rules"):
            r = sample[det]
            print(f"{det:<10} precision {r.precision:.3f} recall {r.recall:.3f} f1 {r.f1:.3f} fpr {r.fpr:.3f} "
                  f"(tp {r.tp} fp {r.fp} fn {r.fn})")
    print(f"\n(eval took {time.perf_counter() - t0:.1f}s)")
    print(json.dumps({d: {k: v for k, v in results[d].items() if not k.startswith("_")} for d in DETECTORS}))
    return 0
