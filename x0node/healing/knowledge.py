"""Knowledge: what happened (incidents, decisions, actions, outcomes) and what it taught us.

Rules and invariants:
- Per (fault kind, action) the base counts verified successes and tries; `stats` feeds the policy's
  ordering of rungs within a tier (policy.ladder). Counts come back from the store at start, so
  learning survives restarts; malformed stored rows are skipped and counted.
- Every engine event is a record; records wait in a bounded queue (MAX_PENDING_RECORDS, oldest dropped
  and counted) until the store adapter writes them (`next_record`).
- Operator feedback ("was this right?") is a record too; it does not change the counts (a wrong
  diagnosis whose action still verified is a diagnosis problem, kept apart for the RCA figures).
- Sans-I/O: the sqlite adapter (store.py) does the writing.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from x0node.healing.actions import ActionKind
from x0node.healing.analyze import FaultKind

MAX_PENDING_RECORDS = 4096
MAX_COUNT = 1_000_000  # counts saturate instead of growing without bound


@dataclass(frozen=True)
class Feedback:
    incident_id: int
    right: bool
    note: str
    at_s: float


@dataclass(frozen=True)
class PastAction:
    """An action from the store, for seeding backoff and the budget after a restart."""

    action: str
    target: str
    ago_s: float
    ok: bool
    disruptive: bool


class KnowledgeStore(Protocol):
    """Where records go (sqlite on /data in the daemon, see store.py)."""

    def load_stats(self) -> list[tuple[str, str, int, int]]: ...

    def recent_actions(self, window_s: float) -> list[PastAction]: ...

    def next_ids(self) -> tuple[int, int]: ...  # (next incident id, next request id)

    def write(self, records: list[Any]) -> None: ...


def record_kind(record: Any) -> str:
    return type(record).__name__


def record_dict(record: Any) -> dict[str, Any]:
    body = dataclasses.asdict(record) if dataclasses.is_dataclass(record) and not isinstance(record, type) else {}
    return {"type": record_kind(record), **body}


class Knowledge:
    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], list[int]] = {}
        self._records: collections.deque[Any] = collections.deque()
        self.dropped_records = 0
        self.bad_rows = 0

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:
        faults, actions = {f.value for f in FaultKind}, {a.value for a in ActionKind}
        for row in rows:
            try:
                fault, action, ok, tries = row
                ok, tries = int(ok), int(tries)
            except (TypeError, ValueError):
                self.bad_rows += 1
                continue
            if fault not in faults or action not in actions or not 0 <= ok <= tries <= MAX_COUNT:
                self.bad_rows += 1
                continue
            self._stats[(fault, action)] = [ok, tries]

    def stats(self, fault: FaultKind, action: ActionKind) -> tuple[int, int]:
        ok, tries = self._stats.get((fault.value, action.value), (0, 0))
        return ok, tries

    def outcome(self, fault: FaultKind, action: ActionKind, success: bool) -> None:
        entry = self._stats.setdefault((fault.value, action.value), [0, 0])
        entry[1] = min(MAX_COUNT, entry[1] + 1)
        entry[0] = min(entry[1], entry[0] + (1 if success else 0))

    def all_stats(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in sorted(self._stats.items())}

    def record(self, event: Any) -> None:
        self._records.append(event)
        while len(self._records) > MAX_PENDING_RECORDS:
            self._records.popleft()
            self.dropped_records += 1

    def feedback(self, incident_id: int, right: bool, note: str, now: float) -> Feedback:
        fb = Feedback(incident_id, bool(right), note[:500], now)
        self.record(fb)
        return fb

    def next_record(self) -> Any | None:
        return self._records.popleft() if self._records else None
