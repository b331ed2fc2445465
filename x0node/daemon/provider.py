"""The daemon's NodeStateProvider (x0node/web/provider.py): the web UI's view of the running node.

Rules: every method is synchronous, cheap and returns JSON-ready values built from the router's
views; `config_set` validates all changes against the daemon config (same checks as the file), persists
them to config.local.toml and raises the web ConfigError naming the dotted key, changing nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from x0node import __version__
from x0node.daemon.config import ConfigError as DaemonConfigError
from x0node.web.provider import QUALITY_CLASSES

EVENTS_LIMIT_MAX = 500


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
    if kind == "MessageDropped":
        return f"dropped a datagram from {d.get('src')} on {d.get('ifname')}: {d.get('reason')}"
    return kind


def _role_name(role: Any) -> str | None:
    from x0node.proto.trust import Role

    return Role(role).name.lower() if isinstance(role, int) and role in Role._value2member_map_ else None


class DaemonStateProvider:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._host: Any = None

    def status(self) -> dict[str, Any]:
        n = self.node
        st = n.router.stats()
        up = st.get("neighbours_up", 0)
        ifaces_up = any(v.get("up") for v in st.get("interfaces", {}).values())
        health = "ok" if up > 0 else ("degraded" if ifaces_up else "down")
        cpu = mem_used = mem_total = None
        try:
            if self._host is None:
                from x0node.web.host_stats import HostStats

                self._host = HostStats()
            sample = self._host.sample()
            cpu, mem_used, mem_total = sample.get("cpu_percent"), sample.get("mem_used_bytes"), sample.get("mem_total_bytes")
        except Exception:  # noqa: BLE001 - host figures are optional
            pass
        out = {
            "node_id": n.identity.node_id.hex(),
            "name": os.uname().nodename,
            "mesh_addr": n.identity.mesh_address,
            "version": __version__,
            "uptime_s": round(time.monotonic() - n.started_mono, 3),
            "cpu_percent": cpu,
            "mem_used_bytes": mem_used,
            "mem_total_bytes": mem_total,
            "health": health,
            "interfaces": list(n.interfaces),
            "neighbours_up": up,
            "routes": st.get("routes", 0),
            "kernel_routes": len(n.netlink.installed),
        }
        if n.services is not None:
            out["services"] = n.services.status()
        return out

    def neighbours(self) -> list[dict[str, Any]]:
        out = []
        for v in self.node.router.neighbours(self.node.now()):
            q = str(v.get("quality", "unknown")).lower()
            out.append({
                "node_id": v["node_id"], "ifname": v["ifname"], "addr": v.get("address"), "state": v.get("state"),
                "rtt_ms": v.get("rtt_ms"), "loss": v.get("loss"), "throughput_bps": v.get("throughput_bps"),
                "quality": q if q in QUALITY_CLASSES else "unknown", "cost": v.get("cost"),
                "last_seen_s": v.get("last_heard_s_ago"), "up_for_s": v.get("up_for_s"),
            })
        return out

    def routes(self) -> list[dict[str, Any]]:
        out = []
        for r in self.node.router.routes():
            out.append({
                "dest": r.get("dest"), "via": r.get("via"), "ifname": r.get("ifname"), "metric": r.get("metric"),
                "node_id": r.get("node_id", r.get("origin")),  # the core names it origin
            })
        return out

    def topology(self) -> dict[str, Any]:
        t = self.node.router.topology()
        nodes = [{
            "node_id": x["node_id"], "name": None, "mesh_addr": x.get("mesh_address"), "self": bool(x.get("self")),
            "reachable": x.get("reachable"), "role": _role_name(x.get("role")),
        } for x in t.get("nodes", [])]
        if not any(x["self"] for x in nodes):
            nodes.insert(0, {"node_id": self.node.identity.node_id.hex(), "name": None,
                             "mesh_addr": self.node.identity.mesh_address, "self": True, "reachable": True})
        links = []
        for e in t.get("edges", []):
            q = str(e.get("quality", "unknown")).lower()
            links.append({"a": e["a"], "b": e["b"], "cost": e.get("cost"),
                          "quality": q if q in QUALITY_CLASSES else "unknown"})
        return {"nodes": nodes, "links": links}

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(0, min(int(limit), EVENTS_LIMIT_MAX))
        out = []
        for item in self.node.bus.since(int(since)):
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
        drops = dict(st.get("drops", {}))
        for reason, n in self.node.transport.drops.items():
            drops[f"udp_{reason}"] = n
        return {
            "drops": drops,
            "routes": st.get("routes", 0),
            "lsdb_size": st.get("lsdb_size", 0),
            "spf_runs": st.get("spf_runs", 0),
            "spf_seconds_total": (st.get("spf_total_ms") or 0.0) / 1000.0,
            "counters": dict(st.get("counters", {})),
            "credential_checks": dict(st.get("credential_checks", {})),
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
        from x0node.web.provider import ConfigError

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
        try:
            self.node.set_config(flat)
        except DaemonConfigError as exc:
            raise ConfigError(exc.key, exc.message) from None
        return self.config_get()
