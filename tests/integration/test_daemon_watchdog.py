"""The daemon's systemd watchdog on a real daemon: a listener stands in for systemd's notify socket.

The daemon must say READY=1 once up, narrow a generous start allowance to the steady interval, pet
WATCHDOG=1 from its loop, stop petting while it is SIGSTOPped (what systemd then kills), and pet again
once continued.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from x0lab.testbed.bed import Testbed
from x0node.daemon.watchdog import STEADY_WATCHDOG_S


def _collect(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            out.append((time.monotonic(), sock.recv(256).decode()))
        except TimeoutError:
            break
    return out


def test_ready_narrowing_pets_and_silence_while_stopped(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    bed = Testbed.create(tmp_path / "bed", "line:2", "x0node")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        bed.start_all(exclude=(2,))
        first = _collect(listener, 3.0)
        messages = [m for _, m in first]
        assert "READY=1" in messages and f"WATCHDOG_USEC={int(STEADY_WATCHDOG_S * 1e6)}" in messages, messages
        steady = _collect(listener, 2 * STEADY_WATCHDOG_S)  # about eight pets; two prove the loop does it
        assert sum(1 for _, m in steady if m == "WATCHDOG=1") >= 2, steady
        pid = bed.nodes[1].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            _collect(listener, 0.2)  # a pet that was already on its way
            assert not [m for _, m in _collect(listener, STEADY_WATCHDOG_S * 0.75) if m == "WATCHDOG=1"]
        finally:
            os.kill(pid, signal.SIGCONT)
        assert [m for _, m in _collect(listener, STEADY_WATCHDOG_S) if m == "WATCHDOG=1"]
        bed.stop(1)  # SIGTERM: a clean stop says so
        assert "STOPPING=1" in [m for _, m in _collect(listener, 2.0)]
    finally:
        bed.down()
        listener.close()
