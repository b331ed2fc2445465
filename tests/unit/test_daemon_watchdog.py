from __future__ import annotations

import asyncio
import os
import socket

from x0node.daemon.watchdog import STEADY_WATCHDOG_S, Watchdog


def _listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.setblocking(False)
    return s


def _drain(s):
    out = []
    while True:
        try:
            out.append(s.recv(256).decode())
        except BlockingIOError:
            return out


def test_disabled_without_systemd_or_for_another_pid():
    assert not Watchdog(env={}).enabled
    assert not Watchdog(env={"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "0"}).enabled
    assert not Watchdog(env={"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "nope"}).enabled
    other = str(os.getpid() + 1)
    assert not Watchdog(env={"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": other}).enabled
    w = Watchdog(env={})
    assert w.hold("x") is False and w.pet() is False and w.notify("WATCHDOG=1") is False


async def test_pets_from_the_loop_only_while_alive_and_not_held(tmp_path):
    path = tmp_path / "notify"
    rx = _listener(path)
    alive = {"v": True}
    w = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())},
                 alive=lambda: alive["v"])
    assert w.enabled and w.interval_s == 0.2
    w.start()
    await asyncio.sleep(0.3)
    got = _drain(rx)
    assert got and set(got) == {"WATCHDOG=1"}
    alive["v"] = False  # the core's timer is not served: no more pets
    await asyncio.sleep(0.01)
    _drain(rx)
    await asyncio.sleep(0.3)
    assert _drain(rx) == [] and w.skipped >= 1
    alive["v"] = True
    assert w.hold("restart requested") is True
    await asyncio.sleep(0.2)
    assert _drain(rx) == []
    await w.stop()
    assert _drain(rx) == ["STOPPING=1"]
    rx.close()


def test_ready_narrows_a_generous_start_allowance_and_abstract_sockets_work():
    name = f"x0wd-test-{os.getpid()}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(b"\0" + name.encode())
    rx.setblocking(False)
    w = Watchdog(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "30000000"})
    w.ready()
    assert _drain(rx) == ["READY=1", f"WATCHDOG_USEC={int(STEADY_WATCHDOG_S * 1e6)}"]
    assert w.interval_s == STEADY_WATCHDOG_S
    rx.close()
    assert w.notify("WATCHDOG=1") is False and w.errors == 1  # a vanished listener is counted, not raised



def test_a_configured_steady_interval_replaces_the_start_allowance(tmp_path):
    # node.watchdog_s (an emulated lab unit: 120 s) is what systemd gets at READY=1, wider or narrower
    # than the unit's start allowance; at the default nothing changes for a unit already at it
    path = tmp_path / "notify"
    rx = _listener(path)
    w = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"}, steady_s=120.0)
    w.ready()
    assert _drain(rx) == ["READY=1", "WATCHDOG_USEC=120000000"] and w.interval_s == 120.0
    same = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(int(STEADY_WATCHDOG_S * 1e6))})
    same.ready()
    assert _drain(rx) == ["READY=1"]
    rx.close()

async def test_ready_starts_the_pet_timer_over_at_the_narrowed_pace(tmp_path):
    path = tmp_path / "notify"
    rx = _listener(path)
    w = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
    w.start()  # pets once, then sleeps about 7.5 s (a quarter of the start allowance)
    await asyncio.sleep(0.05)
    assert _drain(rx) == ["WATCHDOG=1"]
    w.ready()
    await asyncio.sleep(0.05)
    # without the restart the next pet would come after the old sleep, past the 6 s deadline
    assert _drain(rx) == ["READY=1", f"WATCHDOG_USEC={int(STEADY_WATCHDOG_S * 1e6)}", "WATCHDOG=1"]
    await w.stop()
    rx.close()


def test_readiness_is_sent_without_a_watchdog(tmp_path):
    """Type=notify needs READY=1 even when the unit sets no WatchdogSec."""
    import socket as so

    path = str(tmp_path / "notify")
    listener = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    listener.bind(path)
    try:
        w = Watchdog(env={"NOTIFY_SOCKET": path})
        assert not w.enabled and w.notifying
        w.ready()
        assert listener.recv(64) == b"READY=1"
        assert not w.pet()  # no watchdog asked for: nothing to pet
    finally:
        listener.close()


def test_ready_sets_a_configured_longer_steady_interval(tmp_path):
    """node.watchdog_s above the unit's WatchdogSec (an emulated board): widened at ready, not narrowed;
    the same interval as the unit's: nothing sent but READY=1."""
    path = tmp_path / "notify"
    rx = _listener(path)
    w = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"}, steady_s=120.0)
    w.ready()
    assert _drain(rx) == ["READY=1", "WATCHDOG_USEC=120000000"] and w.interval_s == 120.0
    w = Watchdog(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"}, steady_s=30.0)
    w.ready()
    assert _drain(rx) == ["READY=1"] and w.interval_s == 30.0
    rx.close()
