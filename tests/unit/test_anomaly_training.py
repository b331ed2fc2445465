"""Tests for models/ code that runs without the training dependencies."""

import importlib.util
import pathlib

import numpy as np

from x0lab.anomaly import scenarios as S
from x0node.anomaly.bundle import load_bundle

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _train_module():
    spec = importlib.util.spec_from_file_location("models_train", ROOT / "models" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_representative_set_includes_extremes_and_real_rows():
    train = _train_module()
    rows = S.scenario_rows(S.generate_scenario(S.suite_seed(2)), 2)
    samples = list(train.representative(rows, np.random.default_rng(0), n_rows=50)())
    xs = np.stack([s["x_self"][0] for s in samples])
    xn = np.stack([s["x_nbr"][0] for s in samples])
    masks = np.stack([s["mask"][0] for s in samples])
    for j in range(xs.shape[1]):  # every input reaches both ends of its pinned range
        assert (xs[:, j] == 0).any() and (xs[:, j] == 1).any()
        assert (xn[..., j] == 1).any()
    assert (masks == 0).all(axis=1).any() and (masks == 1).all(axis=1).any()
    assert len(samples) > 200


def test_shipped_bundle_matches_the_training_contract():
    b = load_bundle()
    meta = b.meta
    assert {"gnn_int8", "gnn_float", "mlp"} <= set(meta["files"]) <= {"gnn_int8", "gnn_float", "mlp", "trees"}
    for det in meta["files"]:
        assert b.read_model(det)  # checksum verified
    assert b.path("gnn_int8").stat().st_size <= 200 * 1024
    hist = np.asarray(meta["psi"]["train_hist"])
    assert hist.shape == (8, meta["psi"]["bins"]) and np.allclose(hist.sum(axis=1), 1.0, atol=1e-4)
    t = meta["training"]
    assert t["gnn"]["params"] > 0 and t["mlp"]["params"] > 0
    assert 0.5 < t["mlp"]["params"] / t["gnn"]["params"] < 1.5  # similar size for a fair comparison
