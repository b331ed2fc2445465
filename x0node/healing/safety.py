"""Safety gates every action passes before it is requested: backoff, rate limits, budget, guard
windows, the observe/active mode and leases. Each gate answers None (pass) or the reason it refuses.

Rules and invariants:
- Backoff per (target, action), as the Kubernetes controllers and the kubelet do: after the n-th
  consecutive failure the pair waits BACKOFF_BASE_S * 2**(n-1), capped at BACKOFF_MAX_S, +-10 % jitter
  from the seeded rng; every attempt also waits the plugin's cooldown. The failure count resets once
  the pair has gone BACKOFF_RESET_AFTER_S without a failure (the target stayed healthy).
- A global token bucket (ACTIONS_BURST, refilled at ACTIONS_PER_MIN) bounds all requests, and a
  budget bounds disruptive ones to `disruptive_per_hour` in any sliding hour (persisted history is
  fed back in at start, so a daemon restart does not refill it).
- Guard windows, as gluon-quickfix does: nothing is done in the first `after_boot_s` after boot, the
  first `after_start_s` after the daemon started (routing is still converging) and while an update is
  in progress.
- Mode: OBSERVE plans and records every decision but requests nothing; ACTIVE acts. The operator
  pins a mode; without a pin, OBSERVE is promoted to ACTIVE when `auto_activate` is on and the last
  decisions were right (a planned action "was needed" when its symptom outlasted the action's verify
  deadline; "was not" when it cleared by itself before it): at least `min_decisions` outcomes over at
  least `min_observe_s`, precision >= `min_precision`. An automatically activated mode goes back to
  OBSERVE when fewer than half of the last DEMOTE_WINDOW actions verified.
- Leases: a disruptive action that takes links down (`needs_lease`) runs only while this node holds
  the lease on `disrupt/<its node id>`. THE RULE a lease provider enforces: a lease on
  `disrupt/<X>` is granted only when no node within one hop of X holds an unexpired `disrupt/` lease,
  so two neighbours never reset or reboot together; leases expire after their TTL (the action's
  verify deadline plus LEASE_MARGIN_S) and are released when verification ends. `LocalLeases` is the
  single-node provider used until the mesh-wide one (Raft, coord/) exists: it grants `disrupt/<self>`
  to this node whenever it holds no other unexpired lease (so one disruptive action at a time) and
  refuses everything else; it cannot see neighbours' leases.
- Sans-I/O: `now` and a seeded rng come in.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import random

BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_AFTER_S = 600.0  # kubelet: 10 min healthy resets the crash-loop backoff
BACKOFF_JITTER = 0.1
ACTIONS_PER_MIN = 30.0
ACTIONS_BURST = 10.0
BUDGET_WINDOW_S = 3600.0
LEASE_MARGIN_S = 10.0
DEMOTE_WINDOW = 10
MAX_BACKOFF_KEYS = 4096


@dataclass
class _Pair:
    failures: int = 0
    last_attempt_s: float | None = None
    last_failure_s: float | None = None
    wait_until_s: float = float("-inf")


class Backoff:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._pairs: collections.OrderedDict[tuple[str, str], _Pair] = collections.OrderedDict()

    def _pair(self, key: tuple[str, str]) -> _Pair:
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair()
            while len(self._pairs) > MAX_BACKOFF_KEYS:
                self._pairs.popitem(last=False)
        return pair

    def _maybe_reset(self, pair: _Pair, now: float) -> None:
        if pair.failures and pair.last_failure_s is not None and now - pair.last_failure_s >= BACKOFF_RESET_AFTER_S:
            pair.failures = 0

    def check(self, key: tuple[str, str], cooldown_s: float, now: float) -> str | None:
        pair = self._pairs.get(key)
        if pair is None:
            return None
        self._maybe_reset(pair, now)
        if pair.last_attempt_s is not None and now < pair.last_attempt_s + cooldown_s:
            return f"cooldown: {pair.last_attempt_s + cooldown_s - now:.1f} s left"
        if now < pair.wait_until_s:
            return f"backoff after {pair.failures} failure(s): {pair.wait_until_s - now:.1f} s left"
        return None

    def attempted(self, key: tuple[str, str], now: float) -> None:
        self._pair(key).last_attempt_s = now

    def failed(self, key: tuple[str, str], now: float) -> float:
        """Record a failure; returns the delay before the next attempt."""
        pair = self._pair(key)
        self._maybe_reset(pair, now)
        pair.failures += 1
        pair.last_failure_s = now
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (pair.failures - 1))
        delay *= 1.0 + self._rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER)
        pair.wait_until_s = now + delay
        return delay

    def failures(self, key: tuple[str, str], now: float) -> int:
        pair = self._pairs.get(key)
        if pair is None:
            return 0
        self._maybe_reset(pair, now)
        return pair.failures

    def failures_on(self, target: str, now: float) -> int:
        return sum(self.failures(k, now) for k in list(self._pairs) if k[0] == target)


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._tokens, self._at = burst, now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now

    def check(self, now: float) -> str | None:
        self._refill(now)
        return None if self._tokens >= 1.0 else "rate limit: too many actions in the last minute"

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)


class DisruptionBudget:
    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._times: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - BUDGET_WINDOW_S:
            self._times.popleft()

    def check(self, now: float) -> str | None:
        self._trim(now)
        if len(self._times) >= self.per_hour:
            return f"budget: {len(self._times)} disruptive action(s) in the last hour (limit {self.per_hour})"
        return None

    def spend(self, now: float) -> None:
        self._trim(now)
        self._times.append(now)
        while len(self._times) > max(1, self.per_hour) * 4:
            self._times.popleft()

    def used(self, now: float) -> int:
        self._trim(now)
        return len(self._times)


@dataclass(frozen=True)
class GuardConfig:
    after_boot_s: float = 600.0  # gluon-quickfix: nothing in the first 10 minutes after boot
    after_start_s: float = 60.0  # the daemon's routing converges first


def guard_reason(cfg: GuardConfig, now: float, boot_s: float | None, start_s: float, updating: bool) -> str | None:
    if updating:
        return "guard: an update is in progress"
    if boot_s is not None and now - boot_s < cfg.after_boot_s:
        return f"guard: {now - boot_s:.0f} s after boot (< {cfg.after_boot_s:.0f} s)"
    if now - start_s < cfg.after_start_s:
        return f"guard: {now - start_s:.0f} s after start (< {cfg.after_start_s:.0f} s)"
    return None


class Mode(enum.StrEnum):
    OBSERVE = "observe"
    ACTIVE = "active"


@dataclass(frozen=True)
class ModeConfig:
    auto_activate: bool = True
    min_decisions: int = 50
    min_observe_s: float = 7 * 86400.0
    min_precision: float = 0.95
    window: int = 100


@dataclass(frozen=True)
class ModeChanged:
    old: str
    new: str
    reason: str
    at_s: float


@dataclass
class ModeSwitch:
    config: ModeConfig
    started_s: float
    pinned: Mode | None = None  # the operator's choice
    auto: Mode = Mode.OBSERVE
    outcomes: collections.deque[bool] = field(default_factory=collections.deque)  # observe decisions: needed?
    verified: collections.deque[bool] = field(default_factory=collections.deque)  # active actions: verified?

    @property
    def mode(self) -> Mode:
        return self.pinned if self.pinned is not None else self.auto

    def precision(self) -> float | None:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else None

    def pin(self, mode: Mode | None, now: float, reason: str) -> ModeChanged | None:
        old = self.mode
        self.pinned = mode
        return ModeChanged(old.value, self.mode.value, reason, now) if self.mode is not old else None

    def observe_outcome(self, needed: bool, now: float) -> ModeChanged | None:
        self.outcomes.append(bool(needed))
        while len(self.outcomes) > self.config.window:
            self.outcomes.popleft()
        return self._advance(now)

    def action_outcome(self, verified: bool, now: float) -> ModeChanged | None:
        self.verified.append(bool(verified))
        while len(self.verified) > DEMOTE_WINDOW:
            self.verified.popleft()
        return self._advance(now)

    def _advance(self, now: float) -> ModeChanged | None:
        c, old = self.config, self.mode
        p = self.precision()
        if self.auto is Mode.OBSERVE and c.auto_activate and len(self.outcomes) >= c.min_decisions \
                and now - self.started_s >= c.min_observe_s and p is not None and p >= c.min_precision:
            self.auto = Mode.ACTIVE
            self.verified.clear()
            reason = f"observe-mode precision {p:.2f} over {len(self.outcomes)} decisions"
        elif self.auto is Mode.ACTIVE and len(self.verified) >= DEMOTE_WINDOW \
                and sum(self.verified) < DEMOTE_WINDOW / 2:
            self.auto = Mode.OBSERVE
            self.outcomes.clear()
            reason = f"only {sum(self.verified)} of the last {DEMOTE_WINDOW} actions verified"
        else:
            return None
        return ModeChanged(old.value, self.mode.value, reason, now) if self.mode is not old else None


# --- leases ------------------------------------------------------------------------------------------

def disrupt_resource(node_id: str) -> str:
    return f"disrupt/{node_id}"


@dataclass(frozen=True)
class LeaseRequest:
    lease_id: int
    resource: str
    holder: str
    ttl_s: float
    reason: str


@dataclass(frozen=True)
class LeaseRelease:
    lease_id: int
    resource: str
    holder: str


@dataclass(frozen=True)
class LeaseAnswer:
    lease_id: int
    granted: bool
    detail: str = ""


class LeaseProvider(Protocol):
    """Grants `disrupt/<node>` leases under THE RULE above. The mesh-wide provider answers later (Raft
    round trip); the engine waits for `lease_answer` either way."""

    def request(self, req: LeaseRequest, now: float) -> LeaseAnswer | None: ...

    def release(self, rel: LeaseRelease, now: float) -> None: ...


class LocalLeases:
    """Single-node provider: grants `disrupt/<self>` to this node when it holds no other unexpired lease."""

    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self._held: dict[int, tuple[str, float]] = {}  # lease id -> (resource, expires)

    def request(self, req: LeaseRequest, now: float) -> LeaseAnswer:
        for lid in [k for k, (_, exp) in self._held.items() if exp <= now]:
            del self._held[lid]
        if req.holder != self.self_id or req.resource != disrupt_resource(self.self_id):
            return LeaseAnswer(req.lease_id, False, "local leases cover only this node's own disruptions")
        if self._held:
            return LeaseAnswer(req.lease_id, False, "another disruptive action of ours holds the lease")
        self._held[req.lease_id] = (req.resource, now + req.ttl_s)
        return LeaseAnswer(req.lease_id, True, "granted locally (no mesh-wide lease service yet)")

    def release(self, rel: LeaseRelease, now: float) -> None:
        self._held.pop(rel.lease_id, None)
