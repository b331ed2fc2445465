"""alarm.py: the alarm policy's state machine and its vectorised form agree; hysteresis and guard."""

import numpy as np
import pytest

from x0node.anomaly.alarm import AlarmPolicy, AlarmState, alarm_series


def _stepped(policy: AlarmPolicy, t: np.ndarray, a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(a), dtype=bool)
    st = None
    for i in range(len(a)):
        if i == 0 or starts[i]:
            st = AlarmState(policy)
        st.update(bool(a[i]), float(t[i]))
        out[i] = st.raised
    return out


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_stepped(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    a = rng.random(n) < rng.uniform(0.1, 0.7)
    t = np.cumsum(rng.uniform(2.0, 4.0, n))
    starts = rng.random(n) < 0.02
    for r in (1, 2, 3):
        for c in (1, 2, 4):
            for g in (0.0, 10.0):
                p = AlarmPolicy(r, c, g)
                assert (alarm_series(p, t, a, starts) == _stepped(p, t, a, starts)).all(), (r, c, g)


def test_raise_needs_consecutive_ticks_and_clear_is_held() -> None:
    st = AlarmState(AlarmPolicy(raise_ticks=2, clear_ticks=3))
    seq = [True, False, True, True, False, False, True, False, False, False]
    got = [st.update(v, float(i)) for i, v in enumerate(seq)]
    assert got == [None, None, None, "raise", None, None, None, None, None, "clear"]


def test_guard_delays_a_raise_until_it_ends() -> None:
    st = AlarmState(AlarmPolicy(guard_s=10.0))
    assert [st.update(True, t) for t in (0.0, 5.0, 10.0)] == [None, None, "raise"]


def test_default_policy_is_per_tick() -> None:
    a = np.array([True, False, True, True, False])
    assert (alarm_series(AlarmPolicy(), np.arange(5.0), a) == a).all()


@pytest.mark.parametrize("bad", [{"raise_ticks": 0}, {"clear_ticks": 99}, {"raise_ticks": 1.5}, {"guard_s": -1},
                                 {"raise_ticks": True}, []])
def test_bad_policies_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        AlarmPolicy.from_dict(bad)
