"""Durable file replacement: the one way x0node writes a configuration or state file.

Rules and invariants:
- `write_atomic(path, data)` writes `data` to a new temporary file in the same directory (created
  exclusively, never following a symlink, with `mode` from the start), writes it completely (a short
  write is continued, a write of zero bytes is an error), fsyncs it, renames it over `path` and then
  fsyncs the directory, so the rename itself survives a power cut. Readers see the old file or the
  new one, never a mix or an empty file (POSIX rename(2); ext4/f2fs need the directory fsync for the
  new name to be durable).
- On any error before the rename the temporary file is removed and the old file is untouched; the
  `OSError` goes to the caller (nothing is swallowed here).
- `append_synced(path, data)` is the one way to grow an append-only journal (the KV log): the bytes
  are written completely at the end of the file and fsync'd before it returns; a new file's directory
  entry is fsync'd too. The journal's own framing must detect a torn last entry (a crash mid-append).
- `storage_full(exc)` tells a full file system (ENOSPC, EDQUOT) from other storage faults, so callers
  can answer "insufficient storage" (HTTP 507, RFC 4918 section 11.5) rather than "unavailable" (503).
"""

from __future__ import annotations

import errno
import os
import pathlib
import secrets

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # a regular file that takes nothing more is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_synced(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Append `data` to `path` durably (see the module rules)."""
    path = pathlib.Path(path)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` durably (see the module rules). The directory must exist."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened beyond `mode`
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def rename_durable(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move `src` to `dst` in the same directory (rename(2), replacing `dst`) and fsync the directory,
    so the move survives a power cut like a `write_atomic` does."""
    os.replace(src, dst)
    fsync_dir(pathlib.Path(dst).parent)
