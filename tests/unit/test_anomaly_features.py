import numpy as np
import pytest

from x0node.anomaly import features as F


def test_normalise_clips_to_pinned_ranges_and_unit_interval():
    raw = np.array([[-1.0, 2.0, 0.5, 1e9, 3.0, 1000.0, 1e12, -5.0]])
    x = F.normalise(raw)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x[0, 0] == 0.0 and x[0, 1] == 1.0 and x[0, 3] == 1.0 and x[0, 7] == 0.0


def test_non_finite_values_become_neutral_not_faulty():
    raw = np.full((1, F.N_FEATURES), np.nan)
    assert np.allclose(F.normalise(raw), F.normalise(F.NEUTRAL_RAW[None]))


def test_denormalise_inverts_normalise_inside_range():
    raw = np.array([0.3, 0.7, 0.1, 42.0, 0.02, 3.0, 17.0, 0.9])
    assert np.allclose(F.denormalise(F.normalise(raw)), raw, rtol=1e-4)


def test_wrong_width_is_refused():
    with pytest.raises(ValueError):
        F.normalise(np.zeros((2, 7)))


def test_raw_from_mapping_ignores_bad_values():
    v = F.raw_from_mapping({"cpu_util": 0.5, "mem_util": "x", "rtt_ms": float("inf"), "loss_max": True, "bogus": 1})
    assert v[0] == 0.5
    assert v[1] == F.NEUTRAL_RAW[1] and v[3] == F.NEUTRAL_RAW[3] and v[4] == F.NEUTRAL_RAW[4]


def test_neighbour_block_pads_and_masks():
    x = np.arange(3 * F.N_FEATURES, dtype=np.float32).reshape(3, F.N_FEATURES)
    x_nbr, mask = F.neighbour_block(x, [[1, 2], [], list(range(20))[:2]])
    assert x_nbr.shape == (3, F.K_NEIGHBOURS, F.N_FEATURES)
    assert mask[0].tolist()[:3] == [1, 1, 0] and mask[1].sum() == 0
    assert np.array_equal(x_nbr[0, 1], x[2]) and not x_nbr[1].any()


def test_sample_neighbours_caps_at_k_without_repeats():
    rng = np.random.default_rng(1)
    idx = F.sample_neighbours([list(range(20))], F.K_NEIGHBOURS, rng)
    assert len(set(idx[0].tolist())) == F.K_NEIGHBOURS and (idx >= 0).all()
