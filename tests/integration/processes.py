"""Child processes a test or bench starts on this machine.

Rules: waiting for a port is bounded by its timeout and only ever connects to 127.0.0.1; stopping
asks every still-running child to terminate first, then reaps each, killing one that has not left
within STOP_GRACE_S, so nothing is left behind whatever state the children are in.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable

STOP_GRACE_S = 5.0
PORT_POLL_S = 0.05


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Return once a TCP connection to 127.0.0.1:`port` succeeds; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(PORT_POLL_S)
    raise TimeoutError(f"port {port} never opened")


def stop_processes(procs: Iterable[subprocess.Popen]) -> None:
    """Terminate every child still running, then wait for each (kill after STOP_GRACE_S)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
