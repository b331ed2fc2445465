"""Login throttling: failed attempts per client and overall, with escalating lockouts.

Pure logic (no clock, no files): callers pass `now` as *wall-clock* unix seconds, because a lockout must
survive a restart and a reboot resets the monotonic clock. `to_dict`/`from_dict` give the persisted form.

Rules:
- A client address that fails `FAILS_PER_CLIENT` times within `WINDOW_S` is locked out; each further
  lockout of that client doubles in length, from `LOCKOUT_BASE_S` up to `LOCKOUT_MAX_S`.
- `FAILS_GLOBAL` failures across all clients within `WINDOW_S` lock out everyone for `LOCKOUT_BASE_S`
  (a distributed guesser gets no more than that many tries per window).
- A success clears the client's failures, not its escalation level or the global counter.
- While locked out, attempts are refused before the password is even checked.
- State is bounded: at most `CLIENTS_MAX` clients are tracked (the stalest are forgotten first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 900.0
FAILS_PER_CLIENT = 5
FAILS_GLOBAL = 20
LOCKOUT_BASE_S = 60.0
LOCKOUT_MAX_S = 3600.0
CLIENTS_MAX = 256
FAILS_KEPT = FAILS_GLOBAL


@dataclass
class _Client:
    fails: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    level: int = 0  # lockouts so far; doubles the next one


class LoginThrottle:
    def __init__(self) -> None:
        self._clients: dict[str, _Client] = {}
        self._global_fails: list[float] = []
        self._global_locked_until = 0.0

    def retry_after(self, client: str, now: float) -> float:
        """Seconds the client must wait before trying again (0 = may try now)."""
        wait = max(0.0, self._global_locked_until - now)
        c = self._clients.get(client)
        if c is not None:
            wait = max(wait, c.locked_until - now)
        return wait

    def failure(self, client: str, now: float) -> None:
        c = self._clients.get(client)
        if c is None:
            if len(self._clients) >= CLIENTS_MAX:
                stalest = min(self._clients, key=lambda k: max(self._clients[k].fails or [self._clients[k].locked_until]))
                del self._clients[stalest]
            c = self._clients[client] = _Client()
        c.fails = [t for t in c.fails if now - t < WINDOW_S][-FAILS_KEPT:] + [now]
        if len(c.fails) >= FAILS_PER_CLIENT:
            c.locked_until = now + min(LOCKOUT_MAX_S, LOCKOUT_BASE_S * (2 ** min(c.level, 16)))
            c.level += 1
            c.fails = []
        self._global_fails = [t for t in self._global_fails if now - t < WINDOW_S][-FAILS_KEPT:] + [now]
        if len(self._global_fails) >= FAILS_GLOBAL:
            self._global_locked_until = now + LOCKOUT_BASE_S
            self._global_fails = []

    def success(self, client: str) -> None:
        c = self._clients.get(client)
        if c is not None:
            c.fails = []

    def to_dict(self) -> dict[str, Any]:
        return {"clients": {k: {"fails": v.fails, "locked_until": v.locked_until, "level": v.level}
                            for k, v in self._clients.items()},
                "global_fails": self._global_fails, "global_locked_until": self._global_locked_until}

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
        t._global_locked_until = num(data.get("global_locked_until"))
        return t
