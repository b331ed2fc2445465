"""Durable storage of one node's KV replica: an append-only log of records, compacted by rewriting.

Rules and invariants:
- An entry is u32 length | kind u8 | payload | BLAKE2b-8 of kind+payload. Kind 1 = a record, kind 2 = a
  hint (intended node id 16 bytes + key). `append` writes entries and fsyncs the file before it returns
  (io.atomicfile.append_synced):
  the replica acknowledges a put only after that (kv.py).
- Loading replays entries in order and re-verifies every record (signature, trust) like one from the
  network; it stops at the first torn or corrupt entry (a crash mid-append) and truncates the file
  there, so a damaged tail never hides behind later entries.
- When the log holds more than COMPACT_FACTOR times the live entries (and at least COMPACT_MIN_ENTRIES),
  it is rewritten with the live records and hints only through io.atomicfile.write_atomic (temp, fsync,
  rename, directory fsync).
- Bounded: an entry is at most ENTRY_MAX_BYTES; the file at most MAX_LOG_BYTES (appends beyond refuse).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import struct

from x0node.coord.record import RECORD_MAX_BYTES, Record
from x0node.io.atomicfile import append_synced, write_atomic
from x0node.proto.trust import TrustStore
from x0node.proto.wire import DecodeError

KIND_RECORD = 1
KIND_HINT = 2
ENTRY_MAX_BYTES = RECORD_MAX_BYTES + 64
MAX_LOG_BYTES = 256 * 1024 * 1024
COMPACT_FACTOR = 4
COMPACT_MIN_ENTRIES = 4096


def _entry(kind: int, payload: bytes) -> bytes:
    body = bytes((kind,)) + payload
    return struct.pack("<I", len(body) + 8) + body + hashlib.blake2b(body, digest_size=8).digest()


class KvLog:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.entries = 0
        self.size = 0

    def load(self, trust: TrustStore) -> tuple[list[Record], list[tuple[bytes, str]], int]:
        """(records, hints, refused count) in log order; truncates a torn tail."""
        records: list[Record] = []
        hints: list[tuple[bytes, str]] = []
        refused = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        pos = 0
        while pos + 4 <= len(data):
            (n,) = struct.unpack_from("<I", data, pos)
            if n < 9 or n > ENTRY_MAX_BYTES or pos + 4 + n > len(data):
                break
            body, digest = data[pos + 4: pos + 4 + n - 8], data[pos + 4 + n - 8: pos + 4 + n]
            if hashlib.blake2b(body, digest_size=8).digest() != digest:
                break
            pos += 4 + n
            self.entries += 1
            if body[0] == KIND_RECORD:
                try:
                    rec = Record.decode(body[1:])
                except DecodeError:
                    refused += 1
                    continue
                if rec.verify(trust) is not None:
                    refused += 1
                    continue
                records.append(rec)
            elif body[0] == KIND_HINT and len(body) > 17:
                hints.append((body[1:17], body[17:].decode("ascii", "replace")))
        if pos != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(pos)
                os.fsync(fh.fileno())
        self.size = pos
        return records, hints, refused

    def append(self, items: list[tuple[Record, bytes | None]]) -> None:
        """Append records (and their hints) durably. Raises OSError (nothing acknowledged then)."""
        chunks = []
        for rec, hint_for in items:
            chunks.append(_entry(KIND_RECORD, rec.encode()))
            if hint_for is not None:
                chunks.append(_entry(KIND_HINT, hint_for + rec.key.encode()))
        data = b"".join(chunks)
        if self.size + len(data) > MAX_LOG_BYTES:
            raise OSError("kv log full")
        append_synced(self.path, data)
        self.size += len(data)
        self.entries += len(chunks)

    def maybe_compact(self, records: list[Record], hints: list[tuple[bytes, str]]) -> bool:
        live = len(records) + len(hints)
        if self.entries < COMPACT_MIN_ENTRIES or self.entries <= COMPACT_FACTOR * live:
            return False
        data = b"".join(_entry(KIND_RECORD, r.encode()) for r in records)
        data += b"".join(_entry(KIND_HINT, n + k.encode()) for n, k in hints)
        write_atomic(self.path, data)
        self.entries, self.size = live, len(data)
        return True
