import numpy as np
import pytest

from x0node.anomaly.bundle import load_bundle
from x0node.anomaly.features import K_NEIGHBOURS, N_FEATURES
from x0node.anomaly.tflite_model import ModelError, RuntimeMissing, TfliteModel, load_interpreter_class


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_int8_model_is_full_integer_and_small(bundle):
    data = bundle.read_model("gnn_int8")
    assert len(data) <= 200 * 1024
    m = TfliteModel(data)
    assert m.quantised and m.uses_neighbours


def test_any_batch_size_and_chunking(bundle):
    m = TfliteModel(bundle.read_model("gnn_int8"))
    rng = np.random.default_rng(0)
    xs = rng.random((5, N_FEATURES), dtype=np.float32)
    xn = rng.random((5, K_NEIGHBOURS, N_FEATURES), dtype=np.float32)
    mask = np.ones((5, K_NEIGHBOURS), np.float32)
    five = m.logits(xs, xn, mask)
    one = np.array([m.logits(xs[i : i + 1], xn[i : i + 1], mask[i : i + 1])[0] for i in range(5)])
    assert five.shape == (5,) and np.allclose(five, one)


def test_out_of_range_inputs_are_clipped(bundle):
    m = TfliteModel(bundle.read_model("gnn_float"))
    xs = np.full((1, N_FEATURES), 0.5, np.float32)
    xn = np.zeros((1, K_NEIGHBOURS, N_FEATURES), np.float32)
    mask = np.zeros((1, K_NEIGHBOURS), np.float32)
    assert np.allclose(m.logits(xs * 100, xn, mask), m.logits(np.ones_like(xs), xn, mask))


def test_mlp_ignores_neighbour_inputs(bundle):
    m = TfliteModel(bundle.read_model("mlp"))
    assert not m.uses_neighbours
    xs = np.full((2, N_FEATURES), 0.3, np.float32)
    assert np.allclose(m.logits(xs), m.logits(xs, np.ones((2, K_NEIGHBOURS, N_FEATURES)), np.ones((2, K_NEIGHBOURS))))


@pytest.mark.parametrize("blob", [b"", b"x" * 100, b"\x00\x00\x00\x00TFL3" + b"\x00" * 64])
def test_garbage_is_a_model_error(blob):
    with pytest.raises(ModelError):
        TfliteModel(blob)


def test_missing_runtime_is_reported():
    with pytest.raises(RuntimeMissing):
        load_interpreter_class((("no_such_runtime_mod", "Interpreter"),))
    cls, name = load_interpreter_class()
    assert name == "ai_edge_litert.interpreter"
