"""Slot scheduler for periodic beacons (keepalives): one deterministic slot per node and interface.

Rules:
- A frame lasts `interval_s` and holds `slots` slots; our frame grid starts at `origin_s` (chosen once
  with the rng so different nodes' grids are not aligned; the router gives all its interfaces the same
  origin, so a node's beacons on every interface start in the same slot and go out in one wakeup). Our beacon goes out in our slot, at
  slot start + a jitter drawn uniformly from [0, jitter_fraction x slot length]. So consecutive beacons
  are `interval_s` apart within +- jitter_fraction / slots of the interval (0.2 % at the defaults).
- The initial slot is derived from the node id (BLAKE2b of id and attempt number), so it is
  deterministic and spread uniformly.
- Every beacon heard is mapped to its phase in our grid. Two beacons collide when they are less than
  COLLISION_GUARD_SLOTS (G) slot lengths apart. With jitter J (fraction of a slot), a heard beacon
  closer than G + J to the centre of our send window may collide with ours: the node with the larger
  id then moves (the other keeps its slot) to the first slot in its id-derived sequence whose centre
  is at least G + 1.5 J from every heard beacon, which no jitter on either side can make collide.
  Capacity is therefore about SLOTS_PER_FRAME / (2 G + 3 J) nodes per collision domain (62 at the
  defaults). At most MAX_SLOT_OBSERVATIONS neighbours' phases are remembered.
"""

from __future__ import annotations

import hashlib
import random

from x0node.proto.protocol import MAX_SLOT_OBSERVATIONS, SLOT_JITTER_FRACTION, SLOTS_PER_FRAME

COLLISION_GUARD_SLOTS = 0.5
"""Two beacons closer than this many slot lengths collide."""


def slot_for(node_id: bytes, attempt: int, slots: int) -> int:
    h = hashlib.blake2b(node_id + attempt.to_bytes(4, "big"), digest_size=8, person=b"x0node-slot").digest()
    return int.from_bytes(h, "big") % slots


class SlotScheduler:
    def __init__(
        self,
        node_id: bytes,
        interval_s: float,
        now: float,
        rng: random.Random,
        slots: int = SLOTS_PER_FRAME,
        jitter_fraction: float = SLOT_JITTER_FRACTION,
        origin_s: float | None = None,
    ) -> None:
        self.node_id = node_id
        self.interval_s = interval_s
        self.slots = slots
        self.slot_len_s = interval_s / slots
        self.jitter_fraction = jitter_fraction
        self.origin_s = now + rng.uniform(0.0, interval_s) if origin_s is None else origin_s
        self._rng = rng
        self.attempt = 0
        self.slot = slot_for(node_id, 0, slots)
        self.observed: dict[bytes, float] = {}  # sender -> phase in our grid (s)
        self.collisions = 0
        self.reassignments = 0
        self._last_frame = -1

    def phase(self, t: float) -> float:
        return (t - self.origin_s) % self.interval_s

    def next_send(self, now: float) -> float:
        """Absolute time of our next beacon strictly after `now` (one per frame)."""
        frame = int((now - self.origin_s) // self.interval_s)
        frame = max(frame, self._last_frame + 1)
        base = self.origin_s + self.slot * self.slot_len_s
        jitter = self._rng.uniform(0.0, self.jitter_fraction * self.slot_len_s)
        t = base + frame * self.interval_s + jitter
        while t <= now:
            frame += 1
            t = base + frame * self.interval_s + jitter
        self._last_frame = frame
        return t

    def _distance(self, a: float, b: float) -> float:
        d = abs(a - b) % self.interval_s
        return min(d, self.interval_s - d)

    def _centre(self, slot: int) -> float:
        return (slot + self.jitter_fraction / 2) * self.slot_len_s

    def _occupied(self, slot: int) -> bool:
        # free only if no heard beacon can come within the guard of our send, whatever both jitters do
        centre = self._centre(slot)
        limit = (COLLISION_GUARD_SLOTS + 1.5 * self.jitter_fraction) * self.slot_len_s
        return any(self._distance(p, centre) < limit for p in self.observed.values())

    def observe(self, now: float, sender: bytes) -> bool:
        """A beacon from `sender` was heard at `now`. Returns True if we moved to a new slot."""
        if sender == self.node_id:
            return False
        if sender not in self.observed and len(self.observed) >= MAX_SLOT_OBSERVATIONS:
            self.observed.pop(next(iter(self.observed)))
        p = self.phase(now)
        self.observed[sender] = p
        limit = (COLLISION_GUARD_SLOTS + self.jitter_fraction) * self.slot_len_s
        if self._distance(p, self._centre(self.slot)) >= limit:
            return False
        self.collisions += 1
        if self.node_id < sender:
            return False  # the larger id moves
        for _ in range(4 * self.slots):
            self.attempt += 1
            cand = slot_for(self.node_id, self.attempt, self.slots)
            if not self._occupied(cand):
                self.slot = cand
                self.reassignments += 1
                return True
        return False

    def forget(self, sender: bytes) -> None:
        self.observed.pop(sender, None)
