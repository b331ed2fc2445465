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


async def test_local_actuator_leaves_routing_commands_to_the_core_and_has_no_uplink_switch(tmp_path):
    a = LocalActuator(tmp_path, [])
    for kind in act.ROUTING_ACTIONS:
        assert not a.supports(kind)
        r = await a.perform(req(kind))
        assert not r.ok and r.detail == act.NO_ADAPTER
    assert (await a.perform(req(ActionKind.MOVE_UPLINK_OBFUSCATED))).detail == act.NO_UPLINK_SWITCH
    both = act.Actuators(act.RoutingActuator(None), a)
    assert not both.supports(ActionKind.MOVE_UPLINK_OBFUSCATED)
    assert (await both.perform(req(ActionKind.MOVE_UPLINK_OBFUSCATED))).detail == act.NO_UPLINK_SWITCH
    assert both.supports(ActionKind.REBOOT) and not both.supports(ActionKind.STEER_AROUND_NODE)


class Clock:
    def __init__(self, mesh):
        self.mesh = mesh

    def __call__(self):
        return self.mesh.now


def _square():
    from tests.sim.mesh import SimMesh

    mesh = SimMesh(4, seed=3)
    for a, b in ((0, 1), (0, 2), (1, 3), (2, 3)):
        mesh.connect(a, b)
    assert mesh.run_until_converged(5.0) is not None
    mesh.run_for(2.0)
    return mesh


async def test_routing_actuator_drives_the_core_commands_renews_and_lifts():
    mesh = _square()
    r0 = mesh.nodes[0].router
    woke = []
    ra = act.RoutingActuator(r0, wake=lambda: (woke.append(1), mesh.inject_flush(0)), clock=Clock(mesh), ttl_s=9.0)
    assert all(ra.supports(k) for k in act.ROUTING_ACTIONS) and not ra.supports(ActionKind.REBOOT)
    bad = mesh.mesh_route(0, 3)[1]
    bad_id = mesh.nodes[bad].router.me.hex()
    steer = req(ActionKind.STEER_AROUND_NODE, Element(ElementKind.NODE, bad_id), neighbour=bad_id, factor=64.0)
    res = await ra.perform(steer)
    assert res.ok and woke
    assert mesh.mesh_route(0, 3) == [0, 3 - bad, 3]
    assert [(c.kind, c.target) for c in r0.commands_in_force()] == [("steer", bad_id)]
    # idempotent: the same request again is fine and changes nothing
    assert (await ra.perform(steer)).ok and len(r0.commands_in_force()) == 1
    # renewed while the loop runs: it outlives its TTL
    for _ in range(6):
        mesh.run_for(2.0)
        ra.renew()
    assert mesh.now > 9.0 and [c.kind for c in r0.commands_in_force(mesh.now)] == ["steer"]
    # the loop stops renewing: the core lifts it by itself
    mesh.run_for(10.0)
    assert r0.commands_in_force(mesh.now) == ()
    # undo
    await ra.perform(steer)
    undo = await ra.perform(req(ActionKind.STEER_AROUND_NODE, Element(ElementKind.NODE, bad_id), undo=True,
                                neighbour=bad_id))
    assert undo.ok and r0.commands_in_force() == () and ra.held == {}
    # the other three, and a refusal passed through with the core's reason
    assert (await ra.perform(req(ActionKind.PENALISE_LINK, neighbour=bad_id, factor=4.0))).ok
    assert (await ra.perform(req(ActionKind.DRAIN_LINK, neighbour=bad_id))).ok
    assert (await ra.perform(req(ActionKind.MARK_SELF_SICK, Element(ElementKind.NODE, r0.me.hex())))).ok
    assert sorted(c.kind for c in r0.commands_in_force()) == ["drain", "penalty", "sick"]
    from x0node.healing.actions import PLUGINS, PlanContext
    from x0node.healing.monitor import MonitorOutput
    from x0node.healing.observation import Snapshot
    from x0node.healing.service import read_router

    mesh.run_for(1.0)  # our LSA with the flag is originated; the healing loop sees it through the views
    snap = Snapshot(now=mesh.now, routing=read_router(r0, r0.me.hex(), {}))
    ctx = PlanContext(snap, MonitorOutput(mesh.now, (), (), (), ()))
    me = Element(ElementKind.NODE, r0.me.hex())
    assert PLUGINS[ActionKind.MARK_SELF_SICK].effect_observed(me, {}, ctx) is True
    refused = await ra.perform(req(ActionKind.PENALISE_LINK, neighbour=bad_id, factor=0.1))
    assert not refused.ok and "factor" in refused.detail
    ra.lift_all()
    assert r0.commands_in_force() == ()
