"""The one reaction to connections that have not authenticated (probes), shared by every server here.

A censor probes a suspected server with random bytes, short writes, replays of recorded connections,
replays with a byte changed and valid-looking requests for the wrong target, and compares how the
server reacts (bytes sent, RST or FIN, and after how long). Rules:

- Every connection is *unauthenticated* from accept until its header authenticated and was accepted
  (the proxy's session header, the tunnel's header for its own target); a FakeTLS fallback relay to
  the real site stays unauthenticated for its whole life.
- Reaction, whatever the bytes: send nothing, keep reading and discarding, close (FIN) when the
  client closes or `idle_s` (`PROBE_IDLE_TIMEOUT_S`) after the last byte received. The proxy server
  (`relay.py`) and the tunnel server (`tunnel.py`) both use `ProbeGuard`, so they cannot drift apart.
- Caps: at most `UNAUTH_PER_SOURCE_MAX` unauthenticated connections per source (x0node/io/peer.py: an IPv4
  address, or the /64 of an IPv6 address) and `UNAUTH_TOTAL_MAX` per server. A connection that would exceed a cap
  is admitted and the *oldest* unauthenticated connection of the same source (per-source cap), or of
  the source holding the most (total cap), is closed the same quiet way: a real client finishes its
  handshake within a round trip, a prober holds its connections open, so the oldest is the likeliest
  prober and a flood never shuts out a new genuine client. Descriptors stay bounded: a fallback relay
  holds two, so unauthenticated traffic holds at most 2 * UNAUTH_TOTAL_MAX.
- `ProbeTable` is the bookkeeping, pure (takes `now`, no clock, no sockets); `ProbeGuard` is its
  asyncio adapter with one loop timer per server for all idle deadlines. Closes are counted by reason
  (`probe_idle`, `probe_cap_source`, `probe_cap_total`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Hashable
from typing import Protocol

from x0node.io.peer import source_key

PROBE_IDLE_TIMEOUT_S = 60.0
UNAUTH_PER_SOURCE_MAX = 16
UNAUTH_TOTAL_MAX = 256


def source_of(peername: object) -> str:
    """The capped unit for a peer (`transport.get_extra_info("peername")`), see x0node/io/peer.py."""
    return source_key(str(peername[0]) if isinstance(peername, tuple) and peername else None)


class ProbeTable:
    """Unauthenticated connections by source, oldest first, with their idle deadlines."""

    def __init__(self, idle_s: float, per_source_max: int, total_max: int) -> None:
        if idle_s <= 0 or per_source_max < 1 or total_max < per_source_max:
            raise ValueError("need idle_s > 0 and 1 <= per_source_max <= total_max")
        self.idle_s = idle_s
        self.per_source_max = per_source_max
        self.total_max = total_max
        self._last_rx: dict[Hashable, float] = {}
        self._source: dict[Hashable, str] = {}
        self._by_source: dict[str, dict[Hashable, None]] = {}  # insertion order = age

    def __len__(self) -> int:
        return len(self._last_rx)

    def __contains__(self, conn: Hashable) -> bool:
        return conn in self._last_rx

    def admit(self, conn: Hashable, source: str, now: float) -> list[tuple[Hashable, str]]:
        """Track a new unauthenticated connection; returns (connection, reason) pairs to close now."""
        if conn in self._last_rx:
            return []
        out: list[tuple[Hashable, str]] = []
        mine = self._by_source.get(source, {})
        if len(mine) >= self.per_source_max:
            out.append((next(iter(mine)), "probe_cap_source"))
        elif len(self._last_rx) >= self.total_max:
            biggest = max(self._by_source.values(), key=len)
            out.append((next(iter(biggest)), "probe_cap_total"))
        for victim, _ in out:
            self.forget(victim)
        self._last_rx[conn] = now
        self._source[conn] = source
        self._by_source.setdefault(source, {})[conn] = None
        return out

    def seen(self, conn: Hashable, now: float) -> None:
        if conn in self._last_rx:
            self._last_rx[conn] = now

    def forget(self, conn: Hashable) -> None:
        """The connection authenticated or closed: no longer a probe."""
        if self._last_rx.pop(conn, None) is None:
            return
        source = self._source.pop(conn)
        mine = self._by_source[source]
        del mine[conn]
        if not mine:
            del self._by_source[source]

    def expired(self, now: float) -> list[Hashable]:
        """Connections silent for `idle_s`; they are forgotten here."""
        out = [c for c, t in self._last_rx.items() if now - t >= self.idle_s]
        for c in out:
            self.forget(c)
        return out

    def next_deadline(self) -> float | None:
        return min(self._last_rx.values()) + self.idle_s if self._last_rx else None


class Closable(Protocol):
    def close(self) -> None: ...


class ProbeGuard:
    """Applies the probe reaction and the caps for one server. Connections are objects with close()
    (a Protocol, or a wrapper around a stream writer); the guard closes them when idle or evicted."""

    def __init__(self, stats: Counter, idle_s: float | None = None, per_source_max: int | None = None,
                 total_max: int | None = None) -> None:
        self.stats = stats
        self.table = ProbeTable(PROBE_IDLE_TIMEOUT_S if idle_s is None else idle_s,
                                UNAUTH_PER_SOURCE_MAX if per_source_max is None else per_source_max,
                                UNAUTH_TOTAL_MAX if total_max is None else total_max)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def idle_s(self) -> float:
        return self.table.idle_s

    def admit(self, conn: Closable, peername: object) -> None:
        for victim, reason in self.table.admit(conn, source_of(peername), time.monotonic()):
            self.stats[reason] += 1
            victim.close()  # type: ignore[attr-defined]
        self._arm()

    def seen(self, conn: Closable) -> None:
        self.table.seen(conn, time.monotonic())

    def authenticated(self, conn: Closable) -> None:
        self.table.forget(conn)

    closed = authenticated

    def _arm(self) -> None:
        # deadlines only move later (seen) or are added later than any existing one (admit), so a
        # timer already armed is never too late
        if self._timer is not None:
            return
        due = self.table.next_deadline()
        if due is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, due - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        for conn in self.table.expired(time.monotonic()):
            self.stats["probe_idle"] += 1
            conn.close()  # type: ignore[attr-defined]
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
