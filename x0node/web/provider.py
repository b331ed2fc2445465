"""The contract between the web application and whatever holds the node's live state.

The web app never reaches into the router or the daemon directly: it only calls a
`NodeStateProvider`. The daemon implements it over the Router and its services; unit tests and the
`x0node web demo` command use `x0node.web.memory_provider.MemoryProvider`.

Rules every implementation keeps:
- Every method is synchronous, cheap (called on each API request and each metrics scrape) and returns
  JSON-ready values (dict/list/str/int/float/bool/None), never live internal objects.
- `events(since)` returns events whose `seq` is strictly greater than `since`, oldest first, bounded by
  `limit`; `seq` increases by one per event for the life of the process.
- `config_set(changes)` validates *all* of `changes` before applying any of them (all or nothing), with
  the same validation as the config file, persists the accepted values so they survive a restart, and
  raises `ConfigError` naming the offending dotted key otherwise.
- `stats()` feeds `/metrics`; counters in it only ever grow.

Shapes (keys the UI and the OpenAPI document rely on; extra keys are allowed and shown as-is):
- status: node_id, name, mesh_addr, version, uptime_s, cpu_percent, mem_used_bytes, mem_total_bytes,
  health ("ok" | "degraded" | "down"), interfaces (list of str)
- neighbour: node_id, ifname, addr, state, rtt_ms, loss (0..1), throughput_bps (None: unknown),
  throughput_source ("kernel" | "probe" | None), quality, cost, last_seen_s
- route: dest ("addr/len"), via, ifname, metric, node_id (origin, may be None)
- topology: {"nodes": [{node_id, name, mesh_addr, self}], "links": [{a, b, cost, quality, throughput_bps}],
  "statistics": mesh statistics}
- mesh statistics: nodes, reachable, links, mean_degree, max_hops, quality_histogram ({class: links},
  every class), joins, leaves
- event: seq, time (unix seconds), kind, message, detail (dict)
- stats: drops ({reason: count}), routes, lsdb_size, spf_runs, spf_seconds_total; optionally
  route_refusals ({reason: count}), counters ({name: count}), retransmit_queue, mesh (mesh statistics)
Quality classes are "excellent", "good", "fair", "poor", "bad" or "unknown" (the core's classes).
The daemon's provider returns the routing core's read model (x0node/proto/views.py), whose field
names are these.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from x0node.errors import ConfigError

__all__ = ["EVENTS_LIMIT_MAX", "HEALTH_STATES", "QUALITY_CLASSES", "ConfigError", "NodeStateProvider"]

QUALITY_CLASSES: tuple[str, ...] = ("excellent", "good", "fair", "poor", "bad", "unknown")
HEALTH_STATES: tuple[str, ...] = ("ok", "degraded", "down")
EVENTS_LIMIT_MAX = 500


@runtime_checkable
class NodeStateProvider(Protocol):
    """Read-only views of the node plus validated configuration writes."""

    def status(self) -> dict[str, Any]: ...

    def neighbours(self) -> list[dict[str, Any]]: ...

    def routes(self) -> list[dict[str, Any]]: ...

    def topology(self) -> dict[str, Any]: ...

    def events(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]: ...

    def stats(self) -> dict[str, Any]: ...

    def config_get(self) -> dict[str, Any]: ...

    def config_set(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply nested `{section: {key: value}}` changes; return the whole new config."""
        ...
