"""Execute: turn planned actions into requests for the adapters and keep track of them.

Rules and invariants:
- Requests, lease requests and lease releases go into one bounded outbox, pulled with `next()` by the
  service, which hands them to the adapters; answers come back with `result()` and `lease_answer()`.
  The engine never assumes an action happened: only an `ActionResult` with ok=True moves it on.
- Request and lease ids grow monotonically from a start value (the service starts after the largest
  id it has stored, so ids stay unique across restarts). An answer with an unknown id is counted in
  `unknown_answers` and ignored.
- Idempotence: a mitigation in force is registered under (action, target); `in_force` lets the
  planner skip it, and `lift` produces its undo exactly once.
- The outbox holds at most MAX_OUTBOX items; beyond that the oldest is dropped and counted.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from x0node.healing.actions import ActionKind, ActionRequest, ActionResult
from x0node.healing.monitor import Element
from x0node.healing.safety import LeaseAnswer, LeaseRelease, LeaseRequest

MAX_OUTBOX = 256
MAX_INFLIGHT = 256

Outgoing = ActionRequest | LeaseRequest | LeaseRelease


@dataclass(frozen=True)
class Inflight:
    incident_id: int
    request: ActionRequest


class Executor:
    def __init__(self, first_id: int = 1) -> None:
        self._next_id = max(1, first_id)
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._inflight: dict[int, Inflight] = {}
        self._leases: dict[int, tuple[int, LeaseRequest]] = {}  # lease id -> (incident id, request)
        self._in_force: dict[tuple[ActionKind, Element], ActionRequest] = {}
        self.dropped = 0
        self.unknown_answers = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _push(self, item: Outgoing) -> None:
        self._outbox.append(item)
        while len(self._outbox) > MAX_OUTBOX:
            self._outbox.popleft()
            self.dropped += 1

    # ---- requests
    def request(self, incident_id: int, action: ActionKind, target: Element, params: dict[str, Any], reason: str,
                undo: bool = False) -> ActionRequest:
        req = ActionRequest(self._id(), action, target, tuple(sorted(params.items())), undo, incident_id, reason)
        if len(self._inflight) >= MAX_INFLIGHT:  # adapters stopped answering: forget the oldest
            self._inflight.pop(next(iter(self._inflight)))
            self.dropped += 1
        self._inflight[req.request_id] = Inflight(incident_id, req)
        self._push(req)
        return req

    def result(self, res: ActionResult) -> Inflight | None:
        item = self._inflight.pop(res.request_id, None)
        if item is None:
            self.unknown_answers += 1
        return item

    def forget(self, request_id: int) -> None:
        self._inflight.pop(request_id, None)

    # ---- leases
    def lease(self, incident_id: int, resource: str, holder: str, ttl_s: float, reason: str) -> LeaseRequest:
        req = LeaseRequest(self._id(), resource, holder, ttl_s, reason)
        self._leases[req.lease_id] = (incident_id, req)
        self._push(req)
        return req

    def lease_answer(self, ans: LeaseAnswer) -> int | None:
        """The incident id the answer belongs to (None if unknown). A grant stays held until `release`."""
        item = self._leases.get(ans.lease_id)
        if item is None:
            self.unknown_answers += 1
            return None
        if not ans.granted:
            del self._leases[ans.lease_id]
        return item[0]

    def release(self, lease_id: int) -> None:
        item = self._leases.pop(lease_id, None)
        if item is not None:
            self._push(LeaseRelease(lease_id, item[1].resource, item[1].holder))

    # ---- mitigations in force
    def in_force(self, action: ActionKind, target: Element) -> bool:
        return (action, target) in self._in_force

    def enforce(self, req: ActionRequest) -> None:
        self._in_force[(req.action, req.target)] = req

    def lift(self, req: ActionRequest, reason: str) -> ActionRequest | None:
        """The undo of a mitigation in force (None if it is not in force any more)."""
        if self._in_force.pop((req.action, req.target), None) is None:
            return None
        return self.request(req.incident_id, req.action, req.target, dict(req.params), reason, undo=True)

    def mitigations(self) -> list[ActionRequest]:
        return list(self._in_force.values())

    # ---- output
    def next(self) -> Outgoing | None:
        return self._outbox.popleft() if self._outbox else None

    @property
    def next_id(self) -> int:
        return self._next_id
