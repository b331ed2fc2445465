"""`x0node model ...`: evaluate and check the shipped anomaly models (no training dependencies).

- `x0node model eval`: scores the held-out test scenarios of the seeded suite with every detector
  (gnn_int8, gnn_float, mlp, iforest, rules) and prints one table plus per-fault-kind recall; the last
  line is JSON with one object per detector (precision, recall, f1, fpr, auc). Thresholds: the neural
  models use the ones chosen on the validation split at training time (anomaly_model.json); the
  Isolation Forest is fitted exactly as on a device (NORMAL_BUFFER_ROWS rows seen as normal, here
  normal rows of the training split) and its threshold chosen on the validation split the same way;
  the rules use their fixed link-quality thresholds.
- `x0node model check`: verifies the bundle and runs the fallback chain's self-test; prints the live
  layer and exits 1 when the GNN is not live.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import numpy as np

DETECTORS = ("gnn_int8", "gnn_float", "mlp", "iforest", "rules")
EVAL_SEED = 6


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("model", help="evaluate and check the anomaly detection models")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    e = sub.add_parser("eval", help="precision/recall/F1/FPR/AUC of every detector on held-out scenarios")
    e.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    e.set_defaults(func=cmd_eval)
    c = sub.add_parser("check", help="verify the model bundle and self-test; print the live layer")
    c.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    c.set_defaults(func=cmd_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def evaluate_all(model_dir: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-detector metric dicts, extra info) on the held-out test split."""
    from x0node.anomaly import scenarios as S
    from x0node.anomaly.bundle import load_bundle
    from x0node.anomaly.chain import NORMAL_BUFFER_ROWS
    from x0node.anomaly.iforest import IsolationForest
    from x0node.anomaly.metrics import best_f1_threshold, evaluate
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
    print(f"\n(eval took {time.perf_counter() - t0:.1f}s)")
    print(json.dumps({d: {k: v for k, v in results[d].items() if not k.startswith("_")} for d in DETECTORS}))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from x0node.anomaly.chain import load_chain

    chain, bundle = load_chain(args.model_dir)
    st = chain.status()
    print(json.dumps({"model_dir": None if bundle is None else str(bundle.directory), **st}, indent=1))
    return 0 if st["live_layer"] == "gnn" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cmd_eval(argparse.Namespace(model_dir=None)))
