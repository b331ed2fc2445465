"""The state store on the data partition: one snapshot file, replaced atomically.

Rules:
- `write_atomic` is x0node/io/atomicfile.py's (temp file in the same directory, fsync, rename, directory
  fsync): after a power cut the file is the old snapshot or the new one, never a mix.
- `read` returns the bytes or None (no file yet). A file larger than store.MAX_SNAPSHOT_BYTES is not
  read. Whether the bytes are a valid snapshot is decided by the caller (gossip.load_snapshot); a
  damaged file is moved aside by `quarantine` (kept for inspection, at most QUARANTINE_KEEP of them)
  and the node starts empty and is rebuilt from its peers.
"""

from __future__ import annotations

import pathlib

from x0node.io import atomicfile
from x0node.state.store import MAX_SNAPSHOT_BYTES

STORE_NAME = "state.bin"
QUARANTINE_KEEP = 3


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomicfile.write_atomic(path, data, 0o600)


def read(path: pathlib.Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SNAPSHOT_BYTES + 1)
    except FileNotFoundError:
        return None
    return data


def quarantine(path: pathlib.Path) -> pathlib.Path | None:
    """Move a damaged store aside as <name>.corrupt-<n>; the oldest beyond QUARANTINE_KEEP is removed."""
    if not path.exists():
        return None
    olds = sorted(path.parent.glob(f"{path.name}.corrupt-*"), key=lambda p: p.stat().st_mtime)
    for old in olds[: max(0, len(olds) - QUARANTINE_KEEP + 1)]:
        old.unlink(missing_ok=True)
    n = 1 + max((int(p.name.rsplit("-", 1)[1]) for p in olds if p.name.rsplit("-", 1)[1].isdigit()), default=0)
    target = path.with_name(f"{path.name}.corrupt-{n}")
    atomicfile.rename_durable(path, target)
    return target
