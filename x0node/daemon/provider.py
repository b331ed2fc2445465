"""The daemon's NodeStateProvider (x0node/web/provider.py): the web UI's view of the running node.

Rules: every method is synchronous, cheap and returns JSON-ready values: the core's read model
(x0node/proto/views.py) as `dataclasses.asdict` gives it, whose field names are the API's, so nothing is
renamed here. `events` leaves out the detector's feature feed (topic "anomaly.features": data for the
healing loop and the state layer, not news for a person) and words the healing loop's records.
`status` says why the node is not "ok" (`health_reason`, `node_health`). `topology` adds each node's entry
of the node directory (name, roles, version, health) when the state service holds one. `config_set` validates all changes against the daemon config (same checks as the file),
persists them to config.local.toml and raises ConfigError naming the dotted key, changing nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from x0node import __version__
from x0node.errors import ConfigError

EVENTS_LIMIT_MAX = 500
HIDDEN_TOPICS = frozenset({"anomaly.features"})


def _routing_effective(overrides: dict[str, Any]) -> dict[str, Any]:
    from x0node.daemon.routing_config import DAEMON_OWNED_FIELDS, build_router_config

    cfg = build_router_config(overrides)
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in DAEMON_OWNED_FIELDS}


def _event_message(kind: str, d: dict[str, Any]) -> str:
    if kind == "NeighbourUp":
        return f"neighbour {d.get('node_id', '')[:8]} up on {d.get('ifname')}"
    if kind == "NeighbourDown":
        return f"neighbour {d.get('node_id', '')[:8]} down on {d.get('ifname')} ({d.get('reason')})"
    if kind == "NodeJoined":
        return f"node {d.get('node_id', '')[:8]} joined"
    if kind == "NodeLeft":
        return f"node {d.get('node_id', '')[:8]} left ({d.get('reason')})"
    if kind == "RoutesChanged":
        return f"routes +{d.get('added')} ~{d.get('replaced')} -{d.get('removed')}"
    if kind == "IncidentOpened":
        return f"incident {d.get('incident_id')} opened: {', '.join(d.get('symptoms') or [])}"
    if kind == "Diagnosed":
        cands = d.get("candidates") or []
        if cands and isinstance(cands[0], list | tuple) and len(cands[0]) == 3:
            el, fault, conf = cands[0]
            return f"incident {d.get('incident_id')}: root cause {fault} at {el} ({float(conf):.0%})"
        return f"incident {d.get('incident_id')}: no root cause found"
    if kind == "Decided":
        return f"incident {d.get('incident_id')}: {d.get('outcome')} {d.get('action')} on {d.get('target')}"
    if kind == "ActionDone":
        what = "undo" if d.get("undo") else "action"
        return f"incident {d.get('incident_id')}: {what} {d.get('action')} on {d.get('target')} " \
               f"{'done' if d.get('ok') else 'failed'}"
    if kind == "Verified":
        return f"incident {d.get('incident_id')}: {'verified' if d.get('success') else 'not verified'} ({d.get('reason')})"
    if kind == "IncidentClosed":
        return f"incident {d.get('incident_id')} closed: {d.get('outcome')}"
    if kind == "ModeChanged":
        return f"self-healing mode {d.get('old')} -> {d.get('new')} ({d.get('reason')})"
    if kind == "RouteRefused":
        return f"the kernel refused route {d.get('op')} {d.get('dest')} dev {d.get('ifname')}: {d.get('reason')}"
    return kind


def node_health(st: Any) -> tuple[str, str | None]:
    """The health summary of a node from the core's StatsView: ("ok" | "degraded" | "down", why not ok).
    The status page and the node directory (x0node/state/directory.py) both use it."""
    ifaces_up = [i.name for i in st.interfaces if i.up]
    health = "ok" if st.neighbours_up > 0 else ("degraded" if ifaces_up else "down")
    if health == "degraded":
        return health, f"no neighbour answers on {', '.join(ifaces_up)}: no other node in range, or theirs are down"
    if health == "down":
        return health, "no mesh interface is up" if st.interfaces else "no mesh interface configured"
    return health, None


DIRECTORY_FIELDS = ("name", "roles", "version", "health", "health_reason", "neighbours_up", "uptime_s")
"""What the node directory adds to a topology node (when the node's entry is held)."""


class DaemonStateProvider:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._host: Any = None

    def status(self) -> dict[str, Any]:
        n = self.node
        st = n.router.stats()
        health, reason = node_health(st)
        cpu = mem_used = mem_total = None
        try:
            if self._host is None:
                from x0node.web.host_stats import HostStats

                self._host = HostStats()
            sample = self._host.sample()
            cpu, mem_used, mem_total = sample.get("cpu_percent"), sample.get("mem_used_bytes"), sample.get("mem_total_bytes")
        except Exception:  # noqa: BLE001 - host figures are optional - a failed host sample shows as unknown # nosec B110
            pass
        out = {
            "node_id": st.node_id,
            "name": os.uname().nodename,
            "mesh_addr": st.mesh_addr,
            "version": __version__,
            "uptime_s": round(time.monotonic() - n.started_mono, 3),
            "cpu_percent": cpu,
            "mem_used_bytes": mem_used,
            "mem_total_bytes": mem_total,
            "health": health,
            "health_reason": reason,
            "interfaces": list(n.interfaces),
            "neighbours_up": st.neighbours_up,
            "routes": st.routes,
        }
        if n.services is not None:
            out["services"] = n.services.status()
        return out

    def neighbours(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(v) for v in self.node.router.neighbours(self.node.now())]

    def routes(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(v) for v in self.node.router.routes()]

    def topology(self) -> dict[str, Any]:
        out = dataclasses.asdict(self.node.router.topology())
        ctx = getattr(self.node, "ctx", None)
        state = None if ctx is None else ctx.extras.get("state")
        entries = state.directory_by_id() if state is not None and state.gossip is not None else {}
        for nd in out["nodes"]:
            e = entries.get(nd["node_id"])
            if e is not None:
                nd.update({k: e[k] for k in DIRECTORY_FIELDS})
        return out

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(0, min(int(limit), EVENTS_LIMIT_MAX))
        out = []
        for item in self.node.bus.since(int(since)):
            if item.topic in HIDDEN_TOPICS:
                continue
            d = item.as_dict()["event"]
            kind = str(d.pop("kind", None) or d.pop("type", "event"))
            d.pop("type", None)
            out.append({"seq": item.seq, "time": item.ts, "kind": kind, "message": _event_message(kind, d),
                        "detail": d})
            if len(out) >= limit:
                break
        return out

    def stats(self) -> dict[str, Any]:
        st = self.node.router.stats()
        drops = dict(st.drops.datagrams)
        for reason, n in self.node.transport.drops.items():
            drops[f"udp_{reason}"] = n
        return {
            "drops": drops,
            "route_refusals": dict(st.drops.routes),
            "routes": st.routes,
            "lsdb_size": st.lsdb_size,
            "spf_runs": st.spf_runs,
            "spf_seconds_total": st.spf_seconds_total,
            "counters": dict(st.counters),
            "retransmit_queue": st.retransmit_queue,
            "mesh": dataclasses.asdict(st.mesh),
            "credential_checks": dict(st.credential_checks),
        }

    def rtt_histograms(self) -> dict[str, Any]:
        from x0node.proto.neighbour import RTT_HISTOGRAM_BOUNDS_MS

        return {"bounds_ms": list(RTT_HISTOGRAM_BOUNDS_MS),
                "peers": {nid: {"counts": list(c), "sum_ms": s} for nid, (c, s) in self.node.router.rtt_histograms().items()}}

    def config_get(self) -> dict[str, Any]:
        cfg = self.node.config.as_dict()
        cfg["routing"] = _routing_effective(cfg.get("routing", {}))
        return cfg

    def config_set(self, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise ConfigError("", "expected an object of sections")
        current = self.config_get()
        flat: dict[str, Any] = {}
        for section, values in changes.items():
            if not isinstance(values, dict):
                raise ConfigError(str(section), "expected an object of settings")
            for key, value in values.items():
                if current.get(section, {}).get(key, object()) == value and type(value) is type(current[section][key]):
                    continue  # unchanged: not written to config.local.toml
                flat[f"{section}.{key}"] = value
        if not flat:
            return current
        self.node.set_config(flat)
        return self.config_get()
