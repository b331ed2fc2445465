"""Replay filter: exact, time-windowed, bounded; packet-id sliding window."""

from __future__ import annotations

import pytest

from x0node.transport.replay import ReplayFilter, SlidingWindow


def test_remembers_for_at_least_the_window():
    f = ReplayFilter(window_s=60, capacity=1000)
    assert f.check_and_add(b"a", 0.0)
    for t in (1.0, 30.0, 59.9, 60.0, 100.0, 119.0):
        assert not f.check_and_add(b"a", t), t


def test_forgets_after_two_windows():
    f = ReplayFilter(window_s=60, capacity=1000)
    f.check_and_add(b"a", 0.0)
    assert f.check_and_add(b"a", 121.0)


def test_capacity_bounds_memory():
    f = ReplayFilter(window_s=60, capacity=100)
    for i in range(1000):
        f.check_and_add(i.to_bytes(4, "big"), 1.0)
    assert len(f) <= 100
    assert f.evicted_early > 0
    # the most recent entries are still remembered
    assert not f.check_and_add((999).to_bytes(4, "big"), 1.0)


def test_no_false_positives():
    f = ReplayFilter(window_s=60, capacity=10_000)
    for i in range(5000):
        assert f.check_and_add(i.to_bytes(8, "big"), float(i) / 100)


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        ReplayFilter(window_s=0)


def test_sliding_window():
    w = SlidingWindow(size=64)
    assert w.check_and_add(0)
    assert not w.check_and_add(0)
    assert w.check_and_add(5)
    assert w.check_and_add(3)  # late but inside the window
    assert not w.check_and_add(3)
    assert w.check_and_add(100)
    assert not w.check_and_add(30)  # fell out of the window
    assert w.check_and_add(99)
    assert w.check_and_add(1000)
    assert not w.check_and_add(100)
