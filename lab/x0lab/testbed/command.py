"""Commands and files of the testbed: one way to run a command (in a namespace), one error type, one
way to replace a file.

Rules: every command has a timeout and raises TestbedError (naming the command and its stderr) when it
fails and `check` is set; a file is replaced by a temp file, fsync, rename and an fsync of its
directory, so a reader sees the old or the new content, never a torn one.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess


class TestbedError(RuntimeError):
    """A testbed operation failed (bad node name, missing testbed, command failure)."""


def sh(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30.0, input: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"timed out: {shlex.join(full)}") from None
    if check and proc.returncode != 0:
        raise TestbedError(f"{shlex.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def atomic_write(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file with `text`: temp file, fsync, rename, fsync of the directory."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
