from __future__ import annotations

import json

from x0node.web import throttle
from x0node.web.throttle import LoginThrottle


def test_client_lockout_escalates_and_expires():
    t = LoginThrottle()
    now = 1000.0
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        assert t.begin("a", now + i).retry_after_s == 0
        assert t.retry_after("a", now + i) == 0
    t.begin("a", now + 10)
    assert t.retry_after("a", now + 10) == throttle.LOCKOUT_BASE_S
    assert t.begin("a", now + 10).retry_after_s == throttle.LOCKOUT_BASE_S
    assert t.retry_after("b", now + 10) == 0  # other clients unaffected
    later = now + 10 + throttle.LOCKOUT_BASE_S
    assert t.retry_after("a", later) == 0
    for i in range(throttle.FAILS_PER_CLIENT):
        t.begin("a", later + i)
    assert t.retry_after("a", later + throttle.FAILS_PER_CLIENT - 1) == 2 * throttle.LOCKOUT_BASE_S


def test_failures_outside_window_are_forgotten_and_success_clears():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.begin("a", float(i))
    t.begin("a", throttle.WINDOW_S + 10)
    assert t.retry_after("a", throttle.WINDOW_S + 10) == 0
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.begin("c", 5.0 + i)
    t.success("c", t.begin("c", 19.0))
    t.begin("c", 20.0)
    assert t.retry_after("c", 20.0) == 0


def test_right_password_on_the_last_allowed_attempt_is_not_locked_out():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT - 1):
        t.begin("a", float(i))
    d = t.begin("a", 10.0)
    assert t.retry_after("a", 10.0) > 0  # counted as a failure until the check says otherwise
    t.success("a", d)
    assert t.retry_after("a", 10.0) == 0


def test_many_clients_slow_everyone_down_but_lock_nobody_out():
    t = LoginThrottle()
    for i in range(throttle.FAILS_GLOBAL):
        t.begin(f"10.0.0.{i}", 100.0)
    d = t.begin("192.0.2.1", 100.0)
    assert d.retry_after_s == 0 and d.check_at == 100.0
    d = t.begin("192.0.2.2", 100.0)
    assert d.retry_after_s == 0 and d.check_at == 100.0 + throttle.GLOBAL_SLOW_INTERVAL_S


def test_roundtrip_and_malformed_state():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT):
        t.begin("a", 50.0 + i)
    t2 = LoginThrottle.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2.retry_after("a", 60.0) == t.retry_after("a", 60.0) > 0
    for junk in (None, [], "x", {"clients": {"a": "x"}}, {"clients": {"a": {"fails": ["x", True], "locked_until": "y"}}},
                 {"global_fails": 3, "global_locked_until": [1]}):
        assert LoginThrottle.from_dict(junk).retry_after("a", 0.0) == 0


def test_client_table_is_bounded():
    t = LoginThrottle()
    for i in range(throttle.CLIENTS_MAX + 50):
        t.begin(f"c{i}", float(i) * 1000)
    assert len(t.to_dict()["clients"]) == throttle.CLIENTS_MAX
