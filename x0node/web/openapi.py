"""The OpenAPI 3.0 document for /api/v1/, served at /api/v1/openapi.json.

It describes what the handlers in `x0node.web.app` really do (status codes included); the test suite
checks it against the running app with schemathesis, so a handler change that is not reflected here
fails. Authentication: the `x0_session` cookie; state changes also need the `X-CSRF-Token` header.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


NUM = {"type": "number"}
STR = {"type": "string"}
NULLABLE_NUM = {"type": "number", "nullable": True}
NULLABLE_STR = {"type": "string", "nullable": True}
QUALITY = {"type": "string", "enum": ["excellent", "good", "fair", "poor", "bad", "unknown"]}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": STR, "key": STR, "retry_after_s": {"type": "integer"}}},
    "AuthState": {"type": "object", "required": ["password_set", "authenticated", "csrf_token"],
                  "properties": {"password_set": {"type": "boolean"}, "authenticated": {"type": "boolean"},
                                 "csrf_token": STR}},
    "Session": {"type": "object", "required": ["authenticated", "csrf_token"],
                "properties": {"authenticated": {"type": "boolean"}, "csrf_token": STR}},
    "Status": {"type": "object",
               "required": ["node_id", "mesh_addr", "version", "uptime_s", "health"],
               "properties": {"node_id": STR, "name": NULLABLE_STR, "mesh_addr": STR, "version": STR,
                              "uptime_s": NUM, "cpu_percent": NULLABLE_NUM, "mem_used_bytes": NULLABLE_NUM,
                              "mem_total_bytes": NULLABLE_NUM,
                              "health": {"type": "string", "enum": ["ok", "degraded", "down"]},
                              "health_reason": {"type": "string", "nullable": True,
                                                "description": "Why health is not ok, in words"},
                              "interfaces": {"type": "array", "items": STR}}},
    "Neighbour": {"type": "object", "required": ["node_id", "ifname", "quality"],
                  "properties": {"node_id": STR, "ifname": STR, "addr": NULLABLE_STR, "state": STR,
                                 "rtt_ms": NULLABLE_NUM, "loss": NULLABLE_NUM, "throughput_bps": NULLABLE_NUM,
                                 "throughput_source": {"type": "string", "enum": ["kernel", "probe"],
                                                       "nullable": True},
                                 "quality": QUALITY, "cost": NULLABLE_NUM, "last_seen_s": NULLABLE_NUM,
                                 "ctl_received": NULLABLE_NUM, "ctl_missed": NULLABLE_NUM}},
    "Route": {"type": "object", "required": ["dest"],
              "properties": {"dest": STR, "via": NULLABLE_STR, "ifname": NULLABLE_STR, "metric": NULLABLE_NUM,
                             "node_id": NULLABLE_STR}},
    "Topology": {"type": "object", "required": ["nodes", "links"],
                 "properties": {
                     "nodes": {"type": "array", "items": {
                         "type": "object", "required": ["node_id"],
                         "properties": {"node_id": STR, "name": NULLABLE_STR, "mesh_addr": NULLABLE_STR,
                                        "self": {"type": "boolean"},
                                        # from the node directory (docs/state.md), when that node's entry is held
                                        "roles": {"type": "array", "items": STR}, "version": STR,
                                        "health": {"type": "string", "enum": ["ok", "degraded", "down"]},
                                        "health_reason": NULLABLE_STR, "neighbours_up": {"type": "integer"},
                                        "uptime_s": {"type": "integer"}}}},
                     "links": {"type": "array", "items": {
                         "type": "object", "required": ["a", "b", "quality"],
                         "properties": {"a": STR, "b": STR, "cost": NULLABLE_NUM, "quality": QUALITY,
                                        "throughput_bps": NULLABLE_NUM,
                                        # b's cost towards a (`cost` is a's towards b)
                                        "cost_back": NULLABLE_NUM}}},
                     "statistics": _ref("MeshStats")}},
    "MeshStats": {"type": "object", "description": "The node manager's topology statistics",
                  "required": ["nodes", "reachable", "links", "mean_degree", "max_hops", "quality_histogram",
                               "joins", "leaves"],
                  "properties": {"nodes": {"type": "integer"}, "reachable": {"type": "integer"},
                                 "links": {"type": "integer"}, "mean_degree": NUM, "max_hops": {"type": "integer"},
                                 "quality_histogram": {"type": "object", "additionalProperties": {"type": "integer"}},
                                 "joins": {"type": "integer"}, "leaves": {"type": "integer"}}},
    "Event": {"type": "object", "required": ["seq", "time", "kind"],
              "properties": {"seq": {"type": "integer"}, "time": NUM, "kind": STR, "message": STR,
                             "detail": {"type": "object"}}},
    "Config": {"type": "object", "description": "The effective config, by section",
               "additionalProperties": {"type": "object"}},
    "StateEntry": {"type": "object", "required": ["type", "value"],
                   "description": "One mesh-state object merged from every origin's record (LWW values "
                                  "with the winning origin and its write time)",
                   "properties": {"type": {"type": "string", "enum": ["g-counter", "pn-counter", "lww", "or-set"]},
                                  "value": {"description": "JSON value; a CRL as {\"hex\": ...}"},
                                  "origins": {"type": "integer"}, "origin": STR, "written_at": NUM,
                                  "version": {"type": "integer"}}},
    "StateView": {"type": "object",
                  "required": ["node_id", "digest", "objects", "hop", "settings", "crl", "stats"],
                  "properties": {
                      "node_id": STR, "digest": STR,
                      "objects": {"type": "object", "description": "{namespace: {key: StateEntry}}",
                                  "additionalProperties": {"type": "object",
                                                           "additionalProperties": _ref("StateEntry")}},
                      "hop": {"type": "array", "description": "1-hop records from the neighbours", "items": {
                          "type": "object", "required": ["origin", "ns", "key", "expires_in_s"],
                          "properties": {"origin": STR, "ns": STR, "key": STR, "value": {},
                                         "expires_in_s": NUM}}},
                      "settings": {"type": "object", "description": "Mesh-wide settings: value and where it came from",
                                   "additionalProperties": {
                                       "type": "object", "required": ["value", "origin", "written_at"],
                                       "properties": {"value": {}, "origin": STR, "written_at": NUM,
                                                      "mesh_wide_here": {"type": "boolean"}}}},
                      "crl": {"type": "object", "required": ["revoked"],
                              "properties": {"serial": {"type": "integer", "nullable": True},
                                             "revoked": {"type": "array", "items": STR}}},
                      "stats": {"type": "object", "description": "Gossip counters, drops and refusals by reason"}}},
    "StateWritten": {"type": "object", "required": ["ok", "ns", "key", "version", "origin"],
                     "properties": {"ok": {"type": "boolean"}, "ns": STR, "key": STR,
                                    "version": {"type": "integer", "description": "The record's HLC"},
                                    "origin": STR, "serial": {"type": "integer"}}},
    "HealingStatus": {"type": "object", "required": ["mode", "pinned", "open"],
                      "properties": {"mode": {"type": "string", "enum": ["observe", "active"]},
                                     "pinned": {"type": "string", "enum": ["observe", "active"], "nullable": True,
                                                "description": "The operator's choice; null: automatic"},
                                     "observe_precision": NULLABLE_NUM, "observe_outcomes": {"type": "integer"},
                                     "cycles": {"type": "integer"}, "symptoms": {"type": "array", "items": STR},
                                     "open": {"type": "array", "items": {"type": "object"}},
                                     "disruptive_last_hour": {"type": "integer", "nullable": True},
                                     "mitigations": {"type": "array", "items": STR, "nullable": True},
                                     "tick_errors": {"type": "integer", "nullable": True},
                                     "store_errors": {"type": "integer", "nullable": True},
                                     "probes_off": NULLABLE_STR,
                                     "update_in_progress": {"type": "boolean", "nullable": True}}},
    "AnomalyAlarm": {"type": "object", "required": ["id", "raised", "fault", "source"],
                     "description": "One of this node's detector alarms and its verdict (null: not judged)",
                     "properties": {"id": {"type": "integer"}, "raised": NUM, "cleared": NULLABLE_NUM,
                                    "fault": {"type": "boolean", "nullable": True},
                                    "source": {"type": "string", "nullable": True,
                                               "enum": ["operator", "incident", "schedule", None]}}},
    "AnomalyObserve": {"type": "object", "required": ["phase", "acting"],
                       "description": "Observe mode: judged by operators' verdicts and confirmed faults, never "
                                      "by the rules",
                       "properties": {"phase": {"type": "string", "enum": ["observe", "validate", "confidence",
                                                                             "active"]},
                                      "acting": {"type": "boolean"}, "override": NULLABLE_STR,
                                      "predictions": {"type": "integer"}, "alarms": {"type": "integer"},
                                      "outcomes": {"type": "integer"}, "confirmed": {"type": "integer"},
                                      "faults": {"type": "integer"}, "missed": {"type": "integer"},
                                      "precision": NULLABLE_NUM, "recall": NULLABLE_NUM}},
    "IncidentSummary": {"type": "object", "required": ["id", "state", "symptoms"],
                        "properties": {"id": {"type": "integer"}, "opened": NULLABLE_NUM, "closed": NULLABLE_NUM,
                                       "state": STR, "outcome": NULLABLE_STR, "root_cause": NULLABLE_STR,
                                       "element": NULLABLE_STR, "confidence": NULLABLE_NUM, "action": NULLABLE_STR,
                                       "mttr_s": NULLABLE_NUM, "symptoms": {"type": "array", "items": STR},
                                       "cause": NULLABLE_STR}},
    "Incident": {"type": "object", "required": ["id", "state", "steps", "feedback", "graph"],
                 "description": "One incident: summary, timeline steps, operator feedback, causal graph",
                 "properties": {
                     "id": {"type": "integer"}, "state": STR, "opened": NULLABLE_NUM, "closed": NULLABLE_NUM,
                     "outcome": NULLABLE_STR, "root_cause": NULLABLE_STR, "element": NULLABLE_STR,
                     "confidence": NULLABLE_NUM, "action": NULLABLE_STR, "mttr_s": NULLABLE_NUM,
                     "symptoms": {"type": "array", "items": STR}, "cause": NULLABLE_STR,
                     "steps": {"type": "array", "items": {
                         "type": "object", "required": ["phase", "title", "text"],
                         "properties": {"phase": {"type": "string", "enum": [
                             "detected", "root_cause", "decision", "action", "undone", "verified", "not_verified",
                             "closed", "feedback"]}, "title": STR, "text": STR, "detail": STR,
                             "confidence": NULLABLE_NUM, "at": NULLABLE_NUM}}},
                     "feedback": {"type": "array", "items": {
                         "type": "object", "required": ["right", "note"],
                         "properties": {"right": {"type": "boolean"}, "note": STR, "at": NULLABLE_NUM}}},
                     "graph": {"type": "object", "required": ["nodes", "edges"], "properties": {
                         "nodes": {"type": "array", "items": {
                             "type": "object", "required": ["id", "kind", "label"],
                             "properties": {"id": STR, "kind": {"type": "string", "enum": [
                                 "cause", "evidence", "symptom", "action"]}, "label": STR}}},
                         "edges": {"type": "array", "items": {
                             "type": "object", "required": ["from", "to", "kind"],
                             "properties": {"from": STR, "to": STR, "kind": {"type": "string", "enum": [
                                 "could_explain", "explains", "shows", "observed_as", "acts_on"]},
                                 "label": STR}}}}}}},
}

E401 = _json(_ref("Error"), "No valid session")
E403 = _json(_ref("Error"), "CSRF token or Origin check failed, wrong code/password, or a key the web API "
                           "does not change")
E408 = _json(_ref("Error"), "Request body not received in time")
E503 = _json(_ref("Error"), "Not saved: storage error; nothing changed")
E507 = _json(_ref("Error"), "Not saved: the data partition is full; nothing changed")
E400 = _json(_ref("Error"), "Malformed or invalid request; nothing was changed")
E413 = _json(_ref("Error"), "Request body too large")
E415 = _json(_ref("Error"), "Request body is not application/json")
E429 = _json(_ref("Error"), "Too many failed attempts; see Retry-After")
E503_STATE = _json(_ref("Error"), "The mesh-state service is not running")
STATE_PARAMS = [
    {"name": "ns", "in": "path", "required": True, "description": "Namespace: kv, settings, crl, lww.<name>, "
     "g.<name>, pn.<name>, set.<name>", "schema": {"type": "string", "pattern": "^[a-z][a-z0-9._-]{0,31}$"}},
    {"name": "key", "in": "path", "required": True, "description": "Key (an OR-Set's element)",
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,95}$"}},
]
E503_HEALING = _json(_ref("Error"), "The self-healing service is not running on this node")
INCIDENT_PARAMS = [{"name": "id", "in": "path", "required": True, "description": "Incident id",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53}}]
E404_INCIDENT = _json(_ref("Error"), "No such incident")
E503_ANOMALY = _json(_ref("Error"), "The anomaly detector is not running on this node")
ALARM_PARAMS = [{"name": "id", "in": "path", "required": True, "description": "Alarm id",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 2**53}}]
FIRMWARE_ERRORS = {"404": _json(_ref("Error"), "Not running from a built image"),
                   "503": _json(_ref("Error"), "The image's bill of materials is unusable")}
CSRF_PARAM = {"name": "X-CSRF-Token", "in": "header", "required": True, "schema": STR,
              "description": "The csrf_token from /api/v1/auth/state (or from login/setup)"}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(schema, summary), "401": E401}
    responses.update(extra or {})
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: dict[str, Any], responses: dict[str, Any], anonymous: bool = False,
          method: str = "post", params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "parameters": [CSRF_PARAM, *(params or [])],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {**responses, "400": E400, "403": E403, "408": E408, "413": E413, "415": E415},
    }
    if anonymous:
        op["security"] = []
    else:
        op["responses"]["401"] = E401
    return {method: op}


def document(version: str) -> dict[str, Any]:
    int_param = lambda name, lo, hi, desc: {  # noqa: E731
        "name": name, "in": "query", "required": False, "description": desc,
        "schema": {"type": "integer", "minimum": lo, "maximum": hi}}
    state_op = _get("Whether a password is set, whether this client is logged in, and a CSRF token",
                    _ref("AuthState"))
    state_op["get"]["security"] = []
    del state_op["get"]["responses"]["401"]
    paths: dict[str, Any] = {
        "/api/v1/auth/state": state_op,
        "/api/v1/auth/setup": _post(
            "Set the first password with the one-time setup code; starts a session",
            {"type": "object", "required": ["setup_code", "password"],
             "properties": {"setup_code": {"type": "string", "maxLength": 64},
                            "password": {"type": "string", "maxLength": 512}}},
            {"201": _json(_ref("Session"), "Password set, logged in"),
             "409": _json(_ref("Error"), "A password is already set"), "429": E429, "503": E503, "507": E507},
            anonymous=True),
        "/api/v1/auth/login": _post(
            "Log in; sets the session cookie",
            {"type": "object", "required": ["password"], "properties": {"password": {"type": "string", "maxLength": 512}}},
            {"200": _json(_ref("Session"), "Logged in"), "401": _json(_ref("Error"), "Wrong password"),
             "409": _json(_ref("Error"), "No password set yet"), "429": E429}, anonymous=True),
        "/api/v1/auth/logout": _post("End this session", {"type": "object"},
                                     {"200": _json({"type": "object"}, "Logged out")}),
        "/api/v1/auth/password": _post(
            "Change the password (ends all other sessions)",
            {"type": "object", "required": ["current_password", "new_password"],
             "properties": {"current_password": {"type": "string", "maxLength": 512},
                            "new_password": {"type": "string", "maxLength": 512}}},
            {"200": _json({"type": "object"}, "Changed"), "429": E429, "503": E503, "507": E507}),
        "/api/v1/status": _get("Identity, mesh address, version, uptime, CPU, memory, health", _ref("Status")),
        "/api/v1/neighbours": _get("Neighbours with RTT, loss, throughput, quality class and cost",
                                   {"type": "array", "items": _ref("Neighbour")}),
        "/api/v1/routes": _get("Routes installed by the router", {"type": "array", "items": _ref("Route")}),
        "/api/v1/topology": _get("Nodes and links of the mesh, with link quality and throughput, and the node "
                                 "manager's statistics", _ref("Topology")),
        "/api/v1/events": _get(
            "Recent routing and health events with seq > since, oldest first",
            {"type": "array", "items": _ref("Event")},
            [int_param("since", 0, 2**53, "Return events after this seq"),
             int_param("limit", 1, 500, "At most this many events")],
            {"400": E400}),
        "/api/v1/config": {
            **_get("The effective configuration", _ref("Config")),
            **_post("Change settings: {section: {key: value}}; validated like the config file, all or nothing, "
                    "persisted across restarts",
                    {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object", "minProperties": 1}},
                    {"200": _json(_ref("Config"), "The new effective configuration"), "503": E503, "507": E507},
                    method="patch"),
        },
        "/api/v1/config/schema": _get(
            "What the Settings page shows for each setting: label, unit, description, valid range, read-only",
            {"type": "object", "required": ["sections", "settings"],
             "properties": {"sections": {"type": "object", "additionalProperties": {
                 "type": "object", "required": ["label", "read_only"],
                 "properties": {"label": STR, "description": STR, "read_only": {"type": "boolean"}}}},
                 "settings": {"type": "object", "additionalProperties": {
                     "type": "object", "required": ["label", "unit", "description", "read_only"],
                     "properties": {"label": STR, "unit": STR, "description": STR, "min": NULLABLE_NUM,
                                    "max": NULLABLE_NUM, "read_only": {"type": "boolean"}}}}}}),
        "/api/v1/stream": {"get": {
            "summary": "Server-sent events: status, neighbours, routes, topology (when changed) and events",
            "parameters": [int_param("since", 0, 2**53, "Send events after this seq")],
            "responses": {"200": {"description": "text/event-stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "400": E400, "401": E401, "503": _json(_ref("Error"), "Too many streams open")}}},
        "/api/v1/state": _get("This node's replica of the mesh state: objects, 1-hop records, mesh-wide "
                              "settings with their origin, revocation list, gossip counters",
                              _ref("StateView"), extra={"503": E503_STATE}),
        "/api/v1/state/{ns}/{key}": {
            **_get("One object's merged value", _ref("StateEntry"), STATE_PARAMS,
                   {"404": _json(_ref("Error"), "No such object"), "503": E503_STATE}),
            **_post("Write this node's part of an object, mesh-wide; answered once durable on this node. "
                    "LWW: value or delete; G-/PN-Counter: incr; OR-Set: add true/false; ttl_s optional",
                    {"type": "object", "properties": {"value": {}, "delete": {"type": "boolean"},
                                                      "incr": {"type": "integer"}, "add": {"type": "boolean"},
                                                      "ttl_s": {"type": "integer", "minimum": 0}}},
                    {"200": _json(_ref("StateWritten"), "Written"), "503": E503_STATE}, method="put",
                    params=STATE_PARAMS),
        },
        "/api/v1/state/revocations": _post(
            "Publish a revocation list (from `x0node keys revoke`) mesh-wide; refused unless signed by "
            "this mesh's trust anchor",
            {"type": "object", "required": ["crl"], "properties": {"crl": {"type": "string", "maxLength": 4096,
                                                                           "description": "hex"}}},
            {"200": _json(_ref("StateWritten"), "Published (serial included)"), "503": E503_STATE}),
        "/api/v1/healing": _get("The self-healing loop: mode, the operator's pin, observe-mode precision, symptoms, "
                                "open incidents", _ref("HealingStatus"), extra={"503": E503_HEALING}),
        "/api/v1/healing/mode": _post(
            "The observe/active switch: observe plans and records without acting, active acts, auto lets observe "
            "mode promote itself once its decisions prove right; kept across restarts",
            {"type": "object", "required": ["mode"],
             "properties": {"mode": {"type": "string", "enum": ["observe", "active", "auto"]}}},
            {"200": _json(_ref("HealingStatus"), "Switched"), "503": E503_HEALING, "507": E507}, method="put"),
        "/api/v1/healing/incidents": _get(
            "Recent incidents, newest first", {"type": "array", "items": _ref("IncidentSummary")},
            [int_param("limit", 1, 200, "At most this many incidents")], {"400": E400, "503": E503_HEALING}),
        "/api/v1/healing/incidents/{id}": _get(
            "One incident: timeline (detected, root cause with confidence, decisions, actions, verified or undone, "
            "closed), the operator's feedback and the causal graph", _ref("Incident"), INCIDENT_PARAMS,
            {"404": E404_INCIDENT, "503": E503_HEALING}),
        "/api/v1/healing/incidents/{id}/graph.dot": {"get": {
            "summary": "The incident's causal graph as Graphviz DOT (a download)", "parameters": INCIDENT_PARAMS,
            "responses": {"200": {"description": "Graphviz DOT",
                                  "content": {"text/vnd.graphviz": {"schema": {"type": "string"}}}},
                          "401": E401, "404": E404_INCIDENT, "503": E503_HEALING}}},
        "/api/v1/healing/incidents/{id}/feedback": _post(
            "Was this right? The operator's answer, stored in the knowledge base (at most 20 per incident)",
            {"type": "object", "required": ["right"], "additionalProperties": False,
             "properties": {"right": {"type": "boolean"}, "note": {"type": "string", "maxLength": 500}}},
            {"201": _json(_ref("Incident"), "Stored; the incident with its feedback"), "404": E404_INCIDENT,
             "409": _json(_ref("Error"), "The incident already has the most answers kept"), "503": E503_HEALING,
             "507": E507}, params=INCIDENT_PARAMS),
        "/api/v1/anomaly/alarms": _get(
            "The anomaly detector's observe mode and this node's newest alarms with their verdicts",
            {"type": "object", "required": ["observe", "alarms"],
             "properties": {"observe": _ref("AnomalyObserve"),
                            "alarms": {"type": "array", "items": _ref("AnomalyAlarm")}}},
            [int_param("limit", 1, 200, "At most this many alarms")], {"400": E400, "503": E503_ANOMALY}),
        "/api/v1/anomaly/alarms/{id}/feedback": _post(
            "The operator's verdict on one detector alarm (true: a real fault, false: a false alarm); observe "
            "mode's precision counts it; written before the answer",
            {"type": "object", "required": ["fault"], "additionalProperties": False,
             "properties": {"fault": {"type": "boolean"}}},
            {"201": _json({"type": "object", "required": ["alarm", "observe"],
                           "properties": {"alarm": _ref("AnomalyAlarm"), "observe": _ref("AnomalyObserve")}},
                          "Stored; the judged alarm and observe mode"),
             "404": _json(_ref("Error"), "No such alarm (or no longer held)"), "503": E503_ANOMALY, "507": E507},
            params=ALARM_PARAMS),
        "/api/v1/firmware": _get(
            "The image this device runs and its bill of materials (Debian packages, Python distributions, licences)",
            {"type": "object", "required": ["name", "version", "components"],
             "properties": {"name": STR, "version": STR, "built": STR, "board": STR,
                            "sources": {"type": "array", "items": STR}, "counts": {"type": "object"},
                            "components": {"type": "array", "items": {
                                "type": "object", "properties": {"name": STR, "version": STR, "kind": STR,
                                                                 "licenses": {"type": "array", "items": STR}}}}}},
            extra=FIRMWARE_ERRORS),
        "/api/v1/firmware/sbom": {"get": {
            "summary": "The image's bill of materials as built (CycloneDX 1.5 JSON)",
            "responses": {"200": {"description": "CycloneDX JSON",
                                  "content": {"application/vnd.cyclonedx+json": {"schema": {"type": "object"}}}},
                          "401": E401, **FIRMWARE_ERRORS}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0"),
                                                       "401": E401}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "x0node local API", "version": version,
                 "description": "Local management API of an x0tta6bl4 mesh node. Log in through "
                                "/api/v1/auth/login; send X-CSRF-Token on every state change."},
        "servers": [{"url": "/"}],
        "security": [{"session": []}],
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "x0_session"}},
                       "schemas": SCHEMAS},
        "paths": paths,
    }
