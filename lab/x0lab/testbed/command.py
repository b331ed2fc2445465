"""Commands of the testbed: one way to run a command (in a namespace) and one error type.

Rules: every command has a timeout and raises TestbedError (naming the command and its stderr) when it
fails and `check` is set. (Files are replaced through x0node.io.atomicfile.write_atomic.)
"""

from __future__ import annotations

import shlex
import subprocess


class TestbedError(RuntimeError):
    """A testbed operation failed (bad node name, missing testbed, command failure)."""

    __test__ = False  # not a pytest test class


def sh(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30.0, input: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"timed out: {shlex.join(full)}") from None
    if check and proc.returncode != 0:
        raise TestbedError(f"{shlex.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
