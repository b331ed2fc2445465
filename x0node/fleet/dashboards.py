"""The fleet's five Grafana dashboards, generated from code as provisioning JSON.

Rules and invariants:
- Each dashboard is a plain dict in Grafana's dashboard JSON model (schemaVersion SCHEMA_VERSION), built
  by `dashboards()`; `write(dir)` renders them with sorted keys, so the committed files under
  fleet/grafana/dashboards/ are exactly what this module produces (a test compares them).
- Every query is PromQL over the Prometheus datasource DATASOURCE_UID (provisioned by
  fleet/grafana/provisioning/datasources/). `x0node.fleet.checks` parses each expression with promtool,
  extracts the metrics it reads and requires each to be one x0node exports or a recording rule of
  fleet/prometheus/rules/.
- Panel ids are unique per dashboard and the grid is filled left to right, PANEL_W x PANEL_H each.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE_UID = "x0-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
PANEL_W, PANEL_H, GRID_W = 12, 8, 24

# (title, uid, description, tags, panels); a panel is (kind, title, unit, [(expr, legend)])
Panel = tuple[str, str, str, list[tuple[str, str]]]

MESH_TOPOLOGY: list[Panel] = [
    ("stat", "Known nodes", "none", [("count(count by (node_id) (x0node_node_info))", "nodes")]),
    ("stat", "Unreachable nodes", "none", [("count(x0node:node_health_status:min == 0) or vector(0)", "unreachable")]),
    ("timeseries", "Neighbours up per router", "none", [("mesh_peers_count", "{{instance}}")]),
    ("timeseries", "Link RTT p95 per peer", "s", [("x0node:mesh_latency_seconds:p95_5m", "{{instance}} -> {{peer_id}}")]),
    ("table", "Node health (worst view)", "none", [("x0node:node_health_status:min", "{{node_id}}")]),
    ("timeseries", "Routes and link-state records", "none",
     [("x0node_routes", "routes {{instance}}"), ("x0node_lsdb_size", "LSDB {{instance}}")]),
]
MAPE_K: list[Panel] = [
    ("timeseries", "Cycle time p95 by phase", "s",
     [("histogram_quantile(0.95, sum by (le, phase) (rate(mape_k_cycle_duration_seconds_bucket[5m])))", "{{phase}}")]),
    ("timeseries", "MTTR p95 by recovery", "s", [("x0node:self_healing_mttr_seconds:p95_5m", "{{recovery_type}}")]),
    ("timeseries", "Healing actions", "ops",
     [("sum by (action, success) (rate(self_healing_events_total[5m]))", "{{action}} ok={{success}}")]),
    ("timeseries", "Open incidents", "none", [("x0_healing_open_incidents", "{{instance}}")]),
    ("table", "Healing mode", "none", [("x0_healing_mode == 1", "{{instance}} {{mode}}")]),
    ("timeseries", "Data-plane probes", "ops", [("sum by (outcome) (rate(x0_healing_probes_total[5m]))", "{{outcome}}")]),
]
SECURITY: list[Panel] = [
    ("timeseries", "Credential failure ratio", "percentunit", [("x0node:cert_auth_failure:ratio_5m", "{{instance}}")]),
    ("timeseries", "Credential refusals by reason", "ops",
     [("sum by (reason) (rate(x0node_cert_auth_failure_total[5m]))", "{{reason}}")]),
    ("timeseries", "Credential checks passed", "ops", [("sum by (instance) (rate(x0node_cert_auth_success_total[5m]))", "{{instance}}")]),
    ("timeseries", "Refused datagrams by reason", "ops",
     [("sum by (reason) (rate(x0node_packets_dropped_total[5m]))", "{{reason}}")]),
]
RESOURCES: list[Panel] = [
    ("timeseries", "Daemon CPU", "percentunit", [("rate(process_cpu_seconds_total{job=\"x0node\"}[5m])", "{{instance}}")]),
    ("timeseries", "Daemon resident memory", "bytes", [("process_resident_memory_bytes{job=\"x0node\"}", "{{instance}}")]),
    ("timeseries", "Host CPU", "percent", [("x0node_host_cpu_percent", "{{instance}}")]),
    ("timeseries", "Host memory used", "percentunit",
     [("x0node_host_memory_used_bytes / x0node_host_memory_total_bytes", "{{instance}}")]),
    ("timeseries", "Time in shortest-path computations", "percentunit", [("rate(x0node_spf_seconds_total[5m])", "{{instance}}")]),
    ("timeseries", "Open file descriptors", "none", [("process_open_fds{job=\"x0node\"}", "{{instance}}")]),
]
ERRORS: list[Panel] = [
    ("timeseries", "HTTP 5xx ratio", "percentunit",
     [("sum by (instance) (rate(http_requests_total{status=~\"5..\"}[5m])) / sum by (instance) (rate(http_requests_total[5m]))",
       "{{instance}}")]),
    ("timeseries", "HTTP requests by status", "reqps", [("sum by (status) (rate(http_requests_total[5m]))", "{{status}}")]),
    ("timeseries", "HTTP latency p95", "s",
     [("histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))", "p95")]),
    ("timeseries", "Failed healing actions", "ops",
     [("sum by (action) (rate(self_healing_events_total{success=\"false\"}[5m]))", "{{action}}")]),
    ("timeseries", "Scrape errors and lost neighbours", "ops",
     [("rate(x0node_web_scrape_errors_total[5m])", "scrape errors {{instance}}"),
      ("rate(x0node_core_neighbour_down_total[5m])", "neighbours lost {{instance}}")]),
    ("stat", "Routers not answering", "none", [("count(up{job=\"x0node\"} == 0) or vector(0)", "down")]),
]

DASHBOARDS: list[tuple[str, str, str, list[Panel]]] = [
    ("x0-mesh-topology", "x0 mesh topology", "Nodes, neighbours, link RTT and routes as the routers see them.", MESH_TOPOLOGY),
    ("x0-mape-k", "x0 MAPE-K cycles", "The self-healing loop: phase times, actions, MTTR and incidents.", MAPE_K),
    ("x0-security", "x0 security events", "Credential checks of signed routing messages and refused input.", SECURITY),
    ("x0-resources", "x0 resource utilisation", "Daemon and host CPU and memory on every router.", RESOURCES),
    ("x0-errors", "x0 error rates", "API errors, failed healing actions, scrape failures and unreachable routers.", ERRORS),
]


def _panel(pid: int, spec: Panel) -> dict[str, Any]:
    kind, title, unit, queries = spec
    col, row = (pid - 1) % (GRID_W // PANEL_W), (pid - 1) // (GRID_W // PANEL_W)
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": col * PANEL_W, "y": row * PANEL_H, "w": PANEL_W, "h": PANEL_H},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "transparent": False,
        "transformations": [],
        "repeatDirection": "h",
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
             "format": "table" if kind == "table" else "time_series", "instant": kind == "table"}
            for i, (expr, legend) in enumerate(queries)
        ],
    }
    return panel


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["x0tta6bl4"],
        "editable": False,
        "style": "dark",
        "fiscalYearStartMonth": 0,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "graphTooltip": 1,
        "panels": [_panel(i + 1, p) for i, p in enumerate(panels)],
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    return {f"{uid}.json": dashboard(uid, title, desc, panels) for uid, title, desc, panels in DASHBOARDS}


def render(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1, sort_keys=True) + "\n"


def expressions(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in d.get("panels", []) for t in p.get("targets", []) if "expr" in t]


def write(out_dir: pathlib.Path) -> list[pathlib.Path]:
    from x0node.io.atomicfile import write_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, d in dashboards().items():
        path = out_dir / name
        write_atomic(path, render(d).encode(), mode=0o644)
        written.append(path)
    return written
