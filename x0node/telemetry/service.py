"""The daemon's telemetry service (config section `[telemetry]`, see docs/telemetry.md).

Rules and invariants:
- start never fails the daemon for lack of BPF: without libbpf/BTF/privileges, or when the kernel
  refuses a program, the service runs on, exports `x0node_telemetry_bpf_available 0` and says why in
  `status()`;
- XDP is attached to the daemon's mesh interfaces (ctx.interfaces); interfaces that are missing at
  start are retried at every poll; the mode used (native/generic) is reported per interface;
- every kernel read happens in a worker thread (asyncio.to_thread), on a jittered interval
  (+-25 %, x0node.proto.timers.jittered, design rule 7); /metrics scrapes only read the last snapshot;
- counts that identify a remote (per-peer) leave the node only through `snapshot.release_peers`
  (Laplace noise when epsilon is set); interface and TCP totals are this node's own aggregates;
- stop detaches everything and removes pinned maps (loader.BpfObject.close).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from x0node.proto.timers import jittered
from x0node.telemetry import counters, privacy, snapshot
from x0node.telemetry.loader import DEFAULT_PIN_ROOT, XDP_MODES

log = logging.getLogger("x0node.telemetry")

INTERVAL_S_MIN, INTERVAL_S_MAX = 0.2, 3600.0
PEERS_MAX_LIMIT = 256
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "xdp": True,  # attach xdp_mac_stats to the mesh interfaces
    "tcp": True,  # TCP state / RTT / retransmit tracepoints
    "tcp_scope": "netns",  # netns: sockets of the daemon's network namespace | all: every socket
    "xdp_mode": "auto",  # auto (native, else generic) | native | generic
    "interval_s": 5.0,  # how often the maps are read
    "epsilon": 1.0,  # Laplace noise on per-peer counts; 0 = exact
    "peers_max": 32,  # peers exported (largest by packets)
    "profile": False,  # keep kernel BPF run-time stats on (adds a little cost per run)
    "bpf_dir": "",  # default: /usr/lib/x0node/bpf on a device, build/bpf on a dev host
    "manifest": "",  # default: /usr/share/x0tta6bl4/manifest.json, else build/bpf/manifest.json
    "pin_root": DEFAULT_PIN_ROOT,
}


def _config_error(key: str, message: str) -> Exception:
    from x0node.daemon.config import ConfigError

    return ConfigError(key, message)


def validate_config(section: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise _config_error(unknown[0], f"unknown key (known: {', '.join(sorted(DEFAULTS))})")
    out = {**DEFAULTS, **section}
    for key in ("enabled", "xdp", "tcp", "profile"):
        if not isinstance(out[key], bool):
            raise _config_error(key, "expected true or false")
    if out["tcp_scope"] not in ("netns", "all"):
        raise _config_error("tcp_scope", "expected netns or all")
    if out["xdp_mode"] not in XDP_MODES:
        raise _config_error("xdp_mode", f"expected one of {', '.join(XDP_MODES)}")
    iv = out["interval_s"]
    if isinstance(iv, bool) or not isinstance(iv, int | float) or not (INTERVAL_S_MIN <= iv <= INTERVAL_S_MAX):
        raise _config_error("interval_s", f"expected a number of seconds in [{INTERVAL_S_MIN}, {INTERVAL_S_MAX}]")
    eps = out["epsilon"]
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise _config_error("epsilon", "expected a number (0 = no noise)")
    try:
        privacy.validate_epsilon(float(eps))
    except ValueError as exc:
        raise _config_error("epsilon", str(exc)) from None
    pm = out["peers_max"]
    if isinstance(pm, bool) or not isinstance(pm, int) or not (0 <= pm <= PEERS_MAX_LIMIT):
        raise _config_error("peers_max", f"expected an integer in [0, {PEERS_MAX_LIMIT}]")
    for key in ("bpf_dir", "manifest", "pin_root"):
        if not isinstance(out[key], str) or len(out[key]) > 4096:
            raise _config_error(key, "expected a path")
    out["interval_s"] = float(iv)
    out["epsilon"] = float(eps)
    return out


class TelemetryCollector:
    """prometheus_client custom collector over the service's last snapshot (no I/O at scrape time)."""

    def __init__(self, service: TelemetryService) -> None:
        self._service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        snap = self._service.last
        avail = GaugeMetricFamily("x0node_telemetry_bpf_available", "1 when the BPF telemetry programs run")
        avail.add_metric([], 1.0 if snap.bpf else 0.0)
        yield avail
        rx_p = CounterMetricFamily("x0node_xdp_rx_packets", "Frames seen by XDP", labels=["iface"])
        rx_b = CounterMetricFamily("x0node_xdp_rx_bytes", "Bytes seen by XDP", labels=["iface"])
        drop = CounterMetricFamily("x0node_xdp_dropped", "Frames dropped by XDP (invalid Ethernet)", labels=["iface"])
        passed = CounterMetricFamily("x0node_xdp_passed", "Frames passed by XDP", labels=["iface"])
        mode = GaugeMetricFamily("x0node_xdp_attached", "1 per interface and XDP mode in use", labels=["iface", "mode"])
        for name, st in snap.interfaces.items():
            rx_p.add_metric([name], st.counters.rx_packets)
            rx_b.add_metric([name], st.counters.rx_bytes)
            drop.add_metric([name], st.counters.dropped)
            passed.add_metric([name], st.counters.passed)
            mode.add_metric([name, st.mode], 1.0 if st.mode in ("native", "generic") else 0.0)
        yield from (rx_p, rx_b, drop, passed, mode)
        peer_p = CounterMetricFamily(
            "x0node_xdp_peer_rx_packets", "Frames per source (keyed MAC hash), DP-noised", labels=["peer"]
        )
        peer_b = CounterMetricFamily(
            "x0node_xdp_peer_rx_bytes", "Bytes per source (keyed MAC hash), DP-noised", labels=["peer"]
        )
        for p in snap.peers:
            peer_p.add_metric([p.source], p.packets)
            peer_b.add_metric([p.source], p.bytes)
        yield from (peer_p, peer_b)
        tcp = snap.tcp
        rt = CounterMetricFamily("x0node_tcp_retransmits", "TCP segment retransmissions", labels=["state"])
        for state, n in sorted(tcp.retransmits_by_state.items()):
            rt.add_metric([state], n)
        yield rt
        tr = CounterMetricFamily("x0node_tcp_state_transitions", "TCP state changes", labels=["transition"])
        for name, n in sorted(tcp.transitions.items()):
            tr.add_metric([name], n)
        yield tr
        buckets: list[tuple[str, float]] = []
        acc = 0
        for i, n in enumerate(tcp.rtt_buckets):
            acc += n
            ub = counters.bucket_upper_bound(i)
            if ub != float("inf"):
                buckets.append((f"{ub:g}", float(acc)))
        buckets.append(("+Inf", float(acc)))
        h = HistogramMetricFamily("x0node_tcp_rtt_microseconds", "Smoothed TCP RTT samples (tcp_probe)")
        h.add_metric([], buckets, float(tcp.rtt_sum_us))
        yield h
        runs = CounterMetricFamily("x0node_bpf_prog_runs", "Program runs (kernel BPF stats)", labels=["prog"])
        rtime = CounterMetricFamily("x0node_bpf_prog_run_time_ns", "Program run time (kernel BPF stats)", labels=["prog"])
        for prog, (cnt, ns) in sorted(self._service.prog_stats.items()):
            runs.add_metric([prog], cnt)
            rtime.add_metric([prog], ns)
        yield from (runs, rtime)


class TelemetryService:
    def __init__(
        self,
        section: Mapping[str, Any],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        netns: str | None = None,
    ) -> None:
        self.cfg = validate_config(section)
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self.netns = netns
        self.epsilon = privacy.validate_epsilon(self.cfg["epsilon"])
        self.last: snapshot.Snapshot = snapshot.empty(clock(), "starting")
        self.prog_stats: dict[str, tuple[int, int]] = {}
        self.if_errors: dict[str, str] = {}
        self.probes: Any = None
        self.reason = "starting"
        self._task: asyncio.Task[None] | None = None
        self._ctx: Any = None
        self._collector: TelemetryCollector | None = None
        self._stats: Any = None
        self._interfaces: list[str] = []
        self._io_lock = threading.Lock()  # a read in a worker thread never overlaps teardown

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, ctx: Any) -> None:
        self._ctx = ctx
        self._interfaces = list(ctx.interfaces)
        ctx.extras["telemetry"] = self
        self._collector = TelemetryCollector(self)
        if ctx.registry is not None:
            ctx.registry.register(self._collector)
        try:
            await asyncio.to_thread(self._setup)
        except Exception as exc:  # noqa: BLE001 - without telemetry the node still routes; say why
            log.exception("telemetry setup failed")
            self.reason = f"setup failed: {type(exc).__name__}: {exc}"
            await asyncio.to_thread(self._teardown)
        self.last = await asyncio.to_thread(self._read)
        self._publish("started", {"bpf": self.last.bpf, "reason": self.reason, "interfaces": self.interface_modes()})
        self._task = asyncio.create_task(self._poll_loop(), name="telemetry-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await asyncio.to_thread(self._teardown)
        if self._collector is not None and self._ctx is not None and self._ctx.registry is not None:
            try:
                self._ctx.registry.unregister(self._collector)
            except KeyError:
                pass
        if self._ctx is not None:
            self._ctx.extras.pop("telemetry", None)

    # --- public views ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The last released snapshot (shape in docs/telemetry.md); anomaly features read this."""
        return self.last.as_dict()

    def interface_modes(self) -> dict[str, str]:
        modes = {name: st.mode for name, st in self.last.interfaces.items()}
        for name, err in self.if_errors.items():
            modes.setdefault(name, f"unattached: {err}")
        return modes

    def status(self) -> dict[str, Any]:
        probes_running = sorted(self.probes.objects) if self.probes is not None else []
        return {
            "bpf": self.last.bpf,
            "reason": self.reason,
            "interfaces": self.interface_modes(),
            "programs": probes_running,
            "errors": dict(self.probes.errors) if self.probes is not None else {},
            "epsilon": self.epsilon,
            "interval_s": self.cfg["interval_s"],
        }

    # --- worker-thread parts -----------------------------------------------------------------------
    def _setup(self) -> None:
        from x0node.telemetry import libbpf
        from x0node.telemetry.probes import Probes

        ok, why = libbpf.available()
        if not ok:
            self.reason = f"BPF unavailable: {why}"
            log.warning("telemetry runs without BPF: %s", why)
            return
        self.probes = Probes(
            bpf_dir=self.cfg["bpf_dir"] or None,
            manifest=self.cfg["manifest"] or None,
            pin_root=self.cfg["pin_root"] or None,
            tcp_netns_ino=0 if self.cfg["tcp_scope"] == "all" else None,
        )
        problems = []
        if self.cfg["xdp"]:
            try:
                self.probes.load_xdp()
            except Exception as exc:  # noqa: BLE001 - reported in status, the daemon runs on
                self.probes.errors["xdp_mac_stats"] = str(exc)
                problems.append(f"xdp_mac_stats: {exc}")
                log.warning("xdp_mac_stats not loaded: %s", exc)
            else:
                self._attach_missing()
        if self.cfg["tcp"]:
            self.probes.load_tcp()
            problems += [f"{k}: {v}" for k, v in self.probes.errors.items() if k != "xdp_mac_stats"]
        if self.cfg["profile"]:
            from x0node.telemetry.profiler import StatsSession, stats_enabled_sysctl

            if not stats_enabled_sysctl():
                try:
                    self._stats = StatsSession().__enter__()
                except Exception as exc:  # noqa: BLE001 - needs CAP_SYS_ADMIN; the sysctl is the alternative
                    problems.append(f"bpf stats: {exc} (set kernel.bpf_stats_enabled=1 instead)")
        if not self.probes.objects:
            self.reason = "no BPF program loaded: " + "; ".join(problems)
        else:
            self.reason = "ok" if not problems else "partial: " + "; ".join(problems)

    def _attach_missing(self) -> None:
        if self.probes is None or "xdp_mac_stats" not in self.probes.objects:
            return
        for ifname in self._interfaces:
            if ifname in self.probes.attachments:
                continue
            try:
                att = self.probes.attach(ifname, self.cfg["xdp_mode"], self.netns)
            except Exception as exc:  # noqa: BLE001 - interface missing or refused: retried next poll
                if self.if_errors.get(ifname) != str(exc):
                    log.warning("xdp not attached to %s: %s", ifname, exc)
                self.if_errors[ifname] = str(exc)
                continue
            self.if_errors.pop(ifname, None)
            if att.mode == "generic" and self.cfg["xdp_mode"] == "auto":
                self._publish("xdp_generic_fallback", {"iface": ifname})

    def _read(self) -> snapshot.Snapshot:
        with self._io_lock:
            return self._read_locked()

    def _read_locked(self) -> snapshot.Snapshot:
        now = self.clock()
        if self.probes is None or not self.probes.objects:
            return snapshot.empty(now, self.reason)
        try:
            self.probes.refresh(self.netns)
        except Exception as exc:  # noqa: BLE001 - netlink trouble: keep the attachments we have
            log.warning("telemetry: interface refresh failed: %s", exc)
        self._attach_missing()
        ifs: dict[str, snapshot.InterfaceState] = {}
        for name, c in self.probes.interfaces().items():
            ifs[name] = snapshot.InterfaceState(self.probes.attachments[name].mode, c)
        for name, err in self.if_errors.items():
            ifs.setdefault(name, snapshot.InterfaceState("unattached", counters.IfCounters(), err))
        from x0node.telemetry import profiler

        try:
            self.prog_stats = {p.name: (p.run_cnt, p.run_time_ns) for p in profiler.read_fds(self.probes.prog_fds())}
        except Exception:  # noqa: BLE001
            self.prog_stats = {}
        return snapshot.build(
            now,
            ifs,
            self.probes.sources(),
            self.probes.tcp(),
            self.last if self.last.bpf else None,
            self.epsilon,
            self.rng,
            self.cfg["peers_max"],
            self.reason,
        )

    def _teardown(self) -> None:
        with self._io_lock:
            self._teardown_locked()

    def _teardown_locked(self) -> None:
        if self.probes is not None:
            self.probes.close()
            self.probes = None
        if self._stats is not None:
            self._stats.close()
            self._stats = None

    # --- loop --------------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        base = self.cfg["interval_s"]
        while True:
            await asyncio.sleep(jittered(base, self.rng))
            try:
                self.last = await asyncio.to_thread(self._read)
            except Exception:  # noqa: BLE001 - a failed read must not end telemetry
                log.exception("telemetry read failed")

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        bus = getattr(self._ctx, "bus", None)
        if bus is not None:
            bus.publish("telemetry", {"kind": kind, **body})


def create_service(section: Mapping[str, Any]) -> TelemetryService:
    return TelemetryService(section)
