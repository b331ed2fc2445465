import random

from x0node.state.trickle import Trickle


def _sends(tr: Trickle, until: float, step: float = 0.001, consistent_every: float | None = None) -> int:
    n, t = 0, 0.0
    next_heard = consistent_every
    while t < until:
        t += step
        if next_heard is not None and t >= next_heard:
            tr.heard_consistent()
            next_heard += consistent_every
        n += tr.fire(t)
    return n


def test_interval_doubles_to_imax_and_resets_to_imin():
    tr = Trickle(0.05, 1.6, 1, random.Random(1), 0.0)
    n = _sends(tr, 10.0)
    assert tr.interval_s == 1.6
    # 0.05 .. 1.6 is 6 doublings (~3.15 s), then one per 1.6 s interval
    assert 6 + 3 <= n <= 6 + 5
    tr.reset(10.0)
    assert tr.interval_s == 0.05 and tr.next_time() <= 10.05


def test_reset_at_imin_does_not_restart_interval():
    tr = Trickle(0.05, 1.0, 1, random.Random(2), 0.0)
    end = tr.end_s
    tr.reset(0.01)
    assert tr.end_s == end


def test_consistent_transmissions_suppress():
    tr = Trickle(1.0, 1.0, 1, random.Random(3), 0.0)
    assert _sends(tr, 20.0, consistent_every=0.1) == 0
    tr2 = Trickle(1.0, 1.0, 1, random.Random(3), 0.0)
    assert _sends(tr2, 20.0) >= 19
