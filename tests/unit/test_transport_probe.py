"""The probe table: per-source and total caps evict the oldest unauthenticated connection of the right
source, idle deadlines follow the last byte, authenticated connections leave (pure, stepped time)."""

from __future__ import annotations

import pytest

from x0node.transport.probe import ProbeTable, source_of


def test_per_source_cap_evicts_that_sources_oldest():
    t = ProbeTable(idle_s=60, per_source_max=3, total_max=10)
    for i in range(3):
        assert t.admit(("a", i), "10.0.0.1", float(i)) == []
    assert t.admit(("b", 0), "10.0.0.2", 3.0) == []
    assert t.admit(("a", 3), "10.0.0.1", 4.0) == [(("a", 0), "probe_cap_source")]
    assert ("a", 0) not in t and len(t) == 4


def test_total_cap_evicts_from_the_source_holding_most():
    t = ProbeTable(idle_s=60, per_source_max=4, total_max=6)
    for i in range(4):
        t.admit(("big", i), "10.0.0.1", float(i))
    t.admit(("small", 0), "10.0.0.2", 5.0)
    t.admit(("small", 1), "10.0.0.2", 6.0)
    assert t.admit(("new", 0), "10.0.0.3", 7.0) == [(("big", 0), "probe_cap_total")]
    assert len(t) == 6


def test_idle_deadline_follows_the_last_byte_and_authenticated_ones_leave():
    t = ProbeTable(idle_s=10, per_source_max=4, total_max=8)
    t.admit("a", "s", 0.0)
    t.admit("b", "s", 1.0)
    t.admit("c", "s", 2.0)
    assert t.next_deadline() == 10.0
    t.seen("a", 5.0)
    t.forget("c")  # authenticated
    assert t.next_deadline() == 11.0
    assert t.expired(10.9) == []
    assert t.expired(11.0) == ["b"]
    assert t.expired(15.0) == ["a"] and len(t) == 0 and t.next_deadline() is None
    t.forget("gone")  # unknown connections are ignored


def test_sources_and_parameters():
    assert source_of(("2001:db8::1", 443, 0, 0)) == "2001:db8::/64"
    assert source_of(("192.0.2.9", 443)) == "192.0.2.9"
    assert source_of(None) == source_of("/run/sock") == "unknown"
    with pytest.raises(ValueError):
        ProbeTable(idle_s=1, per_source_max=5, total_max=4)
