import json
import subprocess
import sys

from x0lab.anomaly.evaluation import DETECTORS, evaluate_all
from x0node.cli import build_parser


def test_model_subcommands_are_registered():
    args = build_parser().parse_args(["model", "eval"])
    assert callable(args.func)
    assert callable(build_parser().parse_args(["model", "check"]).func)


def test_eval_covers_every_detector_and_guards_the_shipped_model_against_regressions():
    results, info = evaluate_all()
    assert info["digest_ok"], "the generator no longer reproduces the recorded held-out split"
    assert set(results) == set(DETECTORS)
    g = results["gnn_int8"]
    # floors at or just under the figures in models/MODEL_CARD.md (goals: P >= .98, R >= .96, F1 >= .97)
    assert g["precision"] >= 0.98 and g["recall"] >= 0.95 and g["f1"] >= 0.97 and g["fpr"] <= 0.01
    assert g["f1"] > results["mlp"]["f1"] and g["f1"] > results["iforest"]["f1"] and g["f1"] > results["rules"]["f1"]
    assert abs(g["f1"] - results["gnn_float"]["f1"]) < 0.02  # int8 quantisation costs little
    for r in results.values():
        assert {"precision", "recall", "f1", "fpr", "auc"} <= set(r)


def test_check_command_reports_the_live_layer():
    out = subprocess.run([sys.executable, "-m", "x0node", "model", "check"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["live_layer"] == "gbt"  # the tree models trained on real faults


def test_eval_real_without_a_dataset_says_how_to_make_one(tmp_path):
    out = subprocess.run([sys.executable, "-m", "x0node", "model", "eval", "--real", "--data", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "x0node model collect --seed N" in out.stdout
