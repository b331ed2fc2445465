"""Check JSON values against the schemas of the served OpenAPI 3.0 document (for providers other than
the in-memory one, e.g. the daemon's, whose responses a browser fetched)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

RESPONSE_SCHEMAS = {
    "/api/v1/status": {"$ref": "#/components/schemas/Status"},
    "/api/v1/neighbours": {"type": "array", "items": {"$ref": "#/components/schemas/Neighbour"}},
    "/api/v1/routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
    "/api/v1/topology": {"$ref": "#/components/schemas/Topology"},
    "/api/v1/events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
    "/api/v1/config": {"$ref": "#/components/schemas/Config"},
}


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _to_json_schema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [_to_json_schema(x) for x in node]
    return node


def check(doc: dict[str, Any], path: str, value: Any) -> None:
    """Raise jsonschema_rs.ValidationError if `value` does not match the response schema of `path`."""
    schema = {**RESPONSE_SCHEMAS[path], "components": _to_json_schema(doc["components"])}
    jsonschema_rs.validator_for(schema).validate(value)
