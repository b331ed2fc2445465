import json
import time

import pytest
from prometheus_client import CollectorRegistry

from x0node.anomaly import service as svc
from x0node.daemon.bus import EventBus
from x0node.daemon.config import ConfigError
from x0node.daemon.services import ServiceContext
from x0node.proto.views import LinkView, NeighbourView, NodeView, TopologyView


class _Telemetry:
    def snapshot(self):
        return {"bpf": True, "interfaces": {"lo": {"dropped": 7}}}


class _Router:
    def neighbours(self):
        return (NeighbourView("peer1", "m0", "fe80::1", "up", 5.0, 0.0, None, "excellent", 100, 0.1, 3.0),)

    def topology(self):
        raise RuntimeError("view not available")


def _ctx(tmp_path, registry=None):
    return ServiceContext(router=_Router(), config=None, data_dir=tmp_path, registry=registry or CollectorRegistry(),
                          bus=EventBus(), interfaces=["lo"], node_id="me", mesh_addr="fd00::1", provider=None,
                          extras={"telemetry": _Telemetry()})


def test_validate_config_fills_defaults_and_names_bad_keys():
    out = svc.validate_config({"interval_s": 5})
    assert out["interval_s"] == 5.0 and out["target_fpr"] == 0.01 and out["override"] == "" and out["cgroup"] == ""
    assert svc.validate_config({"cgroup": "parent"})["cgroup"] == "parent"
    assert out["federated"] is False and out["federated_round_s"] == 3600.0
    assert svc.validate_config({"federated": True, "federated_round_s": 600})["federated_round_s"] == 600.0
    for bad, key in (({"cgroup": "/sys/fs/cgroup/x"}, "cgroup"), ({"cgroup": 1}, "cgroup"),({"interval_s": 0}, "interval_s"), ({"target_fpr": 0.9}, "target_fpr"),
                     ({"override": "block"}, "override"), ({"nope": 1}, "nope"), ({"min_outcomes": True}, "min_outcomes"),
                     ({"seed": "x"}, "seed"), ({"model_dir": 3}, "model_dir"), ({"enabled": "yes"}, "enabled"),
                     ({"federated": 1}, "federated"), ({"federated_round_s": 10}, "federated_round_s")):
        with pytest.raises(ConfigError) as ei:
            svc.validate_config(bad)
        assert ei.value.key == key


async def test_service_runs_publishes_persists_and_restores(tmp_path):
    ctx = _ctx(tmp_path)
    s = svc.create_service({"interval_s": 3600, "seed": 1, "override": "observe"})
    await s.start(ctx)
    await s.wait_loaded()
    try:
        sub = ctx.bus.subscribe()
        r1 = await s.tick()
        r2 = await s.tick()
        assert r1["layer"] in ("self", "gbt_self") and r2["nodes"] == 1 and r2["acting"] is False  # alone
        topics = {e.topic for e in iter(sub.get_nowait, None)}
        assert "anomaly.features" in topics
        st = s.status()
        assert st["live_layer"] in ("gnn", "gbt") and st["observe"]["override"] == "observe" and st["evaluations"] == 2
        assert st["tick_errors"] == 0
        s.update_peer("peer1", [0.2, 0.4, 0.2, 10.0, 0.0, 0.0, 0.0, 1.0])
        assert (await s.tick())["nodes"] == 2
    finally:
        await s.stop()
    saved = json.loads((tmp_path / "anomaly" / "observe.json").read_text())
    assert saved["override"] == "observe" and saved["predictions"] == 3
    drift = json.loads((tmp_path / "anomaly" / "drift.json").read_text())
    assert drift["reference_rows"] == 3 and drift["reference"] is None  # this node's own, still building
    s2 = svc.create_service({"interval_s": 3600})
    await s2.start(_ctx(tmp_path))
    await s2.wait_loaded()
    try:
        assert s2.status()["observe"]["predictions"] == 3
        assert s2.status()["drift"]["reference_rows"] == 3 and s2.status()["drift"]["reference"] == "own"
    finally:
        await s2.stop()


async def test_corrupt_state_file_starts_fresh_and_missing_model_degrades(tmp_path):
    (tmp_path / "anomaly").mkdir()
    (tmp_path / "anomaly" / "observe.json").write_text("{not json")
    s = svc.create_service({"interval_s": 3600, "model_dir": str(tmp_path / "none")})
    await s.start(_ctx(tmp_path))
    await s.wait_loaded()
    try:
        assert s.status()["live_layer"] == "rules"
        assert (await s.tick())["layer"] == "rules"
    finally:
        await s.stop()


def test_adjacency_from_the_core_topology_view_and_neighbours():
    node = NodeView("a", "fd00::1", False, True, (), "node", 100, 1)
    topo = TopologyView((node,), (LinkView("a", "b", 10, "good"), LinkView("b", "c", 10, "good"), LinkView("x", "x", 1, "bad")))
    nbs = tuple(NeighbourView(nid, "m0", "fe80::1", state, 1.0, 0.0, None, "good", 100, 0.1, None)
                for nid, state in (("me", "up"), ("n1", "up"), ("n2", "init")))
    adj = svc._adjacency("me", nbs, topo)  # noqa: SLF001
    assert adj["b"] == ["a", "c"] and adj["me"] == ["n1"] and "x" not in adj and "n2" not in adj


def test_importing_the_service_does_not_load_litert():
    import subprocess
    import sys

    code = ("import sys, x0node.anomaly.service, x0node.anomaly.chain;"
            "print(any(m.startswith('ai_edge_litert') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


async def _with_alarm(s):
    """Tick until this node's alarm is up (an alarm policy of one tick): its id."""
    import numpy as np

    from x0node.anomaly.alarm import AlarmPolicy
    from x0node.anomaly.features import FEATURES, NEUTRAL_RAW

    bad = NEUTRAL_RAW.copy()
    for name, value in (("fwd_ratio", 0.01), ("loss_max", 0.9), ("link_changes", 8.0), ("rtt_ms", 900.0)):
        bad[FEATURES.index(name)] = value
    s.engine.alarm_policy = AlarmPolicy()
    for layer in ("gbt", "gbt_self", "gnn", "self"):  # the rules judge: the alarm does not hang on a model
        s.engine.chain.layers[layer].live = False  # every anomalous evaluation is the alarm, no guard window
    s._features.update = lambda *a, **k: np.asarray(bad)  # noqa: SLF001 - a node black-holing transit
    await s.tick()
    alarms = s.alarms()
    assert alarms and alarms[0]["cleared"] is None
    return alarms[0]["id"]


async def test_an_operators_verdict_is_written_before_it_returns_and_survives_a_restart(tmp_path):
    s = svc.create_service({"interval_s": 3600, "seed": 1})
    ctx = _ctx(tmp_path)
    await s.start(ctx)
    await s.wait_loaded()
    try:
        sub = ctx.bus.subscribe()
        aid = await _with_alarm(s)
        assert await s.store_feedback(aid, False) is True
        assert await s.store_feedback(aid + 1000, True) is False
        saved = json.loads((tmp_path / "anomaly" / "observe.json").read_text())
        assert [a for a in saved["alarms"] if a[0] == aid][0][3:] == [False, "operator"]
        assert await s.store_fault(0.0, 1.0, "incident") is False  # long ago: a missed fault
        assert json.loads((tmp_path / "anomaly" / "observe.json").read_text())["faults"] == [[0.0, 1.0, False]]
        assert s.status()["observe"]["precision"] == 0.0 and s.status()["observe"]["recall"] == 0.0
        assert "anomaly" in {e.topic for e in iter(sub.get_nowait, None)}
    finally:
        await s.stop()
    s2 = svc.create_service({"interval_s": 3600})
    await s2.start(_ctx(tmp_path))
    await s2.wait_loaded()
    try:
        assert s2.alarms()[0]["fault"] is False and s2.status()["observe"]["faults"] == 1
    finally:
        await s2.stop()


async def test_a_verdict_that_cannot_be_written_is_not_kept(tmp_path, monkeypatch):
    import errno

    s = svc.create_service({"interval_s": 3600, "seed": 1})
    await s.start(_ctx(tmp_path))
    await s.wait_loaded()
    try:
        aid = await _with_alarm(s)

        def full(*a, **k):
            raise OSError(errno.ENOSPC, "full")

        monkeypatch.setattr(svc, "write_atomic", full)
        with pytest.raises(OSError):
            await s.store_feedback(aid, True)
        with pytest.raises(OSError):
            await s.store_fault(0.0, 1.0)
        st = s.status()["observe"]
        assert s.alarms()[0]["fault"] is None and st["outcomes"] == 0 and st["faults"] == 0
        assert s.alarms()[0]["id"] == aid and st["predictions"] == 1
        monkeypatch.undo()
        assert await s.store_feedback(aid, True)
    finally:
        await s.stop()


class _Clock:
    """The service module's `time` with a wall clock the test sets (monotonic stays real)."""

    def __init__(self, wall: float) -> None:
        self.wall = wall

    def time(self) -> float:
        return self.wall

    def __getattr__(self, name: str):
        return getattr(time, name)


async def test_federated_rounds_follow_the_wall_clock_schedule_and_updates_go_on_the_bus(tmp_path, monkeypatch):
    from x0node.anomaly.federated import Update, initial_params

    clock = _Clock(6000.0 + 10)  # round 100 of 60 s
    monkeypatch.setattr(svc, "time", clock)
    ctx = _ctx(tmp_path)
    s = svc.create_service({"interval_s": 3600, "seed": 1, "federated": True, "federated_round_s": 60})
    await s.start(ctx)
    await s.wait_loaded()
    try:
        assert s.engine.federation is not None and s.status()["federated"]["round"] == 0
        up = Update(100, tuple(float(v) for v in initial_params()), 10)
        calls = []
        real = s.engine.federated_step
        s.engine.federated_step = lambda now, wall, rng: calls.append(wall) or real(now, wall, rng) or up
        sub = ctx.bus.subscribe({svc.FEDERATED_TOPIC})
        await s.tick()  # every tick steps the schedule with the wall clock
        (item,) = list(iter(sub.get_nowait, None))
        assert calls == [6010.0] and item.event.update == up and item.event.node_id == "me"
        assert s.status()["federated"]["round"] == 100  # the schedule's round, not a count of ticks
        clock.wall = 6000.0 + 70
        await s.tick()
        assert calls == [6010.0, 6070.0] and s.status()["federated"]["round"] == 101
        assert s.offer_update("me", up, 1) == "bad_params"  # never its own
    finally:
        await s.stop()
    off = svc.create_service({"interval_s": 3600})
    await off.start(_ctx(tmp_path))
    await off.wait_loaded()
    try:
        assert off.engine.federation is None and off.offer_update("peer", None, 1) == "disabled"
    finally:
        await off.stop()


async def test_federated_state_is_saved_at_each_round_and_restored(tmp_path, caplog, monkeypatch):
    from x0node.anomaly.federated import Update, initial_params

    clock = _Clock(6000.0 + 10)  # round 100 of 60 s
    monkeypatch.setattr(svc, "time", clock)
    up = Update(100, tuple(float(v) for v in initial_params()), 10)
    s = svc.create_service({"interval_s": 3600, "seed": 1, "federated": True, "federated_round_s": 60})
    await s.start(_ctx(tmp_path))
    await s.wait_loaded()
    try:
        assert s.offer_update("peer", up, 7) is None
        await s.tick()  # enters round 100 (nothing labelled here: no update of its own)
        assert json.loads((tmp_path / "anomaly" / "federated.json").read_text())["round"] == 100
        assert s.offer_update("peer", Update(100, up.params, 11), 8) is None  # newer: replaces the held one
        await s.tick()  # the same round: saved because an update was taken (its sequence number on disk)
        assert json.loads((tmp_path / "anomaly" / "federated.json").read_text())["last"] == {b"peer".hex(): [100, 8]}
        clock.wall = 6000.0 + 61
        with caplog.at_level("INFO", logger="x0node.anomaly"):
            await s.tick()  # round 100 ended: closed with the peer's update, state written
        saved = json.loads((tmp_path / "anomaly" / "federated.json").read_text())
        assert saved["round"] == 101 and saved["closed_round"] == 100 and saved["last"] == {b"peer".hex(): [100, 8]}
        # the closed round is one log line: how many updates and whose
        assert "anomaly federated round 100 closed: 1 updates averaged (peers: peer), head in use: False" in caplog.text
    finally:
        await s.stop()
    s2 = svc.create_service({"interval_s": 3600, "federated": True, "federated_round_s": 60})
    await s2.start(_ctx(tmp_path))
    await s2.wait_loaded()
    try:
        assert s2.engine.federation.round == 101 and s2.offer_update("peer", up, 8) == "replay"
        assert s2.offer_update("peer", Update(101, up.params, 10), 9) is None
    finally:
        await s2.stop()
    (tmp_path / "anomaly" / "federated.json").write_text('{"round": "x"}')
    s3 = svc.create_service({"interval_s": 3600, "federated": True})
    await s3.start(_ctx(tmp_path))
    await s3.wait_loaded()
    try:
        assert s3.engine.federation.round == 0  # malformed: a fresh federation
    finally:
        await s3.stop()
