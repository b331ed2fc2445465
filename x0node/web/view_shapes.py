"""Normalising provider views to the shapes the API documents (docs/web.md, openapi.py).

The provider contract names the keys, but the router core's own views use a few other spellings
(`address`, `mesh_address`, `edges`, `origin`, `last_heard_s_ago`, `spf_total_ms`, upper-case quality
names). Each function here maps those onto the documented key when the documented key is absent, never
overwrites a documented key, keeps unknown extra keys, and lower-cases quality classes (anything not
in `QUALITY_CLASSES` becomes "unknown"). Pure; never raises on odd input (non-dicts are dropped).
"""

from __future__ import annotations

from typing import Any

from x0node.web.provider import QUALITY_CLASSES

_NEIGHBOUR_ALIASES = {"addr": "address", "last_seen_s": "last_heard_s_ago"}
_NODE_ALIASES = {"mesh_addr": "mesh_address"}
_ROUTE_ALIASES = {"node_id": "origin"}


def _aliased(d: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    out = dict(d)
    for ours, theirs in aliases.items():
        if ours not in out and theirs in out:
            out[ours] = out[theirs]
    return out


def quality(q: Any) -> str:
    s = str(q).lower() if q is not None else "unknown"
    return s if s in QUALITY_CLASSES else "unknown"


def neighbours(rows: Any) -> list[dict[str, Any]]:
    out = []
    for r in rows if isinstance(rows, list) else []:
        if isinstance(r, dict):
            n = _aliased(r, _NEIGHBOUR_ALIASES)
            n["quality"] = quality(n.get("quality"))
            out.append(n)
    return out


def routes(rows: Any) -> list[dict[str, Any]]:
    return [_aliased(r, _ROUTE_ALIASES) for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict)]


def topology(t: Any) -> dict[str, Any]:
    t = t if isinstance(t, dict) else {}
    out = {k: v for k, v in t.items() if k not in ("nodes", "links", "edges")}
    self_id = t.get("self") if isinstance(t.get("self"), str) else None
    nodes = []
    for n in t.get("nodes") or []:
        if isinstance(n, dict):
            m = _aliased(n, _NODE_ALIASES)
            if "self" not in m and self_id is not None:
                m["self"] = m.get("node_id") == self_id
            nodes.append(m)
    links = []
    for link in t.get("links", t.get("edges")) or []:
        if isinstance(link, dict):
            x = dict(link)
            x["quality"] = quality(x.get("quality"))
            links.append(x)
    out["nodes"], out["links"] = nodes, links
    return out


def status(s: Any) -> dict[str, Any]:
    return _aliased(s if isinstance(s, dict) else {}, _NODE_ALIASES)


def stats(s: Any) -> dict[str, Any]:
    out = dict(s) if isinstance(s, dict) else {}
    if "spf_seconds_total" not in out and isinstance(out.get("spf_total_ms"), int | float):
        out["spf_seconds_total"] = out["spf_total_ms"] / 1000.0
    return out
