"""Traffic shaping (sans-I/O): padding and timing profiles with a bandwidth budget.

The shaper sits between the payload and the encrypting stream. It cuts payload into units and
pads each unit to a size drawn from the profile; timing profiles release units only on slot
boundaries (a steady tick, like a game client's update rate or a player's segment fetches) and
may send cover units when idle. Unit format (inside the encrypted stream, so invisible on the
wire):
    data_len u16be | pad_len u16be | data | zero padding
Invariants:
- Padding and cover bytes are paid from a token bucket of `budget_bytes_per_s` (burst: one second).
  With the budget spent, units go out unpadded and no cover is sent - payload is never delayed
  for lack of budget, only left unshaped.
- Data is never held longer than one slot (`slot_s`), so the added latency is bounded by the
  profile (at most SLOT_S; the mean is about half of it).
- Pure: time comes in as `now`, randomness from the caller's rng.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIT_HEADER_BYTES = 4
MAX_UNIT_DATA = 16000


@dataclass(frozen=True)
class Profile:
    name: str
    sizes: tuple[int, ...]  # unit sizes (header + data + padding) to pad up to
    slot_s: float  # 0 = release at once; else units leave on slot boundaries
    cover: bool  # send a small cover unit on idle slots (costs budget)


PROFILES: dict[str, Profile] = {
    # HTTPS browsing: bursts of request/response records, sizes of typical TLS records
    "browsing": Profile("browsing", (600, 1200, 1400, 4096, 8192, 16000), 0.0, False),
    # video: segment-sized bursts released together every slot
    "video": Profile("video", (1400, 2800, 4200, 8400, 16000), 0.008, False),
    # gaming: small fixed-size updates on a 125 Hz tick, cover when idle
    "gaming": Profile("gaming", (160, 256, 512, 1200), 0.008, True),
}
DEFAULT_BUDGET_BYTES_PER_S = 64 * 1024


class Shaper:
    def __init__(self, profile: Profile, rng, budget_bytes_per_s: float = DEFAULT_BUDGET_BYTES_PER_S, now: float = 0.0) -> None:
        self.profile = profile
        self.rng = rng
        self.rate = float(budget_bytes_per_s)
        self.tokens = self.rate
        self._last = now
        self._queue = bytearray()
        self._queued_at: float | None = None
        self._next_slot = now
        self.payload_bytes = 0
        self.overhead_bytes = 0  # headers + padding + cover
        self.unpadded_units = 0
        self.cover_units = 0

    def _refill(self, now: float) -> None:
        if now > self._last:
            self.tokens = min(self.rate, self.tokens + (now - self._last) * self.rate)
            self._last = now

    def push(self, data: bytes, now: float) -> None:
        if not self._queue:
            self._queued_at = now
        self._queue += data

    def next_deadline(self) -> float | None:
        """When `pull` should next be called (None: nothing pending and no cover due)."""
        if self.profile.slot_s == 0:
            return self._queued_at if self._queue else None
        if self._queue or (self.profile.cover and self.tokens >= self.profile.sizes[0]):
            return self._next_slot
        if self.profile.cover and self.rate > 0:  # cover resumes once the bucket refilled
            return max(self._next_slot, self._last + (self.profile.sizes[0] - self.tokens) / self.rate)
        return None

    def _unit(self, data: bytes) -> bytes:
        need = UNIT_HEADER_BYTES + len(data)
        fits = [s for s in self.profile.sizes if s >= need]
        target = self.rng.choice(fits[:2]) if fits else need
        pad = target - need
        if pad > self.tokens:
            pad = 0
            self.unpadded_units += 1
        self.tokens -= pad + UNIT_HEADER_BYTES
        self.payload_bytes += len(data)
        self.overhead_bytes += pad + UNIT_HEADER_BYTES
        return len(data).to_bytes(2, "big") + pad.to_bytes(2, "big") + data + bytes(pad)

    def pull(self, now: float) -> list[bytes]:
        """Units due at `now`."""
        self._refill(now)
        p = self.profile
        if p.slot_s:
            if now < self._next_slot:
                return []
            # keep a steady grid; skip missed slots rather than bursting to catch up
            missed = int((now - self._next_slot) / p.slot_s) + 1
            self._next_slot += missed * p.slot_s
        out: list[bytes] = []
        q = self._queue
        while q:
            piece = bytes(q[:MAX_UNIT_DATA])
            del q[:MAX_UNIT_DATA]
            out.append(self._unit(piece))
        self._queued_at = None
        if not out and p.cover:
            size = self.rng.choice(p.sizes[:2])
            if self.tokens >= size:  # cover only when the budget pays for all of it
                self.tokens -= size
                self.overhead_bytes += size
                self.cover_units += 1
                out.append(bytes(2) + (size - UNIT_HEADER_BYTES).to_bytes(2, "big") + bytes(size - UNIT_HEADER_BYTES))
        return out

    def overhead_ratio(self) -> float:
        return self.overhead_bytes / self.payload_bytes if self.payload_bytes else 0.0


class Deshaper:
    """Strips unit headers and padding; returns the payload bytes. Bounded by one unit."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.cover_units = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        n = len(buf)
        while n - pos >= UNIT_HEADER_BYTES:
            dl = (buf[pos] << 8) | buf[pos + 1]
            pl = (buf[pos + 2] << 8) | buf[pos + 3]
            total = UNIT_HEADER_BYTES + dl + pl
            if n - pos < total:
                break
            if dl == 0:
                self.cover_units += 1
            out += buf[pos + UNIT_HEADER_BYTES : pos + UNIT_HEADER_BYTES + dl]
            pos += total
        if pos:
            del buf[:pos]
        return bytes(out)
