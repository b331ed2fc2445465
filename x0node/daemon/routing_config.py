"""The `[routing]` config section maps onto the core's RouterConfig dataclass, field by field.

Rules: a key must name a RouterConfig field; its value must have that field's type (ints are accepted
where a float is expected). The core stays the single place that defines timers and limits.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

# RouterConfig fields the daemon sets from other sections ([node] prefixes), not from [routing].
DAEMON_OWNED_FIELDS = frozenset({"prefixes"})


def _router_config_class() -> Any:
    from x0node.proto.router import RouterConfig

    return RouterConfig


def routing_fields() -> dict[str, type | None] | None:
    """Field name -> expected Python type (None when the type is not a plain scalar), or None when the
    core is not importable."""
    try:
        cls = _router_config_class()
    except ImportError:
        return None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to names only
        hints = {}
    out: dict[str, type | None] = {}
    for f in dataclasses.fields(cls):
        if f.name in DAEMON_OWNED_FIELDS:
            continue
        hint = hints.get(f.name)
        out[f.name] = hint if hint in (int, float, bool, str) else None
    return out


def build_router_config(overrides: dict[str, Any]) -> Any:
    """RouterConfig with the validated `[routing]` overrides applied."""
    cls = _router_config_class()
    return cls(**overrides)
