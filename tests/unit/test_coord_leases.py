"""The healing lease provider and the OTA rollout seat over the replicated machine (no network): the
answer arrives through the callback, neighbours never both hold `disrupt/` leases, the seat's holder
alone writes progress and a successor reads it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from x0node.coord.leases import MeshLeases, RolloutSeat
from x0node.coord.machine import Machine


@dataclass(frozen=True)
class Req:
    lease_id: int
    resource: str
    holder: str
    ttl_s: float
    reason: str = "test"


@dataclass(frozen=True)
class Rel:
    lease_id: int
    resource: str
    holder: str


class Node:
    """The service's lease API (CoordService.lease & co.) on a machine shared by every node."""

    def __init__(self, machine: Machine, me: str, neighbours: list[str]) -> None:
        self.m, self.me_hex, self.nbrs = machine, me, neighbours

    async def propose(self, cmd):
        await asyncio.sleep(0)
        return self.m.apply(cmd)

    async def lease(self, resource, ttl_s, lease_id, neighbours=None, reason=""):
        sent = time.monotonic()
        res = await self.propose({"op": "lease", "resource": resource, "holder": self.me_hex, "lease_id": lease_id,
                                  "ttl_s": ttl_s, "neighbours": self.nbrs if neighbours is None else neighbours})
        if res.get("granted"):
            res["valid_until"] = sent + res["ttl_s"]
        return res

    async def lease_release(self, resource, lease_id):
        return await self.propose({"op": "lease_release", "resource": resource, "holder": self.me_hex, "lease_id": lease_id})

    async def rollout_put(self, rollout, state):
        return await self.propose({"op": "rollout_put", "rollout": rollout, "holder": self.me_hex, "state": state})

    async def read(self, what, **kw):
        return await self.propose({"op": "read", "what": what, **kw})


A, B, C = "a" * 32, "b" * 32, "c" * 32


async def test_neighbours_never_hold_disruptive_leases_together():
    m = Machine()
    answers: list[tuple[str, int, bool]] = []
    provs = {n: MeshLeases(Node(m, n, nb), lambda lid, ok, why, n=n: answers.append((n, lid, ok)))
             for n, nb in ((A, [B]), (B, [A, C]), (C, [B]))}
    assert provs[A].request(Req(1, f"disrupt/{A}", A, 30), 0.0) is None  # answered later
    await asyncio.sleep(0.01)
    provs[B].request(Req(2, f"disrupt/{B}", B, 30), 0.0)
    provs[C].request(Req(3, f"disrupt/{C}", C, 30), 0.0)
    provs[A].request(Req(4, f"disrupt/{B}", A, 30), 0.0)  # only for itself
    await asyncio.sleep(0.01)
    assert answers == [(A, 1, True), (B, 2, False), (C, 3, True), (A, 4, False)]
    assert provs[A].held(1, time.monotonic()) and not provs[B].held(2, time.monotonic())
    provs[A].release(Rel(1, f"disrupt/{A}", A), 0.0)
    provs[C].release(Rel(3, f"disrupt/{C}", C), 0.0)
    await asyncio.sleep(0.01)
    provs[B].request(Req(5, f"disrupt/{B}", B, 30), 0.0)
    await asyncio.sleep(0.01)
    assert answers[-1] == (B, 5, True)


async def test_rollout_seat_is_exclusive_and_progress_survives_a_handover():
    m = Machine()
    first, second = RolloutSeat(Node(m, A, []), "v2", ttl_s=10), RolloutSeat(Node(m, B, []), "v2", ttl_s=10)
    assert await first.acquire() and first.held()
    assert not await second.acquire()
    assert await first.save({"step": 3, "done": ["n1", "n2"]})
    assert not await second.save({"step": 9})  # not the holder
    await first.release()
    assert await second.acquire()
    assert await second.load() == {"step": 3, "done": ["n1", "n2"]}
