"""The daemon's Prometheus registry, shared by the services and served at `/metrics` by the web UI.

Rules: node state (the routing core's read model, drops by reason, the core's counters) is exported by
one collector, the web UI's `NodeStateCollector` over the daemon's state provider; services register
their own families here under the `x0node_` prefix. Imported only when at least one service is
enabled, so a plain router does not load prometheus_client.
"""

from __future__ import annotations

from typing import Any


def make_registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()
