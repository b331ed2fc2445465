"""Browser sessions: random bearer tokens in a cookie, each with its own CSRF token.

Rules:
- Tokens are 32 random bytes (urlsafe), kept only in memory: a restart logs everyone out.
- A session expires `idle_s` after its last use and at most `absolute_s` after login.
- At most `SESSIONS_MAX` live sessions; creating one more evicts the least recently used.
- The CSRF token of a session is separate from the session token and is sent back by the page in the
  `X-CSRF-Token` header on every state change (the cookie alone never authorises a change).
- Sessions belong to one stored password: `follow(stamp)` ends them all when the password's stamp
  (credentials.Credentials.stamp) differs from the one they were made under, so a password reset on
  the console reaches the running service at its next request.
- Pure: callers pass `now` (monotonic seconds) and the stamp.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

SESSIONS_MAX = 32
TOKEN_BYTES = 32


@dataclass
class Session:
    token: str
    csrf: str
    created: float
    last_used: float


class SessionStore:
    def __init__(self, idle_s: float, absolute_s: float) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._sessions: dict[str, Session] = {}
        self.stamp: object = None

    def follow(self, stamp: object, keep: str | None = None) -> bool:
        """Adopt the password stamp; if it changed, end every session but `keep`. True if any ended."""
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        before = len(self._sessions)
        self.drop_all_except(keep)
        return len(self._sessions) < before

    def create(self, now: float) -> Session:
        self._expire(now)
        if len(self._sessions) >= SESSIONS_MAX:
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            del self._sessions[oldest.token]
        s = Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES), now, now)
        self._sessions[s.token] = s
        return s

    def get(self, token: str | None, now: float) -> Session | None:
        if not token or len(token) > 128:
            return None
        s = self._sessions.get(token)
        if s is None:
            return None
        if now - s.last_used > self.idle_s or now - s.created > self.absolute_s:
            del self._sessions[token]
            return None
        s.last_used = now
        return s

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)

    def drop_all_except(self, token: str | None) -> None:
        self._sessions = {k: v for k, v in self._sessions.items() if k == token}

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        self._sessions = {k: s for k, s in self._sessions.items()
                          if now - s.last_used <= self.idle_s and now - s.created <= self.absolute_s}
