"""Login throttling: attempts counted per source before the password is checked, escalating lockouts per
source, and a global slow-down that spaces checks instead of locking everyone out.

Pure logic (no clock, no files): callers pass `now` as *wall-clock* unix seconds, because a lockout must
survive a restart and a reboot resets the monotonic clock. `to_dict`/`from_dict` give the persisted form.

Rules:
- A source is an IPv4 address, or the /64 of an IPv6 address (`x0node.io.peer.source_key`). A browser that signed
  in before and shows its device cookie is its own source (the caller passes its key instead).
- `begin(source, now)` is called after the request body arrived and *before* the password is checked.
  It either refuses (`retry_after_s > 0`) or counts the attempt as a failure at once and says when the
  check may run (`check_at`). There is no await between the decision and the count, so concurrent or
  slow requests cannot all slip through before the first failure is recorded. `success(source,
  decision)` takes back that attempt's count when the password was right.
- Per source: `FAILS_PER_CLIENT` attempts within `WINDOW_S` lock the source out; each further lockout
  of that source doubles, from `LOCKOUT_BASE_S` up to `LOCKOUT_MAX_S`. A success clears the source's
  failures, not its escalation level.
- Globally: once `FAILS_GLOBAL` failures happened within `WINDOW_S` (from any sources), checks from all
  sources together are spaced `GLOBAL_SLOW_INTERVAL_S` apart, first come first served, each source with
  at most one check queued, nobody queued longer than `GLOBAL_WAIT_MAX_S` (beyond that: retry later).
  Nobody is locked out by the global rule, so a guesser on other addresses cannot lock the admin out;
  it only makes everyone wait their turn.
- Bound: an anonymous guesser gets at most `FAILS_PER_CLIENT` tries per source per lockout, and all
  sources together at most `FAILS_GLOBAL + WINDOW_S / GLOBAL_SLOW_INTERVAL_S` per window (200 per
  15 minutes with the values below, ~19 200 a day).
- State is bounded: at most `CLIENTS_MAX` sources are tracked (the stalest are forgotten first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 900.0
FAILS_PER_CLIENT = 5
FAILS_GLOBAL = 20
LOCKOUT_BASE_S = 60.0
LOCKOUT_MAX_S = 3600.0
GLOBAL_SLOW_INTERVAL_S = 5.0
GLOBAL_WAIT_MAX_S = 30.0
CLIENTS_MAX = 256
FAILS_KEPT = max(FAILS_GLOBAL, FAILS_PER_CLIENT)


@dataclass(frozen=True)
class Decision:
    """`retry_after_s > 0`: refused, come back then. Otherwise check the password at `check_at`
    (now, or a later slot during the global slow-down); `counted_at` identifies the counted failure."""

    retry_after_s: float
    check_at: float = 0.0
    counted_at: float = 0.0


@dataclass
class _Client:
    fails: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    level: int = 0  # lockouts so far; doubles the next one
    locked_by: float = -1.0  # counted_at of the attempt that started the current lockout
    queued_until: float = 0.0  # a check of this source is waiting for its slot until then


class LoginThrottle:
    def __init__(self) -> None:
        self._clients: dict[str, _Client] = {}
        self._global_fails: list[float] = []
        self._next_slot = 0.0

    def retry_after(self, client: str, now: float) -> float:
        """Seconds the source must wait before its next attempt is taken (0 = may try now)."""
        c = self._clients.get(client)
        return max(0.0, c.locked_until - now) if c is not None else 0.0

    def begin(self, client: str, now: float) -> Decision:
        """Refuse, or count the attempt (as a failure until `success`) and give its check time."""
        c = self._clients.get(client)
        if c is not None:
            wait = max(c.locked_until, c.queued_until) - now
            if wait > 0:
                return Decision(wait)
        self._global_fails = [t for t in self._global_fails if now - t < WINDOW_S][-FAILS_KEPT:]
        check_at = now
        if len(self._global_fails) >= FAILS_GLOBAL:
            slot = max(now, self._next_slot)
            if slot - now > GLOBAL_WAIT_MAX_S:
                return Decision(slot - now - GLOBAL_WAIT_MAX_S + GLOBAL_SLOW_INTERVAL_S)
            self._next_slot = slot + GLOBAL_SLOW_INTERVAL_S
            check_at = slot
        c = self._client(client)
        c.queued_until = check_at if check_at > now else 0.0
        c.fails = [t for t in c.fails if now - t < WINDOW_S][-FAILS_KEPT:] + [now]
        if len(c.fails) >= FAILS_PER_CLIENT:
            c.locked_until = now + min(LOCKOUT_MAX_S, LOCKOUT_BASE_S * (2 ** min(c.level, 16)))
            c.level += 1
            c.locked_by = now
            c.fails = []
        self._global_fails.append(now)
        return Decision(0.0, check_at, now)

    def success(self, client: str, decision: Decision) -> None:
        """The attempt of `decision` had the right password: clear the source's failures (and its
        lockout, which that very attempt may have triggered) and take back its global count."""
        c = self._clients.get(client)
        if c is not None:
            c.fails = []
            c.queued_until = 0.0
            if c.locked_by == decision.counted_at:
                c.locked_until = 0.0
                c.level = max(0, c.level - 1)
        if decision.counted_at in self._global_fails:
            self._global_fails.remove(decision.counted_at)

    def checked(self, client: str) -> None:
        """The queued check of the source ran (whatever its result)."""
        c = self._clients.get(client)
        if c is not None:
            c.queued_until = 0.0

    def _client(self, client: str) -> _Client:
        c = self._clients.get(client)
        if c is None:
            if len(self._clients) >= CLIENTS_MAX:
                def last_seen(k: str) -> float:
                    v = self._clients[k]
                    return max(v.fails or [v.locked_until])

                del self._clients[min(self._clients, key=last_seen)]
            c = self._clients[client] = _Client()
        return c

    def to_dict(self) -> dict[str, Any]:
        return {"clients": {k: {"fails": v.fails, "locked_until": v.locked_until, "level": v.level}
                            for k, v in self._clients.items()},
                "global_fails": self._global_fails}

    @classmethod
    def from_dict(cls, data: Any) -> LoginThrottle:
        """Rebuild from `to_dict` output; anything malformed is ignored field by field (never raises)."""
        t = cls()
        if not isinstance(data, dict):
            return t

        def times(v: Any) -> list[float]:
            if not isinstance(v, list):
                return []
            return [float(x) for x in v[-FAILS_KEPT:] if isinstance(x, int | float) and not isinstance(x, bool)]

        def num(v: Any) -> float:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0

        clients = data.get("clients")
        if isinstance(clients, dict):
            for k, v in list(clients.items())[:CLIENTS_MAX]:
                if isinstance(k, str) and isinstance(v, dict):
                    t._clients[k] = _Client(times(v.get("fails")), num(v.get("locked_until")),
                                            int(num(v.get("level"))))
        t._global_fails = times(data.get("global_fails"))
        return t
