from __future__ import annotations

import json

from x0node.healing import actuator as act
from x0node.healing.actions import ActionKind, ActionRequest
from x0node.healing.actuator import LocalActuator, past_reboots, read_reboots
from x0node.healing.monitor import Element, ElementKind

NODE = Element(ElementKind.NODE, "aa")


def req(action, target=NODE, undo=False, **params):
    return ActionRequest(5, action, target, tuple(sorted(params.items())), undo, 9, "because")


class Manager:
    def __init__(self):
        self.running = {"telemetry": object()}
        self.restarted = []

    async def restart(self, name, ctx):
        self.restarted.append((name, ctx))


class Dog:
    def __init__(self, enabled=True):
        self.enabled, self.held = enabled, None

    def hold(self, reason):
        if self.enabled:
            self.held = reason
        return self.enabled


async def test_reset_interface_goes_down_and_up_and_only_on_mesh_interfaces(tmp_path, monkeypatch):
    monkeypatch.setattr(act, "RESET_DOWN_S", 0.01)
    calls = []
    a = LocalActuator(tmp_path, ["eth1"], set_link=lambda name, up: calls.append((name, up)))
    r = await a.perform(req(ActionKind.RESET_INTERFACE, ifname="eth1"))
    assert r.ok and calls == [("eth1", False), ("eth1", True)]
    assert (await a.perform(req(ActionKind.RESET_INTERFACE, undo=True, ifname="eth1"))).ok
    assert calls[-1] == ("eth1", True)
    bad = await a.perform(req(ActionKind.RESET_INTERFACE, ifname="eth0"))
    assert not bad.ok and "not a mesh interface" in bad.detail


async def test_a_failing_link_change_is_an_answer_not_a_crash(tmp_path):
    def boom(name, up):
        raise OSError("no such device")

    r = await LocalActuator(tmp_path, ["eth1"], set_link=boom).perform(req(ActionKind.RESET_INTERFACE, ifname="eth1"))
    assert not r.ok and "no such device" in r.detail


async def test_restart_subsystem_and_daemon(tmp_path):
    m, dog = Manager(), Dog()
    a = LocalActuator(tmp_path, [], services=m, ctx="CTX", watchdog=dog)
    assert (await a.perform(req(ActionKind.RESTART_SUBSYSTEM, service="telemetry"))).ok
    assert m.restarted == [("telemetry", "CTX")]
    assert "not running" in (await a.perform(req(ActionKind.RESTART_SUBSYSTEM, service="anomaly"))).detail
    assert "not restartable" in (await a.perform(req(ActionKind.RESTART_SUBSYSTEM, service="healing"))).detail
    assert (await a.perform(req(ActionKind.RESTART_DAEMON))).ok and dog.held == "because"
    no_dog = LocalActuator(tmp_path, [], watchdog=Dog(enabled=False))
    assert "no systemd watchdog" in (await no_dog.perform(req(ActionKind.RESTART_DAEMON))).detail


async def test_reboot_keeps_its_reason_on_flash_first(tmp_path):
    a = LocalActuator(tmp_path / "healing", [], reboot_command=["true"], wall=lambda: 5000.0)
    assert (await a.perform(req(ActionKind.REBOOT))).ok
    kept = read_reboots(tmp_path / "healing" / act.REBOOT_FILE)
    assert kept == [{"time": 5000.0, "reason": "because", "incident": 9, "target": "node:aa"}]
    assert [p.ago_s for p in past_reboots(tmp_path / "healing" / act.REBOOT_FILE, 3600.0, 5100.0)] == [100.0]
    failing = LocalActuator(tmp_path / "healing", [], reboot_command=["false"], wall=lambda: 6000.0)
    r = await failing.perform(req(ActionKind.REBOOT))
    assert not r.ok and "reboot command failed" in r.detail
    assert len(read_reboots(tmp_path / "healing" / act.REBOOT_FILE)) == 2  # the attempt is recorded anyway
    assert not list((tmp_path / "healing").glob(".*tmp"))


def test_reboot_records_are_bounded_and_bad_files_read_as_none(tmp_path, monkeypatch):
    path = tmp_path / "reboots.json"
    path.write_text("{not json")
    assert read_reboots(path) == []
    path.write_text(json.dumps([{"time": i, "reason": "r"} for i in range(100)] + [{"time": "x"}, 7]))
    assert len(read_reboots(path)) == act.MAX_REBOOT_RECORDS
    monkeypatch.setattr(act, "MAX_REBOOT_FILE_BYTES", 10)
    assert read_reboots(path) == []


async def test_router_commands_and_uplink_moves_are_refused_until_their_adapters_exist(tmp_path):
    a = LocalActuator(tmp_path, [])
    for kind in (ActionKind.PENALISE_LINK, ActionKind.DRAIN_LINK, ActionKind.STEER_AROUND_NODE,
                 ActionKind.MARK_SELF_SICK):
        assert not a.supports(kind)
        r = await a.perform(req(kind))
        assert not r.ok and r.detail == act.ROUTER_PENDING
    assert "transport" in (await a.perform(req(ActionKind.MOVE_UPLINK_OBFUSCATED))).detail
