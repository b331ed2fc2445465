"""An in-memory `NodeStateProvider`: fixed-shape node state that tests and `x0node web demo` drive.

It is a faithful provider, not a shortcut: configuration writes are validated all-or-nothing against a
small schema of timer settings (ranges in the key names' units) and, when `persist_path` is given, saved
as JSON and reloaded on construction, so "a change survives a restart" can be exercised without a
daemon. Events are kept in a bounded ring (`EVENTS_KEPT`), numbered from 1.
"""

from __future__ import annotations

import bisect
import collections
import copy
import json
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any

from x0node.io.atomicfile import write_atomic
from x0node.proto.neighbour import RTT_HISTOGRAM_BOUNDS_MS
from x0node.web.provider import EVENTS_LIMIT_MAX, QUALITY_CLASSES, ConfigError

EVENTS_KEPT = 1000

# section -> key -> (type, min, max, default)
CONFIG_SCHEMA: dict[str, dict[str, tuple[type, float, float, float]]] = {
    "routing": {
        "hello_interval_s": (float, 0.1, 60.0, 1.0),
        "dead_interval_s": (float, 0.5, 600.0, 4.0),
        "lsa_refresh_s": (float, 5.0, 86400.0, 300.0),
    },
}


def default_config() -> dict[str, Any]:
    return {sec: {k: spec[3] for k, spec in keys.items()} for sec, keys in CONFIG_SCHEMA.items()}


def validate_changes(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Return `current` with `changes` merged in, or raise ConfigError naming the first bad key."""
    if not isinstance(changes, dict):
        raise ConfigError("<root>", "expected an object of sections")
    merged = copy.deepcopy(current)
    for section, values in changes.items():
        if section not in CONFIG_SCHEMA:
            raise ConfigError(str(section), "unknown section")
        if not isinstance(values, dict):
            raise ConfigError(section, "expected an object of settings")
        for key, value in values.items():
            dotted = f"{section}.{key}"
            spec = CONFIG_SCHEMA[section].get(key)
            if spec is None:
                raise ConfigError(dotted, "unknown setting")
            _typ, lo, hi, _default = spec
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(dotted, "expected a number")
            if not (lo <= float(value) <= hi):
                raise ConfigError(dotted, f"must be between {lo:g} and {hi:g}")
            merged[section][key] = float(value)
    routing = merged["routing"]
    if routing["dead_interval_s"] <= routing["hello_interval_s"]:
        raise ConfigError("routing.dead_interval_s", "must be greater than routing.hello_interval_s")
    return merged


class MemoryProvider:
    """Holds node state set by its owner; thread-safe for the demo server's background updater."""

    def __init__(self, node_id: str = "a1b2c3d4e5f60718", name: str = "node-a",
                 persist_path: pathlib.Path | None = None, started_at: float | None = None) -> None:
        self._lock = threading.Lock()
        self.node_id = node_id
        self.name = name
        self.mesh_addr = "fd58:7830:746c::" + node_id[:4] + ":" + node_id[4:8]
        self.started_at = time.time() if started_at is None else started_at
        self.health = "ok"
        self.health_reason: str | None = None  # why health is not "ok", in words
        self.services: Callable[[], dict[str, Any]] | None = None  # the services' status, as the daemon's
        self._neighbours: list[dict[str, Any]] = []
        self._routes: list[dict[str, Any]] = []
        self._topology: dict[str, Any] = {"nodes": [self._self_node()], "links": []}
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self._seq = 0
        self._stats: dict[str, Any] = {"drops": {}, "routes": 0, "lsdb_size": 1, "spf_runs": 0,
                                       "spf_seconds_total": 0.0, "credential_checks": {"ok": 0}}
        self._rtt: dict[str, tuple[list[int], float]] = {}
        self._persist_path = persist_path
        self._config = default_config()
        if persist_path is not None and persist_path.exists():
            self._config = validate_changes(self._config, json.loads(persist_path.read_text()))

    def _self_node(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.name, "mesh_addr": self.mesh_addr, "self": True}

    # ---- owner side -------------------------------------------------------------------------------
    def set_neighbours(self, neighbours: list[dict[str, Any]]) -> None:
        """Replace the neighbour table; each neighbour's `rtt_ms` counts as one RTT sample."""
        with self._lock:
            self._neighbours = copy.deepcopy(neighbours)
            for n in neighbours:
                rtt = n.get("rtt_ms")
                if isinstance(rtt, int | float) and not isinstance(rtt, bool):
                    counts, total = self._rtt.get(n["node_id"], ([0] * (len(RTT_HISTOGRAM_BOUNDS_MS) + 1), 0.0))
                    counts[bisect.bisect_left(RTT_HISTOGRAM_BOUNDS_MS, rtt)] += 1
                    self._rtt[n["node_id"]] = (counts, total + float(rtt))

    def count_credential_check(self, result: str, n: int = 1) -> None:
        """Count credential checks: "ok" or the refusal's reason."""
        with self._lock:
            checks = self._stats["credential_checks"]
            checks[result] = checks.get(result, 0) + n

    def set_routes(self, routes: list[dict[str, Any]]) -> None:
        with self._lock:
            self._routes = copy.deepcopy(routes)
            self._stats["routes"] = len(routes)

    def set_topology(self, topology: dict[str, Any]) -> None:
        with self._lock:
            self._topology = copy.deepcopy(topology)
            self._stats["lsdb_size"] = len(topology.get("nodes", []))

    def add_event(self, kind: str, message: str, detail: dict[str, Any] | None = None,
                  when: float | None = None) -> int:
        with self._lock:
            self._seq += 1
            self._events.append({"seq": self._seq, "time": time.time() if when is None else when,
                                 "kind": kind, "message": message, "detail": dict(detail or {})})
            return self._seq

    def count_drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._stats["drops"][reason] = self._stats["drops"].get(reason, 0) + n

    def count_spf(self, seconds: float) -> None:
        with self._lock:
            self._stats["spf_runs"] += 1
            self._stats["spf_seconds_total"] += seconds

    # ---- NodeStateProvider ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out = {
            "node_id": self.node_id, "name": self.name, "mesh_addr": self.mesh_addr, "version": "0.1.0",
            "uptime_s": max(0.0, time.time() - self.started_at), "cpu_percent": 3.5,
            "mem_used_bytes": 48 * 2**20, "mem_total_bytes": 256 * 2**20, "health": self.health,
            "health_reason": self.health_reason,
            "interfaces": sorted({n["ifname"] for n in self._neighbours}) or ["mesh0"],
        }
        if self.services is not None:
            out["services"] = self.services()
        return out

    # Rows are flat dicts: a copy per row is enough to keep callers from changing our state.
    def neighbours(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self._neighbours]

    def routes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._routes]

    def topology(self) -> dict[str, Any]:
        with self._lock:
            return {"nodes": [dict(n) for n in self._topology.get("nodes", [])],
                    "links": [dict(link) for link in self._topology.get("links", [])],
                    "statistics": self._mesh_statistics()}

    def _mesh_statistics(self) -> dict[str, Any]:
        """The statistics the daemon's node manager keeps, computed from the topology held here."""
        nodes = [n["node_id"] for n in self._topology.get("nodes", [])]
        links = self._topology.get("links", [])
        adj: dict[str, set[str]] = {n: set() for n in nodes}
        hist = dict.fromkeys(QUALITY_CLASSES[:-1], 0)
        for link in links:
            adj.setdefault(link["a"], set()).add(link["b"])
            adj.setdefault(link["b"], set()).add(link["a"])
            if link.get("quality") in hist:
                hist[link["quality"]] += 1
        hops, frontier = {self.node_id: 0}, [self.node_id]
        while frontier:
            nxt = []
            for n in frontier:
                for m in adj.get(n, ()):
                    if m not in hops:
                        hops[m] = hops[n] + 1
                        nxt.append(m)
            frontier = nxt
        others = len(nodes) - (self.node_id in nodes)
        return {"nodes": others, "reachable": len(hops) - 1, "links": len(links),
                "mean_degree": round(2 * len(links) / len(nodes), 3) if nodes else 0.0,
                "max_hops": max(hops.values()), "quality_histogram": hist, "joins": others, "leaves": 0}

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(limit, EVENTS_LIMIT_MAX))
        with self._lock:
            return [dict(e) for e in self._events if e["seq"] > since][:limit]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**copy.deepcopy(self._stats), "mesh": self._mesh_statistics()}

    def rtt_histograms(self) -> dict[str, Any]:
        with self._lock:
            return {"bounds_ms": list(RTT_HISTOGRAM_BOUNDS_MS),
                    "peers": {k: {"counts": list(c), "sum_ms": t} for k, (c, t) in self._rtt.items()}}

    def config_get(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._config)

    def config_ranges(self) -> dict[str, tuple[float, float]]:
        """The valid range of each setting, as `validate_changes` enforces it (for the Settings page)."""
        return {f"{sec}.{k}": (spec[1], spec[2]) for sec, keys in CONFIG_SCHEMA.items() for k, spec in keys.items()}

    def config_set(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            merged = validate_changes(self._config, changes)
            if self._persist_path is not None:
                write_atomic(self._persist_path, json.dumps(merged, indent=1, sort_keys=True).encode())
            self._config = merged
            return copy.deepcopy(merged)


def demo_provider(persist_path: pathlib.Path | None = None) -> MemoryProvider:
    """A provider with a small plausible mesh (5 nodes) for the demo server, screenshots and benches."""
    p = MemoryProvider(persist_path=persist_path)
    others = [("b7c1d2e3f4a50617", "node-b", "mesh0", 2.1, 0.0, 54e6, "good", 10),
              ("c3d4e5f6a7b80912", "node-c", "mesh0", 9.8, 0.04, 12e6, "fair", 40),
              ("d9e8f7a6b5c40312", "node-d", "mesh1", 35.0, 0.18, 1.5e6, "poor", 160)]
    p.set_neighbours([{"node_id": nid, "ifname": ifn, "addr": f"fe80::{nid[:4]}:{nid[4:8]}", "state": "up",
                       "rtt_ms": rtt, "loss": loss, "throughput_bps": tp,
                       "throughput_source": "kernel" if ifn == "mesh0" else "probe", "quality": q, "cost": cost,
                       "last_seen_s": 0.4} for nid, _n, ifn, rtt, loss, tp, q, cost in others])
    far = ("e1f2a3b4c5d60789", "node-e")
    nodes = [p._self_node()] + [{"node_id": nid, "name": n, "mesh_addr": f"fd58:7830:746c::{nid[:4]}:{nid[4:8]}",
                                  "self": False} for nid, n, *_ in others]
    nodes.append({"node_id": far[0], "name": far[1], "mesh_addr": f"fd58:7830:746c::{far[0][:4]}:{far[0][4:8]}",
                  "self": False})
    links = [{"a": p.node_id, "b": nid, "cost": cost, "quality": q, "throughput_bps": tp}
             for nid, _n, _i, _r, _l, tp, q, cost in others]
    links += [{"a": others[0][0], "b": others[1][0], "cost": 12, "quality": "good", "throughput_bps": 60e6},
              {"a": others[1][0], "b": far[0], "cost": 30, "quality": "fair", "throughput_bps": 20e6},
              {"a": others[2][0], "b": far[0], "cost": 200, "quality": "poor", "throughput_bps": 2e6}]
    p.set_topology({"nodes": nodes, "links": links})
    p.set_routes([{"dest": f"{n['mesh_addr']}/128", "via": f"fe80::{n['node_id'][:4]}:{n['node_id'][4:8]}",
                   "ifname": "mesh0", "metric": 10 + 10 * i, "node_id": n["node_id"]}
                  for i, n in enumerate(nodes[1:])])
    for nid, name, *_ in others:
        p.add_event("neighbour_up", f"neighbour {name} up", {"node_id": nid})
    p.add_event("route_change", "route to node-e via node-c", {"dest": nodes[-1]["mesh_addr"] + "/128"})
    p.count_drop("bad_signature", 3)
    p.count_drop("replay", 1)
    p.count_spf(0.0012)
    return p
