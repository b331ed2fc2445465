from __future__ import annotations

import json

from x0node.web import throttle
from x0node.web.throttle import LoginThrottle


def test_client_lockout_escalates_and_expires():
    t = LoginThrottle()
    now = 1000.0
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.failure("a", now + i)
        assert t.retry_after("a", now + i) == 0
    t.failure("a", now + 10)
    assert t.retry_after("a", now + 10) == throttle.LOCKOUT_BASE_S
    assert t.retry_after("b", now + 10) == 0  # other clients unaffected
    later = now + 10 + throttle.LOCKOUT_BASE_S
    assert t.retry_after("a", later) == 0
    for i in range(throttle.FAILS_PER_CLIENT):
        t.failure("a", later + i)
    assert t.retry_after("a", later + throttle.FAILS_PER_CLIENT - 1) == 2 * throttle.LOCKOUT_BASE_S


def test_failures_outside_window_are_forgotten_and_success_clears():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.failure("a", float(i))
    t.failure("a", throttle.WINDOW_S + 10)
    assert t.retry_after("a", throttle.WINDOW_S + 10) == 0
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.failure("c", 5.0 + i)
    t.success("c")
    t.failure("c", 20.0)
    assert t.retry_after("c", 20.0) == 0


def test_global_lockout_against_many_clients():
    t = LoginThrottle()
    for i in range(throttle.FAILS_GLOBAL):
        t.failure(f"10.0.0.{i}", 100.0)
    assert t.retry_after("192.0.2.1", 100.0) == throttle.LOCKOUT_BASE_S


def test_roundtrip_and_malformed_state():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT):
        t.failure("a", 50.0 + i)
    t2 = LoginThrottle.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2.retry_after("a", 60.0) == t.retry_after("a", 60.0) > 0
    for junk in (None, [], "x", {"clients": {"a": "x"}}, {"clients": {"a": {"fails": ["x", True], "locked_until": "y"}}},
                 {"global_fails": 3, "global_locked_until": [1]}):
        assert LoginThrottle.from_dict(junk).retry_after("a", 0.0) == 0


def test_client_table_is_bounded():
    t = LoginThrottle()
    for i in range(throttle.CLIENTS_MAX + 50):
        t.failure(f"c{i}", float(i) * 1000)
    assert len(t.to_dict()["clients"]) == throttle.CLIENTS_MAX
