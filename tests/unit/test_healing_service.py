from __future__ import annotations

import asyncio
import dataclasses
import http.server
import threading

import pytest
from prometheus_client import CollectorRegistry

from x0node.daemon.bus import EventBus
from x0node.daemon.config import ConfigError
from x0node.daemon.services import ServiceContext
from x0node.healing import service as svc

ME, A, B = "aa" * 8, "bb" * 8, "cc" * 8


class Router:
    """The routing core's read model (x0node/proto/views.py), for two neighbours."""

    def neighbours(self):
        from x0node.proto.views import NeighbourView

        return (NeighbourView(A, "eth1", "fe80::a", "up", 1.0, 0.0, None, "good", 10, 0.1, 9.0),
                NeighbourView(B, "eth2", "fe80::b", "up", 1.0, 0.0, None, "good", 10, 0.1, 9.0))

    def routes(self):
        from x0node.proto.views import RouteView

        return (RouteView("fd00::b/128", "fe80::a", "eth1", 10, A),)

    def topology(self):
        from x0node.proto.views import LinkView, NodeView, TopologyView

        return TopologyView((NodeView(ME, "fd00::1", True, True, (), None, None, None),
                             NodeView(A, "fd00::a", False, True, (), None, 10, 1)), (LinkView(ME, A, 10, "good"),))

    def stats(self):
        from x0node.proto.views import DropsView, InterfaceView, StatsView

        return StatsView(ME, "fd00::1", (InterfaceView("eth1", True, 0), InterfaceView("eth2", True, 0)), 2, 2, 2, 1,
                         DropsView({}, {}), {}, 0, None, 0.0, 0, {})


class Manager:
    def __init__(self):
        self.healthy = False
        self.running = {"telemetry": object()}
        self.restarts = 0

    def status(self):
        tel = {"running": True} if self.healthy else {"running": True, "error": "RuntimeError: stuck"}
        return {"telemetry": tel, "healing": {"running": True}}

    async def restart(self, name, ctx):
        self.restarts += 1
        self.healthy = True


class Clock:
    """Stands in for the time module inside the service: monotonic time moves only when told."""

    def __init__(self):
        self.t = 1000.0

    def monotonic(self):
        return self.t

    def perf_counter(self):
        return self.t

    def time(self):
        return 1.7e9 + self.t

    def time_ns(self):
        return int(self.time() * 1e9)


@dataclasses.dataclass(frozen=True)
class AnomalyDetected:
    node_id: str
    score: float
    actionable: bool
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class NeighbourDown:
    ifname: str
    node_id: str
    reason: str = "link_down"


def _ctx(tmp_path, manager):
    return ServiceContext(router=Router(), config=None, data_dir=tmp_path, registry=CollectorRegistry(), bus=EventBus(),
                          interfaces=["eth1", "eth2"], node_id=ME, mesh_addr="fd00::1", provider=None,
                          extras={"services": manager})


CONF = {"interval_s": 60, "probes": False, "guard_after_boot_s": 0, "guard_after_start_s": 0, "seed": 1}


def test_validate_config_fills_defaults_and_names_bad_keys():
    out = svc.validate_config({})
    assert out["mode"] == "observe" and out["interval_s"] == 0.5 and out["disruptive_per_hour"] == 3
    assert out["guard_after_boot_s"] == 600.0 and out["otlp_endpoint"] == "" and out["probes"] is True
    for bad, key in (({"mode": "auto"}, "mode"), ({"interval_s": 0}, "interval_s"), ({"nope": 1}, "nope"),
                     ({"disruptive_per_hour": 1.5}, "disruptive_per_hour"), ({"probes": "yes"}, "probes"),
                     ({"otlp_endpoint": "collector:4318"}, "otlp_endpoint"), ({"seed": True}, "seed"),
                     ({"min_confidence": 2}, "min_confidence"), ({"span_buffer": 1}, "span_buffer")):
        with pytest.raises(ConfigError) as ei:
            svc.validate_config(bad)
        assert ei.value.key == key


async def _ticks(s, clock, n, step=1.0):
    for _ in range(n):
        clock.t += step
        await s.tick()
        await asyncio.sleep(0)


async def test_observe_mode_records_then_the_operator_switch_lets_it_act(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(svc, "time", clock)
    manager = Manager()
    ctx = _ctx(tmp_path, manager)
    sub = ctx.bus.subscribe({"healing"})
    s = svc.create_service(CONF)
    await s.start(ctx)
    try:
        assert ctx.extras["healing"] is s
        await _ticks(s, clock, 6)
        st = s.status()
        assert st["mode"] == "observe" and st["open"][0]["cause"].startswith("service_hung@service:telemetry")
        assert manager.restarts == 0
        kinds = [type(e.event).__name__ for e in iter(sub.get_nowait, None)]
        assert kinds[:3] == ["IncidentOpened", "Diagnosed", "Decided"]
        s.set_mode("active")
        await _ticks(s, clock, 3)
        await asyncio.sleep(0.05)  # the restart runs in its own task
        assert manager.restarts == 1
        await _ticks(s, clock, 15)
        incidents = await s.incidents()
        assert incidents[0]["outcome"] == "recovered" and incidents[0]["action"] == "restart_subsystem"
        timeline = [e["type"] for e in await s.timeline(incidents[0]["id"])]
        assert "ModeChanged" not in timeline and timeline.count("Decided") >= 2 and "Verified" in timeline
        reg = ctx.registry
        assert reg.get_sample_value("self_healing_events_total",
                                    {"root_cause": "service_hung", "action": "restart_subsystem", "success": "true"}) == 1
        assert reg.get_sample_value("self_healing_mttr_seconds_count", {"recovery_type": "restart_subsystem"}) == 1
        for phase in ("monitor", "analyze", "verify", "plan", "execute", "knowledge", "cycle"):
            assert reg.get_sample_value("mape_k_cycle_duration_seconds_count", {"phase": phase}) == 24
        spans = s.recent_spans(500)
        assert {sp["name"] for sp in spans} >= {"mape_k_cycle", "monitor", "plan"}
        root = next(sp for sp in spans if sp["name"] == "mape_k_cycle")
        assert root["attributes"]["mode"] in ("observe", "active") and root["parent_id"] is None
        assert s.status()["tick_errors"] == 0 and s.status()["store_errors"] == 0
    finally:
        await s.stop()
    # learning and ids survive a restart of the service
    s2 = svc.create_service(CONF)
    await s2.start(_ctx(tmp_path, Manager()))
    try:
        from x0node.healing.actions import ActionKind
        from x0node.healing.analyze import FaultKind

        assert s2.engine.knowledge.stats(FaultKind.SERVICE_HUNG, ActionKind.RESTART_SUBSYSTEM) == (1, 1)
        assert s2.engine._next_incident > incidents[0]["id"]
    finally:
        await s2.stop()


async def test_bus_events_become_verdicts_transitions_and_metrics(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(svc, "time", clock)
    ctx = _ctx(tmp_path, Manager())
    s = svc.create_service(CONF)
    await s.start(ctx)
    try:
        ctx.bus.publish("anomaly", AnomalyDetected(A, 4.2, True, ("loss",)))
        ctx.bus.publish("core", NeighbourDown("eth1", A.upper()))
        ctx.bus.publish("core", NeighbourDown("eth1", A, "dead"))
        from x0node.anomaly.service import FeatureVector

        ctx.bus.publish("anomaly.features", FeatureVector(ME, {"cpu_util": 0.3, "mem_util": 0.5, "fwd_ratio": 1.0}, 0.0))
        ctx.bus.publish("anomaly", "not an event")
        await asyncio.sleep(0.01)
        snap = s.snapshot(clock.t)
        assert [v.node_id for v in snap.verdicts] == [A] and snap.verdicts[0].actionable
        assert {n.node_id: n.transitions for n in snap.routing.neighbours}[A] == 2
        assert {n.node_id: n.timeouts for n in snap.routing.neighbours}[A] == 1  # the hello timeout, not the carrier
        assert snap.metrics_of(ME).cpu_util == 0.3
        assert [x.name for x in snap.services] == ["telemetry"]  # not healing itself
    finally:
        await s.stop()


async def test_spans_go_to_an_otlp_collector_when_one_is_configured(tmp_path):
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
        s = svc.create_service({**CONF, "otlp_endpoint": endpoint})
        await s.start(_ctx(tmp_path, Manager()))
        await s.tick()
        await s.stop()  # shuts the batch processor down, which flushes
    finally:
        server.shutdown()
        thread.join()
    assert got and got[0][0] == "/v1/traces" and got[0][1] == "application/x-protobuf"
    assert b"mape_k_cycle" in b"".join(body for _, _, body in got)


def test_read_router_tolerates_a_failing_view():
    class Broken(Router):
        def routes(self):
            raise RuntimeError("view not available")

    obs = svc.read_router(Broken(), ME, {})
    assert obs.routes == () and len(obs.neighbours) == 2


def test_probe_counters_become_prometheus_counters_by_delta():
    from x0node.healing.metrics import HealingMetrics

    reg = CollectorRegistry()
    m = HealingMetrics(reg)
    m.probe_counters({"sent": 5, "answered": 4, "timed_out": 1})
    m.probe_counters({"sent": 9, "answered": 8, "timed_out": 1})
    assert reg.get_sample_value("x0_healing_probes_total", {"outcome": "sent"}) == 9
    assert reg.get_sample_value("x0_healing_probes_total", {"outcome": "timed_out"}) == 1
    assert HealingMetrics(reg).ok is False  # a second registration in one registry is tolerated, not doubled


class Coord:
    """The coordination service's lease calls (x0node/coord/service.py), granting everything."""

    me_hex = ME

    def __init__(self):
        self.asked, self.released = [], []

    async def lease(self, resource, ttl_s, lease_id, reason=""):
        self.asked.append((resource, lease_id))
        return {"granted": True, "valid_until": 1e12, "detail": "ok"}

    async def lease_release(self, resource, lease_id):
        self.released.append((resource, lease_id))
        return {"ok": True}


async def test_leases_go_to_the_mesh_wide_provider_when_coordination_runs(tmp_path, monkeypatch):
    from x0node.healing.safety import LeaseRelease, LeaseRequest

    clock = Clock()
    monkeypatch.setattr(svc, "time", clock)
    ctx = _ctx(tmp_path, Manager())
    s = svc.create_service(CONF)
    await s.start(ctx)
    coord = Coord()
    ctx.extras["coord"] = coord  # coordination starts after healing: the provider is chosen at first use
    answers = []
    monkeypatch.setattr(s.engine, "lease_answer", lambda ans, now: answers.append(ans))
    try:
        assert s.status()["lease_provider"] is None
        await s.tick()
        assert s.status()["lease_provider"] == "mesh"
        req = LeaseRequest(7, f"disrupt/{ME}", ME, 60.0, "reset eth1")
        assert s._lease_provider().request(req, clock.t) is None  # answered after the Raft round trip
        await asyncio.sleep(0.01)
        assert coord.asked == [(f"disrupt/{ME}", 7)] and answers[0].granted and answers[0].lease_id == 7
        s._lease_provider().release(LeaseRelease(7, f"disrupt/{ME}", ME), clock.t)
        await asyncio.sleep(0.01)
        assert coord.released == [(f"disrupt/{ME}", 7)] and s.status()["lease_provider"] == "mesh"
    finally:
        await s.stop()
    # without [coord]: the local provider, answered at once
    s2 = svc.create_service(CONF)
    await s2.start(_ctx(tmp_path, Manager()))
    try:
        ans = s2._lease_provider().request(LeaseRequest(8, f"disrupt/{ME}", ME, 60.0, "r"), 0.0)
        assert ans.granted and s2.status()["lease_provider"] == "local"
        assert not s2._lease_provider().request(LeaseRequest(9, f"disrupt/{A}", ME, 60.0, "r"), 0.0).granted
    finally:
        await s2.stop()
