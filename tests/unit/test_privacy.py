import math
import random

import pytest

from x0node.telemetry import privacy


def test_no_noise_when_epsilon_off():
    rng = random.Random(1)
    assert privacy.noisy_count(1234, None, rng) == 1234
    assert privacy.validate_epsilon(0) is None and privacy.validate_epsilon(None) is None


@pytest.mark.parametrize("bad", [-1.0, 1e-9, 1000.0, float("nan")])
def test_bad_epsilon_is_refused(bad):
    with pytest.raises(ValueError):
        privacy.validate_epsilon(bad)


def test_seeded_rng_gives_fixed_output():
    a = privacy.noisy_counts({"x": 100, "y": 5}, 0.5, random.Random(7))
    b = privacy.noisy_counts({"y": 5, "x": 100}, 0.5, random.Random(7))
    assert a == b


def test_laplace_scale_matches_theory():
    rng = random.Random(42)
    scale = 2.0
    xs = [privacy.laplace(rng, scale) for _ in range(20000)]
    mean = sum(xs) / len(xs)
    mean_abs = sum(abs(x) for x in xs) / len(xs)  # E|X| = b for Laplace(0, b)
    assert abs(mean) < 0.1
    assert math.isclose(mean_abs, scale, rel_tol=0.05)


def test_noisy_count_never_negative_and_noise_shrinks_with_epsilon():
    rng = random.Random(3)
    assert all(privacy.noisy_count(0, 0.1, rng) >= 0 for _ in range(500))
    wide = [abs(privacy.noisy_count(1000, 0.1, rng) - 1000) for _ in range(2000)]
    narrow = [abs(privacy.noisy_count(1000, 10.0, rng) - 1000) for _ in range(2000)]
    assert sum(narrow) < sum(wide) / 20
