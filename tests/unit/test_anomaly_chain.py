import hashlib
import json
import random
import shutil

import numpy as np
import pytest

from x0node.anomaly import bundle as B
from x0node.anomaly.chain import GNN, IFOREST, RULES, SELF, DetectorChain, load_chain, self_test
from x0node.anomaly.features import K_NEIGHBOURS, N_FEATURES, NEUTRAL_RAW, normalise
from x0node.anomaly.tflite_model import RuntimeMissing


@pytest.fixture
def model_dir(tmp_path):
    src = B.find_model_dir()
    for name in ("anomaly_model.json", "SHA256SUMS", "anomaly_gnn_int8.tflite"):
        shutil.copy(src / name, tmp_path / name)
    return tmp_path


def _resum(d):
    lines = [f"{hashlib.sha256((d / n).read_bytes()).hexdigest()}  {n}" for n in
             ("anomaly_gnn_int8.tflite", "anomaly_model.json")]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _batch(n=3, neighbours=2):
    x = np.repeat(normalise(NEUTRAL_RAW[None]), n, axis=0)
    xn = np.zeros((n, K_NEIGHBOURS, N_FEATURES), np.float32)
    m = np.zeros((n, K_NEIGHBOURS), np.float32)
    xn[:, :neighbours] = x[0]
    m[:, :neighbours] = 1.0
    return x, xn, m


def test_shipped_bundle_gives_a_live_gnn(model_dir):
    chain, bundle = load_chain(str(model_dir))
    assert chain.live_layer == GNN and bundle is not None
    ev = chain.evaluate(*_batch())
    assert ev.layer == GNN and not ev.anomalous.any()


def test_rows_without_neighbours_never_reach_the_gnn():
    """An empty mask selects the self-only model (trained for that case), row by row."""
    chain, _ = load_chain()
    for layer in ("gbt", "gbt_self"):  # the GNN pair alone
        chain.layers[layer].live = False
    assert chain.live_layer == GNN and chain.layers[SELF].live, chain.status()
    x, xn, m = _batch(4)
    m[1] = 0.0
    m[3] = 0.0
    xn[1] = xn[3] = 0.0
    ev = chain.evaluate(x, xn, m)
    assert ev.row_layers == (GNN, SELF, GNN, SELF)
    assert ev.layer == GNN and ev.layer_of(1) == SELF
    alone = chain.evaluate(x[1:2], xn[1:2], m[1:2])
    assert alone.layer == SELF and alone.threshold == chain.self_threshold
    assert np.allclose(alone.scores, ev.scores[1], atol=1e-5)
    assert not ev.anomalous.any()
    x[3] = 1.0  # saturated node with no neighbour data: judged by the self-only model
    assert chain.evaluate(x, xn, m).anomalous[3]


def test_without_a_self_model_rows_without_neighbours_fall_to_the_next_layer(model_dir):
    chain, _ = load_chain(str(model_dir))  # this bundle holds only the GNN
    assert chain.live_layer == GNN and not chain.layers[SELF].live
    assert chain.evaluate(*_batch(neighbours=0)).layer == RULES


def test_the_shipped_bundle_scores_with_the_tree_pair_by_neighbour_data():
    chain, _ = load_chain()
    assert chain.live_layer == "gbt" and chain.layers["gbt_self"].live, chain.status()
    x, xn, m = _batch(2)
    m[1] = 0.0
    xn[1] = 0.0
    assert chain.evaluate(x, xn, m).row_layers == ("gbt", "gbt_self")


def test_missing_model_falls_back_to_rules(tmp_path):
    chain, bundle = load_chain(str(tmp_path / "nowhere"))
    assert bundle is None and chain.live_layer == RULES
    assert "BundleError" in chain.status()["layers"]["gnn"]["reason"]
    assert chain.evaluate(*_batch()).layer == RULES


def test_corrupt_model_fails_the_checksum(model_dir):
    p = model_dir / "anomaly_gnn_int8.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    chain, _ = load_chain(str(model_dir))
    assert chain.live_layer == RULES and "checksum" in chain.status()["layers"]["gnn"]["reason"]


def test_truncated_model_with_matching_checksum_is_rejected_by_the_runtime(model_dir):
    p = model_dir / "anomaly_gnn_int8.tflite"
    p.write_bytes(p.read_bytes()[:1000])
    _resum(model_dir)
    chain, _ = load_chain(str(model_dir))
    assert chain.live_layer == RULES and "ModelError" in chain.status()["layers"]["gnn"]["reason"]


def test_missing_runtime_degrades(model_dir):
    def no_runtime():
        raise RuntimeMissing("no TFLite runtime: test")

    chain, bundle = load_chain(str(model_dir), interpreter_loader=no_runtime)
    assert bundle is not None and chain.live_layer == RULES
    assert "no TFLite runtime" in chain.status()["layers"]["gnn"]["reason"]


def test_failed_self_test_degrades(model_dir):
    meta = json.loads((model_dir / "anomaly_model.json").read_text())
    meta["self_test"]["logits"] = [v + 5.0 for v in meta["self_test"]["logits"]]
    (model_dir / "anomaly_model.json").write_text(json.dumps(meta))
    _resum(model_dir)
    chain, _ = load_chain(str(model_dir))
    assert chain.live_layer == RULES and "self-test" in chain.status()["layers"]["gnn"]["reason"]


def test_self_test_passes_on_the_shipped_model(model_dir):
    chain, bundle = load_chain(str(model_dir))
    assert self_test(chain.gnn, bundle.meta) is None


class _Broken:
    def logits(self, *a):
        raise RuntimeError("interpreter died")


def test_inference_failure_degrades_to_iforest_once_fitted_else_rules():
    chain = DetectorChain(_Broken(), 0.0)
    ev = chain.evaluate(*_batch())
    assert ev.layer == RULES and ev.fallbacks == (GNN,)
    assert chain.live_layer == RULES and chain.layers[GNN].failures == 1
    # iForest becomes live after enough rows seen as normal
    rng = np.random.default_rng(0)
    chain.add_normal(np.clip(normalise(NEUTRAL_RAW[None]) + rng.normal(0, 0.02, (600, N_FEATURES)), 0, 1))
    assert chain.fit_iforest(random.Random(1))
    assert chain.live_layer == IFOREST
    x, xn, m = _batch(2)
    x[1] = 1.0
    ev = chain.evaluate(x, xn, m)
    assert ev.layer == IFOREST and not ev.anomalous[0] and ev.anomalous[1]


def test_iforest_needs_enough_rows():
    chain = DetectorChain(None, 0.0, "none")
    chain.add_normal(np.zeros((10, N_FEATURES)))
    assert not chain.fit_iforest(random.Random(0)) and chain.live_layer == RULES


def test_chain_catches_real_faults_with_the_shipped_model(model_dir):
    from x0lab.anomaly import scenarios as S

    chain, _ = load_chain(str(model_dir))
    rows = S.scenario_rows(S.generate_scenario(S.suite_seed(8)), 8)
    ev = chain.evaluate(rows.x_self, rows.x_nbr, rows.mask)
    assert (ev.anomalous == rows.y.astype(bool)).mean() > 0.98
