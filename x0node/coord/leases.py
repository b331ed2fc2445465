"""What the healing loop and the OTA rollout call: mesh-wide leases on the Raft group.

Rules and invariants:
- `MeshLeases` is a lease provider for the healing loop's contract (request(req, now) / release(rel,
  now) with `req.lease_id, resource, holder, ttl_s, reason`): `request` returns None at once and the
  answer arrives later through `on_answer(lease_id, granted, detail)` after the Raft round trip. The
  replicated machine enforces the healing rule on `disrupt/<X>` (no two leases within one hop; X's
  neighbours are read from the routing core's topology when the request is made).
- A granted lease may be relied on until `valid_until` = the local monotonic time the request was sent
  + its TTL: the group counts the TTL in mesh time from a later instant and mesh time never runs ahead
  of real time (machine.py), so the group cannot give the lease to anyone else before then.
- `RolloutSeat` is the OTA rollout coordinator's seat: the exclusive `ota/rollout` lease, renewed by its
  holder, and the rollout's progress record that only the seat holder may write, so a coordinator that
  takes over reads where the last one stopped.
- Failures (no quorum, timeout) are answers, never exceptions: not granted, with the reason.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any

from x0node.coord.machine import ROLLOUT_SEAT

SEAT_TTL_S = 30.0


class MeshLeases:
    def __init__(self, service: Any, on_answer: Callable[[int, bool, str], None]) -> None:
        self.svc = service
        self.on_answer = on_answer
        self.valid_until: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request(self, req: Any, now: float) -> None:
        async def ask() -> None:
            if req.holder != self.svc.me_hex:
                self.on_answer(req.lease_id, False, "a node asks leases only for itself")
                return
            res = await self.svc.lease(req.resource, float(req.ttl_s), int(req.lease_id), reason=str(req.reason))
            if res.get("granted"):
                self.valid_until[req.lease_id] = res["valid_until"]
            self.on_answer(req.lease_id, bool(res.get("granted")), str(res.get("detail") or res.get("error", "")))

        self._spawn(ask())
        return None

    def release(self, rel: Any, now: float) -> None:
        self.valid_until.pop(rel.lease_id, None)
        self._spawn(self.svc.lease_release(rel.resource, int(rel.lease_id)))

    def held(self, lease_id: int, now: float) -> bool:
        return now < self.valid_until.get(lease_id, float("-inf"))


class RolloutSeat:
    """One rollout's coordinator seat on this node."""

    def __init__(self, service: Any, rollout_id: str, ttl_s: float = SEAT_TTL_S) -> None:
        self.svc = service
        self.rollout_id = rollout_id
        self.ttl_s = ttl_s
        self.lease_id = zlib.crc32(rollout_id.encode())
        self.valid_until = float("-inf")

    def held(self) -> bool:
        return time.monotonic() < self.valid_until

    async def acquire(self) -> bool:
        """Take (or renew) the seat; renew well before `valid_until` (e.g. every ttl_s / 3)."""
        res = await self.svc.lease(ROLLOUT_SEAT, self.ttl_s, self.lease_id, reason=f"rollout {self.rollout_id}")
        if res.get("granted"):
            self.valid_until = res["valid_until"]
            return True
        return False

    async def save(self, state: Any) -> bool:
        """Commit the rollout's progress (only while holding the seat)."""
        if not self.held():
            return False
        return bool((await self.svc.rollout_put(self.rollout_id, state)).get("ok"))

    async def load(self) -> Any:
        """The last committed progress of this rollout (None if none), read through the log."""
        res = await self.svc.read("rollout", rollout=self.rollout_id)
        rec = res.get("rollout") if res.get("ok") else None
        return None if rec is None else rec.get("state")

    async def release(self) -> None:
        self.valid_until = float("-inf")
        await self.svc.lease_release(ROLLOUT_SEAT, self.lease_id)
