"""Checks of the local-fleet compose file (fleet/compose/compose.yaml) without a Compose engine.

What is checked, and what is not:
- `schema_problems`: the file against SCHEMA, a JSON Schema of the part of the Compose Specification
  (compose-spec.io) this file uses, written from the specification's text with `additionalProperties:
  false` at every level we use, so a misspelled or invented key, a wrong type or an unknown
  `depends_on` condition fails. It is a subset: keys the specification allows but we do not use are
  refused too (add them to SCHEMA when the file needs them).
- `reference_problems`: what a schema cannot say: every network, named volume and `depends_on` target
  is declared; every bind-mounted host path exists beside the file; `x-` extension anchors are merged.
- The mounted configs are checked by their own tools in the tests (promtool, amtool, the daemon's config
  loader), and the provisioning script runs inside the built image in tests/image.
- Not checked: that an engine pulls the upstream Prometheus/Alertmanager images (no registry here), and
  that the bridge passes IPv6 link-local multicast between containers (engine- and kernel-specific).
"""

from __future__ import annotations

import pathlib
from typing import Any

from x0node.fleet.checks import FLEET_DIR

COMPOSE_FILE = FLEET_DIR / "compose" / "compose.yaml"

_STR_LIST = {"type": "array", "items": {"type": "string"}}
_SERVICE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "command": _STR_LIST,
        "entrypoint": _STR_LIST,
        "hostname": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "cap_add": {"type": "array", "items": {"enum": ["NET_ADMIN", "NET_RAW"]}},
        "sysctls": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
        "networks": {"type": "array", "items": {"type": "string"}},
        "network_mode": {"enum": ["none", "host", "bridge"]},
        "volumes": {"type": "array", "items": {"type": "string", "pattern": "^[^:]+:/[^:]*(:(ro|rw))?$"}},
        "ports": {"type": "array", "items": {"type": "string",
                                             "pattern": r"^(\d{1,3}(\.\d{1,3}){3}:)?\d{1,5}:\d{1,5}(/(tcp|udp))?$"}},
        "depends_on": {"oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["condition"],
                "properties": {"condition": {"enum": ["service_started", "service_healthy",
                                                      "service_completed_successfully"]}}}},
        ]},
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["services"],
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {"type": "object", "minProperties": 1, "additionalProperties": _SERVICE},
        "networks": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False,
            "properties": {"driver": {"enum": ["bridge"]}, "ipam": {
                "type": "object", "additionalProperties": False, "properties": {"config": {
                    "type": "array", "items": {"type": "object", "additionalProperties": False,
                                               "properties": {"subnet": {"type": "string"}}}}}}}}},
        "volumes": {"type": "object", "additionalProperties": {"type": "object", "maxProperties": 0}},
    },
}


def load(path: pathlib.Path = COMPOSE_FILE) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())  # SafeLoader merges `<<: *anchor`


def schema_problems(doc: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def reference_problems(doc: dict[str, Any], base: pathlib.Path = COMPOSE_FILE.parent) -> list[str]:
    out: list[str] = []
    services = doc.get("services", {})
    networks = set(doc.get("networks", {}))
    volumes = set(doc.get("volumes", {}))
    for name, svc in services.items():
        for net in svc.get("networks", []):
            if net not in networks:
                out.append(f"{name}: network {net} is not declared")
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                out.append(f"{name}: depends on unknown service {dep}")
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    out.append(f"{name}: bind mount {source} does not exist")
            elif source not in volumes:
                out.append(f"{name}: volume {source} is not declared")
    return out
