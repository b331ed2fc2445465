from __future__ import annotations

from x0node.web.sessions import SESSIONS_MAX, SessionStore


def test_idle_and_absolute_expiry():
    s = SessionStore(idle_s=10, absolute_s=25)
    a = s.create(0.0)
    assert s.get(a.token, 9.0) is a
    assert s.get(a.token, 18.0) is a
    assert s.get(a.token, 26.0) is None  # absolute limit though recently used
    b = s.create(30.0)
    assert s.get(b.token, 41.0) is None  # idle
    assert s.get(None, 0.0) is None and s.get("x" * 500, 0.0) is None


def test_tokens_distinct_and_store_bounded():
    s = SessionStore(idle_s=100, absolute_s=1000)
    first = s.create(0.0)
    tokens = {first.token} | {s.create(float(i + 1)).token for i in range(SESSIONS_MAX)}
    assert len(tokens) == SESSIONS_MAX + 1 and len(s) == SESSIONS_MAX
    assert s.get(first.token, 50.0) is None  # least recently used evicted
    assert first.csrf != first.token


def test_drop_all_except():
    s = SessionStore(idle_s=100, absolute_s=1000)
    a, b = s.create(0.0), s.create(0.0)
    s.drop_all_except(a.token)
    assert s.get(a.token, 1.0) is a and s.get(b.token, 1.0) is None
