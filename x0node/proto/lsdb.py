"""Link-state database: the newest verified LSA (or withdraw tombstone) of every origin.

Rules:
- One entry per origin; an entry is replaced only by a strictly newer sequence number (serial
  arithmetic, 32 bits). Entries are installed only after the caller verified signature and trust.
- A withdraw (graceful leave) or a pruned origin leaves a tombstone with its sequence number, so older
  LSAs of that origin are refused until the tombstone ages out (LSA_MAX_AGE_S). A pruned origin's
  tombstone keeps its last signed LSA as `proof` (never flooded or synced): shown to that origin only,
  when it comes back with lower numbers (a reboot), so it jumps past it (RFC 2328 section 13.4); and
  that same LSA arriving again (a healed partition) is installed again, since only we pruned it.
- Entries not refreshed for LSA_MAX_AGE_S are removed by `expire`.
- At most MAX_LSAS entries; `install` of a new origin beyond that fails (the caller counts the drop).
- `raw` keeps the exact datagram so identical copies are recognised without re-verifying.
"""

from __future__ import annotations

from dataclasses import dataclass

from x0node.proto.messages import Lsa
from x0node.proto.protocol import LSA_MAX_AGE_S, MAX_LSAS
from x0node.proto.seqno import seq_newer


@dataclass
class LsaEntry:
    origin: bytes
    seq: int
    raw: bytes
    lsa: Lsa | None  # None = tombstone (withdrawn or pruned)
    installed_s: float
    public_key: bytes
    proof: bytes = b""  # a pruned origin's last signed LSA (tombstones only)

    @property
    def withdrawn(self) -> bool:
        return self.lsa is None


class Lsdb:
    def __init__(self, max_entries: int = MAX_LSAS, max_age_s: float = LSA_MAX_AGE_S) -> None:
        self._entries: dict[bytes, LsaEntry] = {}
        self._by_raw: dict[bytes, bytes] = {}  # exact datagram -> origin, for current entries
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.version = 0  # bumps on every change that affects SPF

    def __len__(self) -> int:
        return len(self._entries)

    def by_raw(self, raw: bytes) -> LsaEntry | None:
        """The entry whose stored datagram is exactly `raw` (a copy we already verified)."""
        origin = self._by_raw.get(raw)
        return None if origin is None else self._entries.get(origin)

    def _set(self, entry: LsaEntry) -> None:
        old = self._entries.get(entry.origin)
        if old is not None and old.raw:
            self._by_raw.pop(old.raw, None)
        self._entries[entry.origin] = entry
        if entry.raw:
            self._by_raw[entry.raw] = entry.origin

    def get(self, origin: bytes) -> LsaEntry | None:
        return self._entries.get(origin)

    def entries(self) -> list[LsaEntry]:
        return list(self._entries.values())

    def lsas(self) -> dict[bytes, Lsa]:
        return {o: e.lsa for o, e in self._entries.items() if e.lsa is not None}

    def is_newer(self, origin: bytes, seq: int) -> bool:
        cur = self._entries.get(origin)
        return cur is None or seq_newer(seq, cur.seq)

    def has_room_for(self, origin: bytes) -> bool:
        return origin in self._entries or len(self._entries) < self.max_entries

    def install(self, entry: LsaEntry) -> bool:
        if not self.has_room_for(entry.origin):
            return False
        self._set(entry)
        self.version += 1
        return True

    def tombstone(self, origin: bytes, now: float) -> None:
        """Turn the origin's LSA into a tombstone (same seq, not flooded)."""
        cur = self._entries.get(origin)
        if cur is not None and cur.lsa is not None:
            self._set(LsaEntry(origin, cur.seq, b"", None, now, cur.public_key, proof=cur.raw))
            self.version += 1

    def remove(self, origin: bytes) -> None:
        e = self._entries.pop(origin, None)
        if e is not None:
            self._by_raw.pop(e.raw, None)
            self.version += 1

    def expire(self, now: float, keep: bytes | None = None) -> list[bytes]:
        """Remove entries older than max age (except `keep`, our own). Returns removed origins that had an LSA."""
        gone = []
        for origin, e in list(self._entries.items()):
            if origin != keep and now - e.installed_s >= self.max_age_s:
                del self._entries[origin]
                self._by_raw.pop(e.raw, None)
                self.version += 1
                if e.lsa is not None:
                    gone.append(origin)
        return gone

    def next_expiry(self, keep: bytes | None = None) -> float | None:
        times = [e.installed_s + self.max_age_s for o, e in self._entries.items() if o != keep]
        return min(times) if times else None
