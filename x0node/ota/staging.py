"""Staging a bundle on /data: one sparse file, a bitmap of verified chunks, resumable (adapter).

Layout: `<dir>/<manifest id>/manifest.json` (the signed manifest as received), `bundle.raucb` (the
bundle file at its final size, chunks written at their offsets as they arrive), `have.bin` (one bit per
verified chunk). The bundle is never held in memory: at most one chunk per request is.

Rules and invariants:
- Space is checked before a download starts (`space_needed`): the missing bytes plus RESERVE_BYTES
  must be free on the file system, else the fetch is refused with the numbers (a node never fills
  /data to the last block, so the daemon's own state and the user's config can still be written).
- A chunk is written only after its hash matched the manifest; it is fsynced before its bit is set,
  and the bitmap is replaced durably (temp + fsync + rename + directory fsync). After a power cut the
  bitmap never claims a chunk that is not on disk; a chunk written but not yet recorded is fetched
  again (at most the chunks in flight).
- A chunk read for a neighbour is hashed again before it is sent; a damaged one clears its bit.
- Only one staged bundle is kept besides the one being installed: `prune` removes the others.
- `put`, `read` and `adopt` run in worker threads while the event loop serves `bitmap_hex` to other
  nodes: the bitmap is built from a snapshot of `have` (never by iterating the live set), and the
  bitmap file is written under one lock from the set as it is then, so a later write never records
  fewer chunks than an earlier one.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import threading

from x0node.io.atomicfile import rename_durable, write_atomic
from x0node.ota import manifest as mf

RESERVE_BYTES = 4 * 1024 * 1024
BUNDLE_FILE = "bundle.raucb"
MANIFEST_FILE = "manifest.json"
HAVE_FILE = "have.bin"


class NoSpace(Exception):
    pass


class Staged:
    def __init__(self, root: pathlib.Path, m: mf.Manifest, manifest_bytes: bytes) -> None:
        self.m = m
        self.dir = root / m.id
        self.bundle = self.dir / BUNDLE_FILE
        self.manifest_bytes = manifest_bytes
        self.have: set[int] = set()
        self._write_lock = threading.Lock()

    @staticmethod
    def open(root: pathlib.Path, m: mf.Manifest, manifest_bytes: bytes) -> Staged:
        """Open or create the staging directory; loads the bitmap of a previous, interrupted fetch."""
        st = Staged(root, m, manifest_bytes)
        st.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (st.dir / MANIFEST_FILE).exists():
            write_atomic(st.dir / MANIFEST_FILE, manifest_bytes, mode=0o644)
        try:
            bits = (st.dir / HAVE_FILE).read_bytes()
        except FileNotFoundError:
            bits = b""
        n = len(m.chunks)
        st.have = {i for i in range(min(n, len(bits) * 8)) if bits[i // 8] >> (i % 8) & 1}
        return st

    @property
    def complete(self) -> bool:
        return len(self.have) == len(self.m.chunks)

    def missing_bytes(self) -> int:
        return sum(self.m.chunk_size(i) for i in range(len(self.m.chunks)) if i not in self.have)

    def space_needed(self) -> int | None:
        """Bytes lacking on the file system for this bundle, or None when there is room."""
        free = shutil.disk_usage(self.dir).free
        have_on_disk = self.bundle.stat().st_blocks * 512 if self.bundle.exists() else 0
        need = self.missing_bytes() + RESERVE_BYTES - max(0, have_on_disk - (self.m.bundle_bytes - self.missing_bytes()))
        return None if free >= need else need - free

    def ensure_space(self) -> None:
        lack = self.space_needed()
        if lack is not None:
            raise NoSpace(f"{self.missing_bytes()} bytes to fetch plus a {RESERVE_BYTES} byte reserve do not fit "
                          f"on {self.dir}: {lack} bytes short")

    def _bits(self) -> bytes:
        out = bytearray((len(self.m.chunks) + 7) // 8)
        for i in frozenset(self.have):  # a copy made at once: another thread may add to `have` meanwhile
            out[i // 8] |= 1 << (i % 8)
        return bytes(out)

    def bitmap_hex(self) -> str:
        return self._bits().hex()

    def put(self, index: int, data: bytes) -> bool:
        """Store a chunk if it matches the manifest; False (nothing written) if not."""
        if index in self.have:
            return True
        if not self.m.chunk_ok(index, data):
            return False
        fd = os.open(self.bundle, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size != self.m.bundle_bytes:
                os.ftruncate(fd, self.m.bundle_bytes)
            view = memoryview(data)
            off = index * self.m.chunk_bytes
            while view:
                n = os.pwrite(fd, view, off)
                view, off = view[n:], off + n
            os.fsync(fd)
        finally:
            os.close(fd)
        self.have.add(index)
        self._save_bits()
        return True

    def _save_bits(self) -> None:
        with self._write_lock:
            write_atomic(self.dir / HAVE_FILE, self._bits(), mode=0o600)

    def read(self, index: int) -> bytes | None:
        """A verified chunk for a neighbour, hashed again; None if we do not have it (any more)."""
        if index not in self.have:
            return None
        with open(self.bundle, "rb") as f:
            f.seek(index * self.m.chunk_bytes)
            data = f.read(self.m.chunk_size(index))
        if hashlib.sha256(data).hexdigest() != self.m.chunks[index]:
            self.have.discard(index)
            self._save_bits()
            return None
        return data

    def adopt(self, path: pathlib.Path) -> None:
        """Take a whole bundle file that is already here (an upload, a local build, or this staging
        directory's own file) after checking every chunk; chunks that do not match are left missing."""
        if path.resolve() != self.bundle.resolve():
            tmp = self.dir / (BUNDLE_FILE + ".in")
            shutil.copyfile(path, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            rename_durable(tmp, self.bundle)
        self.have = set()
        with open(self.bundle, "rb") as f:
            for i in range(len(self.m.chunks)):
                if self.m.chunk_ok(i, f.read(self.m.chunk_bytes)):
                    self.have.add(i)
        write_atomic(self.dir / HAVE_FILE, self._bits(), mode=0o600)

    def verify_whole(self) -> bool:
        h = hashlib.sha256()
        with open(self.bundle, "rb") as f:
            while block := f.read(1024 * 1024):
                h.update(block)
        return self.complete and h.hexdigest() == self.m.bundle_sha256


def prune(root: pathlib.Path, keep: set[str]) -> list[str]:
    """Remove staged bundles whose manifest id is not in `keep`."""
    gone = []
    if not root.is_dir():
        return gone
    for d in root.iterdir():
        if d.is_dir() and len(d.name) == 64 and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def staged(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / MANIFEST_FILE).exists()) if root.is_dir() else []
