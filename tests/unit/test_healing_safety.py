from __future__ import annotations

import random

from x0node.healing import safety
from x0node.healing.safety import (
    Backoff,
    DisruptionBudget,
    GuardConfig,
    LeaseRelease,
    LeaseRequest,
    LocalLeases,
    Mode,
    ModeConfig,
    ModeSwitch,
    TokenBucket,
    guard_reason,
)

ME, OTHER = "aa" * 4, "bb" * 4


def test_backoff_delays_double_up_to_the_cap_and_reset_after_a_healthy_stretch():
    b = Backoff(random.Random(1))
    key = ("link:x", "penalise_link")
    delays = [b.failed(key, float(i)) for i in range(8)]
    for i, d in enumerate(delays):
        nominal = min(safety.BACKOFF_MAX_S, safety.BACKOFF_BASE_S * 2**i)
        assert nominal * (1 - safety.BACKOFF_JITTER) <= d <= nominal * (1 + safety.BACKOFF_JITTER)
    assert b.check(key, 0.0, 10.0).startswith("backoff after 8")
    assert b.failures_on("link:x", 10.0) == 8 and b.failures_on("link:y", 10.0) == 0
    later = 7.0 + safety.BACKOFF_RESET_AFTER_S
    assert b.check(key, 0.0, later) is None and b.failures(key, later) == 0
    assert safety.BACKOFF_BASE_S * 0.9 <= b.failed(key, later) <= safety.BACKOFF_BASE_S * 1.1


def test_cooldown_applies_to_every_attempt():
    b = Backoff(random.Random(2))
    key = ("service:telemetry", "restart_subsystem")
    assert b.check(key, 60.0, 0.0) is None
    b.attempted(key, 0.0)
    assert b.check(key, 60.0, 30.0).startswith("cooldown") and b.check(key, 60.0, 60.0) is None


def test_token_bucket_and_budget():
    tb = TokenBucket(1.0, 2.0, 0.0)
    tb.take(0.0)
    tb.take(0.0)
    assert tb.check(0.0) is not None and tb.check(1.0) is None
    budget = DisruptionBudget(2)
    budget.spend(0.0)
    budget.spend(100.0)
    assert budget.check(200.0).startswith("budget: 2") and budget.used(200.0) == 2
    assert budget.check(safety.BUDGET_WINDOW_S + 1.0) is None  # the first one left the hour
    assert DisruptionBudget(0).check(0.0) is not None  # a zero budget forbids every disruption


def test_guard_windows():
    cfg = GuardConfig(after_boot_s=600.0, after_start_s=60.0)
    assert guard_reason(cfg, 100.0, 0.0, 0.0, False).startswith("guard: 100 s after boot")
    assert guard_reason(cfg, 700.0, 0.0, 680.0, False).startswith("guard: 20 s after start")
    assert guard_reason(cfg, 700.0, 0.0, 0.0, True) == "guard: an update is in progress"
    assert guard_reason(cfg, 700.0, 0.0, 0.0, False) is None
    assert guard_reason(cfg, 100.0, None, 0.0, False) is None  # boot time unknown: only the start guard


def test_mode_switch_promotes_on_precision_and_demotes_on_failed_actions():
    ms = ModeSwitch(ModeConfig(min_decisions=4, min_observe_s=100.0, min_precision=0.75), started_s=0.0)
    assert ms.mode is Mode.OBSERVE
    for ok in (True, True, True):
        assert ms.observe_outcome(ok, 10.0) is None
    assert ms.observe_outcome(False, 50.0) is None  # 4 outcomes, precision 0.75, but observed only 50 s
    ev = ms.observe_outcome(True, 150.0)
    assert ev is not None and ev.new == "active" and ms.mode is Mode.ACTIVE
    for i in range(safety.DEMOTE_WINDOW - 1):
        assert ms.action_outcome(i % 3 == 0, 200.0 + i) is None
    ev = ms.action_outcome(False, 300.0)
    assert ev is not None and ev.new == "observe" and "verified" in ev.reason
    ms.pin(Mode.ACTIVE, 301.0, "operator")
    assert ms.mode is Mode.ACTIVE and ms.pin(Mode.ACTIVE, 302.0, "again") is None
    assert ms.pin(None, 303.0, "unpin").new == "observe"
    off = ModeSwitch(ModeConfig(auto_activate=False, min_decisions=1, min_observe_s=0.0), started_s=0.0)
    off.observe_outcome(True, 1.0)
    assert off.mode is Mode.OBSERVE


def test_local_leases_serialise_our_own_disruptions_and_refuse_others():
    lp = LocalLeases(ME)
    res = safety.disrupt_resource(ME)
    assert lp.request(LeaseRequest(1, res, ME, 30.0, "x"), 0.0).granted
    assert not lp.request(LeaseRequest(2, res, ME, 30.0, "y"), 1.0).granted
    refused = lp.request(LeaseRequest(3, safety.disrupt_resource(OTHER), OTHER, 30.0, "z"), 1.0)
    assert not refused.granted and "only this node" in refused.detail
    assert lp.request(LeaseRequest(4, res, ME, 30.0, "w"), 31.0).granted  # the first expired
    lp.release(LeaseRelease(4, res, ME), 32.0)
    assert lp.request(LeaseRequest(5, res, ME, 30.0, "v"), 32.0).granted
