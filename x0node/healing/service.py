"""The `[healing]` daemon service: runs the MAPE-K engine on a jittered timer and wires its adapters.

Rules and invariants:
- Config (section `[healing]`, all keys optional, validated by `validate_config`): see DEFAULTS and
  docs/healing.md. It starts in observe mode unless `mode = "active"`.
- One timer task runs a cycle every `interval_s` (+-25 % jitter), or sooner when a pending symptom
  is due to be raised (Monitor.next_raise_s, at least MIN_CYCLE_GAP_S apart): read the routing core through
  `read_router` (the routing core's read model: `neighbours()`, `routes()`, `topology()`, `stats()`),
  build a Snapshot with the probe results, the anomaly verdicts and this node's features (both read
  from the bus), the other services' health and the update flag; step the engine; hand its requests
  to the adapters; publish its events on the bus (topic "healing"); write its records to the sqlite
  store in a worker thread; observe the cycle in Prometheus and as OpenTelemetry spans.
- The probe scheduler owns one more timer task (probe.py rules bound its rate); answers come from
  the ICMPv6 adapter. Probes that cannot be opened (no CAP_NET_RAW) leave the loop running without
  them; `status()` says why.
- Action requests go to the first adapter that supports them (one task each; results come back into
  the engine on the loop): the RoutingActuator (the routing core's command API: penalties, drains,
  steering, the sick flag; renewed every cycle, lifted when the service stops) and the LocalActuator
  (interfaces, services, watchdog, reboot). Lease requests go to the mesh-wide provider
  (x0node/coord/leases.MeshLeases on the Raft group) when the `[coord]` service runs on this node — its
  answer comes back later through `_lease_answered` — and otherwise to LocalLeases, answered at once
  (one disruptive action of ours at a time; it cannot see the neighbours', which is why `[coord]`
  should run wherever disruptive actions are allowed). The provider is chosen at the first cycle or
  request, whichever comes first (services start in order; coordination starts after healing), and
  kept. Nothing raises out of the loop: a failing cycle is logged and counted in `tick_errors`.
- Entry points for the web UI and other services: `set_mode`, `feedback`, `set_update_in_progress`,
  `incidents`, `incident`, `timeline`, `recent_spans` (ctx.extras["healing"] is this service);
  `switch_mode` and `store_feedback` are the operator's: the switch is saved in the knowledge store
  first (it then holds across restarts, over the config's `mode`) and feedback is written before they
  return.
- The engine's clock is `time.monotonic()`; on Linux it counts from boot, so the boot guard window
  uses boot_s = 0.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from x0node.healing.observation import (
    NodeMetricsObs,
    ParseDrops,
    RoutingObs,
    ServiceObs,
    Snapshot,
    VerdictObs,
    metrics_from_features,
    routing_from_views,
)
from x0node.proto.timers import jittered

log = logging.getLogger("x0node.healing")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "mode": "observe",  # observe | active
    "auto_activate": True,  # observe -> active once observe-mode decisions prove right
    "min_observe_days": 7.0,
    "min_decisions": 50,
    "interval_s": 0.5,
    "disruptive_per_hour": 3,
    "guard_after_boot_s": 600.0,
    "guard_after_start_s": 60.0,
    "min_confidence": 0.3,
    "mitigation_hold_s": 30.0,  # load-dependent faults (a congested link: quiet once drained)
    "lift_hold_s": 3.0,  # a mitigation is lifted once its evidence has been clean this long
    "probes": True,
    "cpu_source": "auto",  # auto | host | cgroup: where this node's CPU is read (cpu_io.py)
    "otlp_endpoint": "",
    "span_buffer": 512,
    "seed": None,
}
STATE_DIR = "healing"
HISTORY_WINDOW_S = 24 * 3600.0
PEER_METRICS_TTL_S = 120.0
MIN_CYCLE_GAP_S = 0.1  # an early cycle for a pending symptom comes no sooner than this after the last
MAX_TRANSITION_KEYS = 1024
TIMEOUT_REASONS = frozenset({"dead", "lost_us"})  # NeighbourDown by lost hellos, the carrier up (not link_down)
MAX_PEER_METRICS = 256
MAX_UNWRITTEN = 4096
SERVICE_TOPICS = frozenset({"core", "anomaly", "anomaly.features"})
OPERATOR_MODE_KEY = "operator_mode"
OPERATOR_MODES = ("observe", "active", "auto")


def validate_config(section: Mapping[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    out = dict(DEFAULTS)
    for key, value in section.items():
        if key not in DEFAULTS:
            raise ConfigError(key, "unknown key")
        out[key] = value

    def number(key: str, lo: float, hi: float) -> None:
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ConfigError(key, f"expected a number in [{lo:g}, {hi:g}]")
        out[key] = float(v)

    def integer(key: str, lo: int, hi: int) -> None:
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(key, f"expected an integer in [{lo}, {hi}]")

    if out["cpu_source"] not in ("auto", "host", "cgroup"):
        raise ConfigError("cpu_source", 'expected "auto", "host" or "cgroup"')
    for key in ("enabled", "auto_activate", "probes"):
        if not isinstance(out[key], bool):
            raise ConfigError(key, "expected true or false")
    if out["mode"] not in ("observe", "active"):
        raise ConfigError("mode", 'expected "observe" or "active"')
    number("interval_s", 0.1, 60.0)
    number("min_observe_days", 0.0, 365.0)
    integer("min_decisions", 1, 100_000)
    integer("disruptive_per_hour", 0, 60)
    number("guard_after_boot_s", 0.0, 86400.0)
    number("guard_after_start_s", 0.0, 86400.0)
    number("min_confidence", 0.0, 1.0)
    number("mitigation_hold_s", 1.0, 86400.0)
    number("lift_hold_s", 0.0, 86400.0)
    integer("span_buffer", 16, 10_000)
    ep = out["otlp_endpoint"]
    if not isinstance(ep, str) or len(ep) > 2048 or (ep and not ep.startswith(("http://", "https://"))):
        raise ConfigError("otlp_endpoint", 'expected "" or an http(s):// URL of an OTLP/HTTP traces endpoint')
    if out["seed"] is not None and (isinstance(out["seed"], bool) or not isinstance(out["seed"], int)):
        raise ConfigError("seed", "expected an integer")
    return out


def create_service(section: Mapping[str, Any]) -> HealingService:
    return HealingService(validate_config(section))


def _call(obj: Any, name: str, default: Any) -> Any:
    fn = getattr(obj, name, None)
    if fn is None:
        return default
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a failing view reads as empty
        log.debug("router.%s() failed", name, exc_info=True)
        return default


def read_router(router: Any, self_id: str, transitions: Mapping[tuple[str, str], int],
                drops: ParseDrops | None = None, timeouts: Mapping[tuple[str, str], int] | None = None) -> RoutingObs:
    """The routing core as the healing loop sees it: its read model, mapped onto RoutingObs. A view that
    fails reads as empty (and its entries as dropped), so a broken view never stops the loop."""
    obs, _ = routing_from_views(self_id, _call(router, "neighbours", ()), _call(router, "routes", ()),
                                _call(router, "topology", None), _call(router, "stats", None), transitions, drops,
                                timeouts)
    return obs


class HealingService:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.engine: Any = None
        self.store: Any = None
        self.metrics: Any = None
        self.tracer: Any = None
        self.actuator: Any = None
        self.routing_actuator: Any = None
        self.leases: Any = None
        self.lease_provider = ""  # "mesh" | "local" once chosen
        self.scheduler: Any = None
        self.prober: Any = None
        self.probes_off: str | None = None
        self._ctx: Any = None
        # timer jitter, probe destinations, backoff jitter: not secrets (probe tokens come from os.urandom)
        self._rng = random.Random(config["seed"])  # nosec B311
        self._tasks: list[asyncio.Task[None]] = []
        self._actions: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self._transitions: dict[tuple[str, str], int] = {}
        self._timeouts: dict[tuple[str, str], int] = {}  # downs by hello timeout (TIMEOUT_REASONS)
        self._verdicts: dict[str, VerdictObs] = {}
        self._metrics: dict[str, NodeMetricsObs] = {}
        self._updating = False
        self._unwritten: list[Any] = []
        self.parse_drops = ParseDrops()
        self.tick_errors = 0
        self.store_errors = 0
        self.last_reboot: dict[str, Any] | None = None
        self.cpu: Any = None  # cpu_io.NodeCpu

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self, ctx: Any) -> None:
        from x0node.healing.actuator import (
            REBOOT_FILE,
            Actuators,
            LocalActuator,
            RoutingActuator,
            past_reboots,
            read_reboots,
        )
        from x0node.healing.engine import EngineConfig, HealingEngine
        from x0node.healing.knowledge import Knowledge
        from x0node.healing.metrics import HealingMetrics
        from x0node.healing.safety import GuardConfig, Mode, ModeConfig
        from x0node.healing.store import FILE_NAME, SqliteStore
        from x0node.healing.tracing import CycleTracer

        cfg = self.config
        self._ctx = ctx
        state_dir = ctx.data_dir / STATE_DIR
        self.store = await asyncio.to_thread(SqliteStore, state_dir / FILE_NAME)
        knowledge = Knowledge()
        knowledge.load(await asyncio.to_thread(self.store.load_stats))
        history = await asyncio.to_thread(self.store.recent_actions, HISTORY_WINDOW_S)
        reboots = state_dir / REBOOT_FILE
        history += past_reboots(reboots, HISTORY_WINDOW_S, time.time())
        kept = read_reboots(reboots)
        self.last_reboot = kept[-1] if kept else None
        first_incident, first_request = await asyncio.to_thread(self.store.next_ids)
        econf = EngineConfig(
            mode=Mode(cfg["mode"]),
            mode_config=ModeConfig(auto_activate=cfg["auto_activate"], min_decisions=cfg["min_decisions"],
                                   min_observe_s=cfg["min_observe_days"] * 86400.0),
            guard=GuardConfig(after_boot_s=cfg["guard_after_boot_s"], after_start_s=cfg["guard_after_start_s"]),
            disruptive_per_hour=cfg["disruptive_per_hour"],
            min_confidence=cfg["min_confidence"],
            mitigation_hold_s=cfg["mitigation_hold_s"],
            lift_hold_s=cfg["lift_hold_s"],
        )
        from x0node.healing.cpu_io import NodeCpu

        self.cpu = await asyncio.to_thread(NodeCpu, cfg["cpu_source"])
        self.engine = HealingEngine(ctx.node_id, econf, self._rng, time.monotonic(), knowledge, history,
                                    first_incident, first_request)
        self.metrics = HealingMetrics(ctx.registry)
        self.tracer = CycleTracer(ctx.node_id, cfg["span_buffer"], cfg["otlp_endpoint"])
        extras = getattr(ctx, "extras", {}) or {}
        self.routing_actuator = RoutingActuator(ctx.router, ctx.wake)
        self.actuator = Actuators(self.routing_actuator, LocalActuator(state_dir, ctx.interfaces,
                                                                       extras.get("services"), ctx,
                                                                       extras.get("watchdog")))
        self.leases = None  # chosen at the first cycle or lease request (_lease_provider)
        self._sub = ctx.bus.subscribe(set(SERVICE_TOPICS))
        chosen = await asyncio.to_thread(self.store.get_setting, OPERATOR_MODE_KEY)
        if chosen in OPERATOR_MODES:
            self.set_mode(None if chosen == "auto" else chosen, "operator (kept across the restart)")
        extras["healing"] = self
        loop = asyncio.get_running_loop()
        if cfg["probes"]:
            self._open_probes(loop)
        self._tasks = [loop.create_task(self._run(), name="healing"), loop.create_task(self._read_bus(),
                                                                                       name="healing-bus")]
        if self.prober is not None:
            self._tasks.append(loop.create_task(self._probe_loop(), name="healing-probes"))
        log.info("healing service started mode=%s probes=%s otlp=%s", self.engine.mode.value,
                 self.prober is not None, bool(cfg["otlp_endpoint"]))

    def _open_probes(self, loop: asyncio.AbstractEventLoop) -> None:
        from x0node.healing.probe import ProbeScheduler
        from x0node.healing.probe_io import IcmpProber

        self.scheduler = ProbeScheduler(self._ctx.node_id, self._rng, time.monotonic(), self._ctx.mesh_addr)
        try:
            prober = IcmpProber(self._ctx.mesh_addr, self.scheduler.answer)
            prober.open(loop)
        except (OSError, ValueError) as exc:
            self.probes_off = f"{type(exc).__name__}: {exc}"
            self.scheduler = None
            log.warning("data-plane probes off: %s", self.probes_off)
            return
        self.prober = prober

    async def stop(self) -> None:
        for task in self._tasks + list(self._actions):
            task.cancel()
        for task in self._tasks + list(self._actions):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self._actions = [], set()
        if self.routing_actuator is not None:
            self.routing_actuator.lift_all()  # the engine's record of them ends here
        if self._sub is not None:
            self._sub.close()
        if self.prober is not None:
            self.prober.close()
        if self.engine is not None and self.store is not None:
            with contextlib.suppress(Exception):
                await self._write_records()
        if self.store is not None:
            self.store.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)

    def status(self) -> dict[str, Any]:
        if self.engine is None:
            return {"running": False}
        st = self.engine.status()
        st.update({
            "tick_errors": self.tick_errors,
            "store_errors": self.store_errors,
            "probes": self.scheduler.counters.as_dict() if self.scheduler is not None else None,
            "probe_drops": dict(self.prober.drops) if self.prober is not None else {},
            "probes_off": self.probes_off,
            "spans": self.tracer.ring.exported if self.tracer is not None else 0,
            "otlp": bool(self.config["otlp_endpoint"]),
            "last_reboot": self.last_reboot,
            "parse_drops": dict(self.parse_drops.counts),
            "cpu": {"source": self.cpu.source, "group": str(self.cpu.group) if self.cpu.group else None,
                    "errors": self.cpu.errors} if self.cpu is not None else None,
            "update_in_progress": self._updating,
            "lease_provider": self.lease_provider or None,
            "routing_commands": self.routing_commands(),
        })
        return st

    def routing_commands(self) -> list[dict[str, Any]]:
        """The routing core's commands in force, as its read model shows them (views.CommandView)."""
        import dataclasses

        views = _call(getattr(self._ctx, "router", None), "commands_in_force", ())
        return [dataclasses.asdict(v) for v in views if dataclasses.is_dataclass(v)][:64]

    # ---- entry points ---------------------------------------------------------------------------
    def set_mode(self, mode: str | None, reason: str = "operator") -> None:
        from x0node.healing.safety import Mode

        if mode not in (None, "observe", "active"):
            raise ValueError('mode must be "observe", "active" or None (automatic)')
        self.engine.set_mode(Mode(mode) if mode else None, time.monotonic(), reason)
        self._publish_events()

    def feedback(self, incident_id: int, right: bool, note: str = "") -> None:
        self.engine.feedback(int(incident_id), bool(right), str(note), time.monotonic())
        self._publish_events()

    async def switch_mode(self, mode: str) -> None:
        """The operator's switch: "observe", "active" or "auto" (the automatic promotion). Saved first, so a
        switch that could not be stored changes nothing (the error propagates)."""
        if mode not in OPERATOR_MODES:
            raise ValueError('mode must be "observe", "active" or "auto"')
        await asyncio.to_thread(self.store.set_setting, OPERATOR_MODE_KEY, mode)
        self.set_mode(None if mode == "auto" else mode)

    async def store_feedback(self, incident_id: int, right: bool, note: str = "") -> None:
        """Operator feedback on an incident, written to the knowledge store before returning."""
        self.feedback(incident_id, right, note)
        await self._write_records()
        if self._unwritten:  # not saved: say so, and never write it later behind the operator's back
            self._unwritten = [r for r in self._unwritten
                               if not (type(r).__name__ == "Feedback" and getattr(r, "incident_id", None) == incident_id)]
            raise OSError("the knowledge store could not be written")

    async def incident(self, incident_id: int) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.store.incident, incident_id)

    def set_update_in_progress(self, active: bool) -> None:
        self._updating = bool(active)

    async def incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.incidents, limit)

    async def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.timeline, incident_id)

    def recent_spans(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.tracer.ring.recent(limit) if self.tracer is not None else []

    # ---- the cycle ------------------------------------------------------------------------------
    def snapshot(self, now: float) -> Snapshot:
        ctx = self._ctx
        routing = read_router(ctx.router, ctx.node_id, self._transitions, self.parse_drops, self._timeouts)
        if self.scheduler is not None:
            self.scheduler.update(routing, now)
        for nid in [k for k, m in self._metrics.items() if now - m.at_s > PEER_METRICS_TTL_S]:
            del self._metrics[nid]
        metrics = dict(self._metrics)
        cpu = self.cpu.read() if self.cpu is not None else None
        if cpu is not None:  # our own group's pressure replaces the host-wide reading of the features
            me = ctx.node_id.lower()
            mine = metrics.get(me) or NodeMetricsObs(me)
            metrics[me] = dataclasses.replace(mine, cpu_util=cpu, at_s=now)
        return Snapshot(
            now=now,
            routing=routing,
            metrics=tuple(metrics.values()),
            probes=self.scheduler.results(now) if self.scheduler is not None else (),
            verdicts=tuple(self._verdicts.values()),
            services=self._services(),
            boot_s=0.0,
            update_in_progress=self._updating,
        )

    def _services(self) -> tuple[ServiceObs, ...]:
        manager = (getattr(self._ctx, "extras", {}) or {}).get("services")
        status = _call(manager, "status", {}) if manager is not None else {}
        out = []
        for name, st in sorted(status.items() if isinstance(status, dict) else []):
            if name == "healing" or not isinstance(st, dict):
                continue
            running = st.get("running") is True
            error = st.get("error")
            healthy = running and not error
            out.append(ServiceObs(name, running, healthy, str(error or "")[:200]))
        return tuple(out)

    async def tick(self) -> Any:
        now = time.monotonic()
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        snap = self.snapshot(now)
        report = self.engine.step(snap, clock=time.perf_counter)
        if self.leases is None:
            self._lease_provider()  # every service has started by the first cycle
        self._dispatch(now)
        self.routing_actuator.renew(now)
        self._publish_events()
        await self._write_records()
        total = time.perf_counter() - t0
        self.metrics.cycle_done(report.phases, total, report.open_incidents, report.mode,
                                len(self.engine.executor.mitigations()))
        if self.scheduler is not None:
            self.metrics.probe_counters(self.scheduler.counters.as_dict())
        self.tracer.cycle(start_ns, report.phases, {"symptoms": report.symptoms, "open_incidents": report.open_incidents,
                                                    "requests": report.requests, "mode": report.mode})
        return report

    async def _run(self) -> None:
        interval = self.config["interval_s"]
        while True:
            delay = jittered(interval, self._rng)
            due = self.engine.monitor.next_raise_s()  # a pending symptom is judged when it is due
            if due is not None:
                delay = min(delay, max(MIN_CYCLE_GAP_S, due - time.monotonic()))
            await asyncio.sleep(delay)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must keep running
                self.tick_errors += 1
                log.exception("healing cycle failed")

    def _dispatch(self, now: float) -> None:
        from x0node.healing.actions import ActionRequest, ActionResult
        from x0node.healing.actuator import NO_ADAPTER
        from x0node.healing.safety import LeaseRelease, LeaseRequest

        for item in iter(self.engine.next_request, None):
            if isinstance(item, LeaseRequest):
                answer = self._lease_provider().request(item, now)
                if answer is not None:  # the mesh-wide provider answers later
                    self.engine.lease_answer(answer, now)
            elif isinstance(item, LeaseRelease):
                self._lease_provider().release(item, now)
            elif isinstance(item, ActionRequest):
                if self.actuator.supports(item.action):
                    task = asyncio.get_running_loop().create_task(self._perform(item))
                    self._actions.add(task)
                    task.add_done_callback(self._actions.discard)
                else:
                    self.engine.action_result(ActionResult(item.request_id, False, NO_ADAPTER), now)

    def _lease_provider(self) -> Any:
        if self.leases is None:
            coord = (getattr(self._ctx, "extras", {}) or {}).get("coord")
            if coord is not None and hasattr(coord, "lease"):
                from x0node.coord.leases import MeshLeases

                self.leases, self.lease_provider = MeshLeases(coord, self._lease_answered), "mesh"
            else:
                from x0node.healing.safety import LocalLeases

                self.leases, self.lease_provider = LocalLeases(self._ctx.node_id), "local"
            log.info("healing leases: %s", self.lease_provider)
        return self.leases

    def _lease_answered(self, lease_id: int, granted: bool, detail: str) -> None:
        """The mesh-wide provider's answer (after its Raft round trip)."""
        from x0node.healing.safety import LeaseAnswer

        now = time.monotonic()
        self.engine.lease_answer(LeaseAnswer(int(lease_id), bool(granted), str(detail)[:200]), now)
        self._dispatch(now)
        self._publish_events()

    async def _perform(self, req: Any) -> None:
        result = await self.actuator.perform(req)
        now = time.monotonic()
        self.engine.action_result(result, now)
        self._dispatch(now)
        self._publish_events()

    def _publish_events(self) -> None:
        for ev in iter(self.engine.next_event, None):
            self._ctx.bus.publish("healing", ev)
            self.metrics.event(ev)

    async def _write_records(self) -> None:
        knowledge = self.engine.knowledge
        batch = self._unwritten + list(iter(knowledge.next_record, None))
        self._unwritten = []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.store.write, batch, knowledge.all_stats(), self.engine.executor.next_id)
        except Exception:  # noqa: BLE001 - keep them for the next cycle (bounded)
            self.store_errors += 1
            log.exception("knowledge store write failed")
            self._unwritten = batch[-MAX_UNWRITTEN:]

    # ---- inputs from the bus and the probes -----------------------------------------------------
    async def _read_bus(self) -> None:
        async for item in self._sub:
            try:
                self._on_bus(item.topic, item.event)
            except Exception:  # noqa: BLE001 - one odd event must not stop the reader
                log.debug("healing: bus event not understood", exc_info=True)

    def _on_bus(self, topic: str, ev: Any) -> None:
        kind = type(ev).__name__
        if topic == "core" and kind in ("NeighbourUp", "NeighbourDown"):
            key = (str(ev.ifname), str(ev.node_id).lower())
            if key in self._transitions or len(self._transitions) < MAX_TRANSITION_KEYS:
                self._transitions[key] = self._transitions.get(key, 0) + 1
                if kind == "NeighbourDown" and getattr(ev, "reason", "") in TIMEOUT_REASONS:
                    self._timeouts[key] = self._timeouts.get(key, 0) + 1
        elif topic == "anomaly" and kind == "AnomalyDetected":
            if len(self._verdicts) < MAX_PEER_METRICS or ev.node_id in self._verdicts:
                self._verdicts[str(ev.node_id)] = VerdictObs(str(ev.node_id), float(ev.score), bool(ev.actionable),
                                                             tuple(str(r) for r in ev.reasons)[:8], time.monotonic())
        elif topic == "anomaly" and kind == "AnomalyCleared":
            self._verdicts.pop(str(ev.node_id), None)
        elif topic == "anomaly.features" and kind == "FeatureVector":
            nid = str(ev.node_id).lower()
            if isinstance(ev.features, dict) and (nid in self._metrics or len(self._metrics) < MAX_PEER_METRICS):
                self._metrics[nid] = metrics_from_features(nid, ev.features, time.monotonic())

    async def _probe_loop(self) -> None:
        sched, prober = self.scheduler, self.prober
        while True:
            prober.drain()  # answers that waited while the loop was busy count before anything times out
            now = time.monotonic()
            for req in sched.poll(now):
                if await prober.send(req) is not None:
                    sched.cancel(req.probe_id)
            due = sched.next_timer()
            await asyncio.sleep(0.5 if due is None else min(1.0, max(0.005, due - time.monotonic())))
