"""The `[anomaly]` daemon service: runs the anomaly engine on a jittered timer (I/O adapter).

Rules and invariants:
- Config keys (section `[anomaly]`, all optional): `interval_s` (1..3600, default 30), `model_dir`
  (default: auto, see bundle.py), `target_fpr` (0 < x < 0.5, default 0.01), `peer_ttl_s` (default
  4 x interval), `observe_days` (>= 0, default 14), `min_outcomes` (default 200), `override`
  ("", "active" or "observe"; "" = none), `drift_psi` (> 0, default 0.25), `seed` (int, optional),
  `record` (bool), `cgroup` ("" host-wide CPU/memory, "own" or "parent": the node's cgroup v1 groups,
  resolved once at start from /proc/self/cgroup; host-wide, with a warning, when none is mounted),
  `federated` (bool, default false: federated fine-tuning of the final layer, federated.py; off by
  default because on the real-fault protocol it did not improve on the shipped detector, docs/anomaly.md)
  and `federated_round_s` (60..86400, default 3600: the length of one round of the shared schedule).
- With `federated = true`, every tick steps the engine's round schedule with the wall clock
  (`federated_step`: round k covers wall-clock [k*R, (k+1)*R), R = `federated_round_s`, so every node
  is in the same round): the first tick after a round ended closes it, the first tick in a round
  trains this node's update for it and, when it has labelled rows, publishes it (`FederatedUpdate`,
  topic "anomaly.federated") for the state layer to sign and spread; the state layer hands peers'
  updates to `offer_update` with their records' versions (the signed sequence numbers) and the wall
  clock. At a tick where a round closed or began, or after a peer's update was taken, the
  federation's state is written to `<data_dir>/anomaly/federated.json` (temp + fsync + rename; again
  at stop; restored at start; a malformed file gives a fresh federation, with a warning).
  Each round closed is logged at INFO (round, updates averaged, the peers' origins, head in use).
- Each tick asks the router for this node's own worst loop lag since the previous tick
  (`loop_lag_peak`) and hands it to the collector, which measures no control-packet loss in a tick
  the node itself stalled >= OWN_STALL_S (features version 4); with `record` it is in every tick
  (`"stall"`).
- start() returns at once (the daemon's ready line does not wait for the model): a background task
  loads the bundle and LiteRT in a worker thread (imports stay lazy until then), restores
  the persisted observe-mode state, the node's own drift reference (drift.json) and the normal-row
  buffer from `<data_dir>/anomaly/`, and then
  starts one timer task (plus a sampler that reads `neighbours()` every LINK_SAMPLE_INTERVAL_S so
  link loss and RTT are averaged over the whole interval and lost neighbours are followed between
  ticks). Each tick (period jittered +-25%): read kernel counters
  (collector.read_counters, in a worker thread; plus XDP drops from the telemetry service's snapshot,
  `ctx.extras["telemetry"]`, when it runs), read the router's `neighbours()`/`topology()`,
  step the engine (with the bundle's alarm policy, `alarm_policy_of`), publish its events on the bus under topic "anomaly" (and this node's feature
  vector as `FeatureVector` under topic "anomaly.features", so a state layer can share it), update Prometheus gauges, persist the
  observe state when its phase changed, at most every PERSIST_INTERVAL_S otherwise (flash wear), and
  at stop. Nothing here raises out of the loop; a failing tick is logged
  and counted.
- `update_peer(node_id, raw)` (state gossip), `store_feedback(alarm_id, fault)` (the operator's verdict
  on one of this node's alarms, Incidents page) and `store_fault(start, end, source)` (a fault an
  operator confirmed on this node; only the Incidents page calls it on a running node, nothing live
  sends the lab's schedule) are the entry points for other services. Both verdict calls write observe.json (temp + fsync + rename) before they return; when it
  cannot be written they undo the verdict in memory and raise OSError, so nothing is reported as
  saved that was not. Observe-mode state is only serialised under `_lock` (a verdict arriving from
  the web UI never races a tick's save).
- Until the engine is loaded (and if loading fails) every entry point answers as a stopped detector
  (`engine` is None: no verdicts, no peer vectors taken); `status()` says `loading`, or the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import pathlib
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from x0node.anomaly.collector import CGROUP_MODES
from x0node.anomaly.features import FEATURES
from x0node.io.atomicfile import write_atomic
from x0node.proto.timers import jittered
from x0node.proto.views import NeighbourView, TopologyView

log = logging.getLogger("x0node.anomaly")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "interval_s": 30.0,
    "model_dir": "",
    "target_fpr": 0.01,
    "peer_ttl_s": 0.0,  # 0 = 4 x interval_s
    "observe_days": 14.0,
    "min_outcomes": 40,  # judged alarms (observe.py)
    "override": "",
    "drift_psi": 0.25,
    "seed": None,
    "record": False,
    "cgroup": "",  # "": host-wide CPU/memory; "own" / "parent": the node's cgroup v1 groups (collector.py)
    "federated": False,  # federated fine-tuning of the final layer (federated.py); measured no better: off
    "federated_round_s": 3600.0,
}
RECORD_FILE = "ticks.jsonl"
RECORD_MAX_BYTES = 64 * 1024 * 1024
"""`record = true` appends one JSON line per tick (the fault lab's dataset) until the file holds this much."""
PERSIST_INTERVAL_S = 600.0
STATE_DIR = "anomaly"
DRIFT_FILE = "drift.json"
FEDERATED_FILE = "federated.json"
FEATURES_VERSION = 4
"""Recorded with each tick: 2 = link_changes counts held losses and ignores stalls (collector.py);
3 = loss_max is the tick's missed share of control packets and a held loss is timed from the router's
down time (collector.py); 4 = a tick during which the node's own loop stalled >= OWN_STALL_S measures
no loss (collector.py; `stall` in the tick); recordings without it counted every UP-set transition."""
FEATURES_TOPIC = "anomaly.features"  # this node's feature vector each tick (for a state layer to share)
FEDERATED_TOPIC = "anomaly.federated"  # this node's head update each federated round (the state layer spreads it)


@dataclass(frozen=True)
class FederatedUpdate:
    node_id: str
    update: Any  # federated.Update
    at_s: float


@dataclass(frozen=True)
class FeatureVector:
    node_id: str
    features: dict[str, float]
    at_s: float
    values: tuple[float, ...] = ()  # the raw vector in FEATURES order (what the state layer shares)
    interval_s: float = 30.0  # this node's tick period: receivers' copies expire after a few of them


def validate_config(section: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.config import ConfigError

    out = dict(DEFAULTS)
    for key, value in section.items():
        if key not in DEFAULTS:
            raise ConfigError(key, "unknown key")
        out[key] = value

    def number(key: str, lo: float, hi: float, lo_open: bool = False) -> None:
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not (lo < v if lo_open else lo <= v) or v > hi:
            raise ConfigError(key, f"expected a number in {'(' if lo_open else '['}{lo}, {hi}]")
        out[key] = float(v)

    for flag in ("enabled", "record", "federated"):
        if not isinstance(out[flag], bool):
            raise ConfigError(flag, "expected true or false")
    number("interval_s", 1.0, 3600.0)
    number("target_fpr", 0.0, 0.5, lo_open=True)
    number("peer_ttl_s", 0.0, 86400.0)
    number("observe_days", 0.0, 365.0)
    number("drift_psi", 0.0, 10.0, lo_open=True)
    number("federated_round_s", 60.0, 86400.0)
    if isinstance(out["min_outcomes"], bool) or not isinstance(out["min_outcomes"], int) or not 1 <= out["min_outcomes"] <= 100000:
        raise ConfigError("min_outcomes", "expected an integer in [1, 100000]")
    if not isinstance(out["model_dir"], str) or len(out["model_dir"]) > 4096:
        raise ConfigError("model_dir", "expected a path string")
    if out["cgroup"] not in CGROUP_MODES:
        raise ConfigError("cgroup", "expected \"\", \"own\" or \"parent\"")
    if out["override"] not in ("", "active", "observe"):
        raise ConfigError("override", "expected \"\", \"active\" or \"observe\"")
    if out["seed"] is not None and (isinstance(out["seed"], bool) or not isinstance(out["seed"], int)):
        raise ConfigError("seed", "expected an integer")
    return out


def create_service(section: dict[str, Any]) -> AnomalyService:
    return AnomalyService(validate_config(section))


class AnomalyService:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.engine: Any = None
        self._ctx: Any = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(config["seed"])  # seeded detector sampling, not a secret # nosec B311
        self._features: Any = None
        self._state_path: Any = None
        self._saved_state: str | None = None
        self._saved_phase: str | None = None
        self._saved_at = float("-inf")
        self.tick_errors = 0
        self.load_error = ""
        self._loaded = asyncio.Event()  # set once loading ended (engine set, or load_error)
        self._gauges: dict[str, Any] = {}
        self._record_fh: Any = None
        self._cgroup: Any = None  # collector.NodeCgroups when `cgroup` selects the node's own groups
        self._cpu_mem_source = "host"  # "cgroup" while the node's own groups were read at the last tick
        self._lock = asyncio.Lock()  # observe-mode state is serialised under it (tick saves, verdicts)
        self._tick_at: float | None = None  # monotonic s of the previous tick (own loop stalls since then)
        self._fed_taken = False  # a peer's federated update taken since the state was last saved

    # ---- lifecycle
    async def start(self, ctx: Any) -> None:
        from x0node.anomaly.collector import FeatureState, node_cgroups

        self._ctx = ctx
        if self.config["cgroup"]:
            try:
                text = await asyncio.to_thread(pathlib.Path("/proc/self/cgroup").read_text)
                self._cgroup = node_cgroups(self.config["cgroup"], text)
            except OSError as e:
                log.warning("anomaly: cannot read /proc/self/cgroup (%s); CPU and memory stay host-wide", e)
            if self._cgroup is None:
                log.warning("anomaly: no cgroup v1 cpuacct/memory group; CPU and memory stay host-wide")
        self._features = FeatureState()
        self._register_metrics(ctx.registry)
        ctx.extras["anomaly"] = self
        self._task = asyncio.get_running_loop().create_task(self._load_and_run(ctx), name="anomaly")
        log.info("anomaly service started; loading the models in the background")

    async def _load_and_run(self, ctx: Any) -> None:
        try:
            engine = await asyncio.to_thread(self._build, ctx)
        except Exception as exc:  # noqa: BLE001 - a broken bundle leaves the detector off, routing goes on
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("anomaly: loading the models failed; the detector stays off")
            self._loaded.set()
            return
        self.engine = engine
        self._loaded.set()
        log.info("anomaly models loaded layer=%s phase=%s", engine.chain.live_layer, engine.observe.phase.value)
        await self._run()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.engine is not None:
            with contextlib.suppress(OSError):
                self._persist(force=True)
            with contextlib.suppress(OSError):
                self._save_federation()
        if self._record_fh is not None:
            with contextlib.suppress(OSError):
                self._record_fh.close()
            self._record_fh = None
        if self._ctx is not None and self._ctx.extras.get("anomaly") is self:
            del self._ctx.extras["anomaly"]

    async def wait_loaded(self) -> bool:
        """Wait until the background load ended; True when the engine runs."""
        await self._loaded.wait()
        return self.engine is not None

    def status(self) -> dict[str, Any]:
        if self.engine is None:
            return {"running": False, **({"error": self.load_error} if self.load_error else {"loading": True})}
        st = self.engine.status()
        st["tick_errors"] = self.tick_errors
        st["cpu_mem_source"] = self._cpu_mem_source
        if self._features is not None:
            st["link_stalls"] = self._features.stalls
            st["stalled_ticks"] = self._features.stalled_ticks
        return st

    # ---- entry points for other services
    def update_peer(self, node_id: str, raw: list[float]) -> bool:
        return self.engine is not None and self.engine.update_peer(node_id, raw, time.monotonic())

    def offer_update(self, node_id: str, update: Any, seq: int) -> str | None:
        """A peer's federated head update under its record's signed sequence number (state layer):
        None when held for its round, else why not."""
        if self.engine is None:
            return "not_running"
        why = self.engine.offer_update(node_id, update, seq, time.time())
        self._fed_taken |= why is None
        return why

    @property
    def node_id(self) -> str:
        return "" if self._ctx is None else str(self._ctx.node_id)

    def alarms(self, limit: int = 50) -> list[dict[str, Any]]:
        """This node's newest alarms with their verdicts (observe mode)."""
        return [] if self.engine is None else self.engine.observe.alarms(limit)

    async def store_feedback(self, alarm_id: int, fault: bool) -> bool:
        """The operator's verdict on one of this node's alarms; False for an alarm not held."""
        if self.engine is None:
            return False
        async with self._lock:
            observe = self.engine.observe
            before = observe.to_dict()
            if not self.engine.judge(alarm_id, fault, "operator", time.time()):
                return False
            await self._save_verdict(before)
        return True

    async def store_fault(self, start: float, end: float, source: str = "incident") -> bool | None:
        """A fault known to have acted on this node in [start, end] (wall-clock s): whether one of its
        alarms detected it (None: refused)."""
        if self.engine is None:
            return None
        async with self._lock:
            before = self.engine.observe.to_dict()
            detected = self.engine.fault(start, end, source, time.time())
            if detected is not None:
                await self._save_verdict(before)
        return detected

    async def _save_verdict(self, before: dict[str, Any]) -> None:
        self._publish_events()
        text = json.dumps(self.engine.observe.to_dict())
        try:
            await asyncio.to_thread(write_atomic, self._state_path, text.encode())
        except OSError:
            self.engine.observe = _restore_observe(before, self.engine.observe)
            raise
        self._saved_state, self._saved_phase, self._saved_at = text, self.engine.observe.phase.value, time.monotonic()

    def set_override(self, mode: str | None) -> None:
        if self.engine is not None:
            self.engine.observe.set_override(mode or None, time.time())
            self._persist(force=True)

    # ---- internals
    def _build(self, ctx: Any) -> Any:
        from x0node.anomaly.chain import load_chain
        from x0node.anomaly.drift import DriftMonitor
        from x0node.anomaly.engine import AnomalyEngine
        from x0node.anomaly.observe import ObserveConfig, ObserveMode

        cfg = self.config
        chain, bundle = load_chain(cfg["model_dir"] or None, iforest_target_fpr=cfg["target_fpr"])
        drift = DriftMonitor(FEATURES, None, threshold=cfg["drift_psi"])  # against this node's own history
        ocfg = ObserveConfig(min_observe_s=cfg["observe_days"] * 86400.0, min_outcomes=cfg["min_outcomes"])
        state_dir = ctx.data_dir / STATE_DIR
        state_dir.mkdir(parents=True, exist_ok=True)
        self._state_path = state_dir / "observe.json"
        observe = ObserveMode(ocfg, time.time())
        with contextlib.suppress(OSError, ValueError):
            if self._state_path.stat().st_size < 4 * 1024 * 1024:
                observe = ObserveMode.from_dict(json.loads(self._state_path.read_text()), ocfg, time.time())
        with contextlib.suppress(OSError, ValueError):
            drift_path = state_dir / DRIFT_FILE
            if drift_path.stat().st_size < 1024 * 1024 and not drift.restore(json.loads(drift_path.read_text())):
                log.warning("anomaly drift reference in %s does not fit; building a new one", drift_path)
        if cfg["override"]:
            observe.set_override(cfg["override"], time.time())
        ttl = cfg["peer_ttl_s"] or 4 * cfg["interval_s"]
        federation = None
        if cfg["federated"]:
            from x0node.anomaly.federated import Federation

            federation = Federation()
            fed_path = state_dir / FEDERATED_FILE
            try:
                if fed_path.exists() and fed_path.stat().st_size < 1024 * 1024:
                    federation = Federation.from_dict(json.loads(fed_path.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("anomaly federated state in %s is unreadable (%s); starting afresh", fed_path, exc)
        engine = AnomalyEngine(ctx.node_id, chain, drift, observe, cfg["target_fpr"], ttl, alarm_policy_of(bundle),
                               federation, cfg["federated_round_s"])
        normal_path = state_dir / "normal_rows.npy"
        with contextlib.suppress(OSError, ValueError):
            rows = np.load(normal_path, allow_pickle=False)
            if rows.ndim == 2 and rows.shape[1] == len(FEATURES) and np.isfinite(rows).all():
                chain.add_normal(np.clip(rows[-4096:], 0.0, 1.0))
                chain.fit_iforest(self._rng)
        return engine

    def _persist(self, force: bool = False) -> None:
        if self._state_path is None:
            return
        phase = self.engine.observe.phase.value
        now = time.monotonic()
        if not force and phase == self._saved_phase and now - self._saved_at < PERSIST_INTERVAL_S:
            return  # flash wear: at most every PERSIST_INTERVAL_S unless the phase changed
        text = json.dumps(self.engine.observe.to_dict())
        self._saved_phase, self._saved_at = phase, now
        if not force and text == self._saved_state:
            return
        write_atomic(self._state_path, text.encode())
        self._saved_state = text
        if self.engine.drift is not None:
            write_atomic(self._state_path.parent / DRIFT_FILE, json.dumps(self.engine.drift.to_dict()).encode())
        if force and self.engine.chain.normal_rows:
            rows = np.stack(list(self.engine.chain._normal))  # noqa: SLF001 - our own chain
            buf = io.BytesIO()
            np.save(buf, rows.astype(np.float32))
            write_atomic(self._state_path.parent / "normal_rows.npy", buf.getvalue())

    def _save_federation(self) -> None:
        fed = None if self.engine is None else self.engine.federation
        if fed is not None and self._state_path is not None:
            write_atomic(self._state_path.parent / FEDERATED_FILE, json.dumps(fed.to_dict()).encode())

    def _register_metrics(self, registry: Any) -> None:
        if registry is None:
            return
        try:
            from prometheus_client import Counter, Gauge
        except ImportError:
            return
        try:
            self._gauges = {
                "layer": Gauge("x0node_anomaly_live_layer", "live detector layer (1 = live)", ["layer"], registry=registry),
                "score": Gauge("x0node_anomaly_own_score", "this node's anomaly score from the live layer", registry=registry),
                "acting": Gauge("x0node_anomaly_acting", "1 when observe mode lets predictions act", registry=registry),
                "events": Counter("x0node_anomaly_events", "anomaly service events by type", ["type"], registry=registry),
            }
        except ValueError:  # already registered (service restarted in one process)
            self._gauges = {}

    async def _sample_links(self) -> None:
        from x0node.anomaly.collector import LINK_SAMPLE_INTERVAL_S

        while True:
            await asyncio.sleep(jittered(LINK_SAMPLE_INTERVAL_S, self._rng))
            router = self._ctx.router
            self._features.observe_links(_safe_call(router, "neighbours", ()), time.monotonic(),
                                         _safe_call(router, "lost_neighbours", ()))

    async def _run(self) -> None:
        interval = self.config["interval_s"]
        sampler = asyncio.get_running_loop().create_task(self._sample_links(), name="anomaly-links")
        try:
            await self._ticks(interval)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sampler

    async def _ticks(self, interval: float) -> None:
        while True:
            await asyncio.sleep(jittered(interval, self._rng))
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the service must keep running
                self.tick_errors += 1
                log.exception("anomaly tick failed")

    async def tick(self) -> dict[str, Any]:
        from x0node.anomaly.collector import read_counters, xdp_dropped_total

        ctx = self._ctx
        counters = await asyncio.to_thread(read_counters, list(ctx.interfaces), cgroup=self._cgroup)
        self._cpu_mem_source = "cgroup" if counters.cg_cpu_ns is not None or counters.cg_mem_used is not None else "host"
        tele = getattr(ctx, "extras", {}).get("telemetry")
        if tele is not None:
            snap = _safe_call(tele, "snapshot", None)
            counters = dataclasses.replace(counters, xdp_dropped=xdp_dropped_total(snap, ctx.interfaces))
        router = ctx.router
        neighbours = _safe_call(router, "neighbours", ())
        topology = _safe_call(router, "topology", TopologyView((), ()))
        now, wall = time.monotonic(), time.time()
        lost = _safe_call(router, "lost_neighbours", ())
        # this node's worst loop lag since the previous tick (the router's record of how late its timer ran)
        stall = _safe_call(router, "loop_lag_peak", 0.0, now if self._tick_at is None else self._tick_at)
        self._tick_at = now
        raw = self._features.update(counters, neighbours, now, lost, stall)
        adjacency = _adjacency(ctx.node_id, neighbours, topology)
        down = self._features.links_down(now)
        result = self.engine.step(raw, adjacency, now, wall, self._rng, links_down=down)
        ctx.bus.publish(FEATURES_TOPIC, FeatureVector(ctx.node_id, dict(self._features.last), wall,
                                                      tuple(float(v) for v in raw), self.config["interval_s"]))
        if self.config["federated"]:
            f = self.engine.federation
            mark = None if f is None else (f.round, f.closed_round)
            update = self.engine.federated_step(now, wall, self._rng)
            if f is not None and ((f.round, f.closed_round) != mark or self._fed_taken):
                self._fed_taken = False  # a round closed or begun, or a peer's update taken: save it
                await asyncio.to_thread(self._save_federation)
            if update is not None:
                ctx.bus.publish(FEDERATED_TOPIC, FederatedUpdate(ctx.node_id, update, wall))
        self._publish_events()
        if self._gauges:
            for layer in ("gnn", "self", "iforest", "rules"):
                self._gauges["layer"].labels(layer).set(1.0 if result["layer"] == layer else 0.0)
            own = self.engine.last_scores.get(ctx.node_id, {})
            self._gauges["score"].set(float(own.get("score", 0.0)))
            self._gauges["acting"].set(1.0 if result["acting"] else 0.0)
        if self.config["record"]:
            await asyncio.to_thread(self._record, now, wall, raw, neighbours, result, down, lost, stall)
        async with self._lock:
            await asyncio.to_thread(self._persist)
        return result

    def _publish_events(self) -> None:
        for ev in iter(self.engine.next_event, None):
            self._ctx.bus.publish("anomaly", ev)
            if type(ev).__name__ == "FederatedRound":  # at most one per federated_round_s: worth a line
                log.info("anomaly federated round %d closed: %d updates averaged (peers: %s), head in use: %s",
                         ev.round, ev.updates, ",".join(ev.peers) or "none", ev.in_use)
            if "events" in self._gauges:
                self._gauges["events"].labels(type(ev).__name__).inc()

    def _record(self, now: float, wall: float, raw: np.ndarray, neighbours: Any, result: dict[str, Any],
                links_down: int = 0, lost: Any = (), stall_s: float = 0.0) -> None:
        """One line per tick for the fault lab's dataset: what this node saw, what reached it, what it said."""
        if self._record_fh is None:
            path = self._ctx.data_dir / STATE_DIR / RECORD_FILE
            self._record_fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across ticks
        if self._record_fh.tell() >= RECORD_MAX_BYTES:
            return
        own = self.engine.last_scores.get(self._ctx.node_id, {})
        line = {
            "mono": round(now, 3), "wall": round(wall, 3), "node": self._ctx.node_id, "features": FEATURES_VERSION,
            "cpu_mem": self._cpu_mem_source,
            "raw": [round(float(v), 6) for v in raw], "links_down": links_down,
            "up": sorted(nb.node_id for nb in neighbours if nb.state == "up"),
            "lost": {lv.node_id: lv.down_for_s for lv in lost},
            "stall": round(stall_s, 3),
            "peers": {nid: [round(float(v), 6) for v in vec] + [round(now - at, 3)]
                      for nid, (vec, at) in self.engine.peer_vectors().items()},
            "layer": own.get("layer", result["layer"]), "score": own.get("score"), "anomalous": own.get("anomalous"),
            "alarm": own.get("alarm"),
        }
        self._record_fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._record_fh.flush()


def alarm_policy_of(bundle: Any) -> Any:
    """The bundle's alarm policy (`alarm` in anomaly_model.json, chosen with the thresholds); the
    per-tick policy when it has none or it does not validate."""
    from x0node.anomaly.alarm import AlarmPolicy

    doc = None if bundle is None else bundle.meta.get("alarm")
    if doc is None:
        return AlarmPolicy()
    try:
        return AlarmPolicy.from_dict(doc)
    except (TypeError, ValueError) as exc:
        log.warning("anomaly alarm policy in the bundle is malformed (%s); alarming on every anomalous tick", exc)
        return AlarmPolicy()


def _restore_observe(before: dict[str, Any], current: Any) -> Any:
    """Observe mode as it was before a verdict that could not be saved (same config and override)."""
    from x0node.anomaly.observe import ObserveMode

    restored = ObserveMode.from_dict(before, current.config, before.get("started_s", 0.0))
    restored.override = current.override
    return restored


def _safe_call(obj: Any, name: str, default: Any, *args: Any) -> Any:
    fn = getattr(obj, name, None)
    if fn is None:
        return default
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a view failing must not stop detection
        log.debug("router.%s() failed", name, exc_info=True)
        return default


def _adjacency(node_id: str, neighbours: tuple[NeighbourView, ...], topology: TopologyView) -> dict[str, list[str]]:
    """node id -> neighbour ids from the router's topology view, plus our UP neighbours."""
    adj: dict[str, set[str]] = {}
    for link in topology.links:
        if link.a != link.b:
            adj.setdefault(link.a, set()).add(link.b)
            adj.setdefault(link.b, set()).add(link.a)
    for nb in neighbours:
        if nb.state == "up" and nb.node_id != node_id:
            adj.setdefault(node_id, set()).add(nb.node_id)
            adj.setdefault(nb.node_id, set()).add(node_id)
    return {k: sorted(v) for k, v in adj.items()}
