"""The mesh-state part of the JSON API (`/api/v1/state...`), served by the web service.

Rules: every route here is authenticated by the app's middlewares like any other (a session; state
changes also need the CSRF token); bodies go through `read_json_object`. When the state service is not
running the routes answer 503. Writes return once the update is durable on this node.

- GET  /api/v1/state                  objects, 1-hop records, settings with their origin, CRL, counters
- GET  /api/v1/state/{ns}/{key}       one object's merged value (404 when absent)
- PUT  /api/v1/state/{ns}/{key}       {"value": json} | {"delete": true} | {"incr": n} | {"add": bool}
- POST /api/v1/state/revocations      {"crl": "<hex>"}: publish a revocation list mesh-wide
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from x0node.web.app import BadRequest, json_error, json_response, read_json_object, require_str

CRL_HEX_MAX = 4096


def add_routes(app: web.Application, service: Callable[[], Any]) -> None:
    """Register the routes; `service()` returns the running state service or None."""

    def running() -> Any:
        svc = service()
        if svc is None or getattr(svc, "gossip", None) is None:
            raise BadRequest(503, "the state service is not running")
        return svc

    async def state_get(request: web.Request) -> web.StreamResponse:
        return json_response(running().view())

    async def entry_get(request: web.Request) -> web.StreamResponse:
        svc = running()
        entry = svc.gossip.store.entry(request.match_info["ns"], request.match_info["key"])
        if entry is None:
            return json_error(404, "no such object")
        return json_response(entry)

    async def entry_put(request: web.Request) -> web.StreamResponse:
        from x0node.state.service import _op_args

        svc = running()
        body = await read_json_object(request)
        body = {k: v for k, v in body.items() if k in ("value", "delete", "incr", "add", "ttl_s")}
        try:
            answer = await svc.write(request.match_info["ns"], request.match_info["key"], **_op_args(body))
        except (ValueError, TypeError) as exc:
            return json_error(400, str(exc))
        return json_response(answer)

    async def crl_post(request: web.Request) -> web.StreamResponse:
        svc = running()
        body = await read_json_object(request)
        text = require_str(body, "crl", CRL_HEX_MAX)
        try:
            answer = await svc.publish_crl(bytes.fromhex(text))
        except ValueError as exc:
            return json_error(400, str(exc))
        return json_response(answer)

    r = app.router
    r.add_get("/api/v1/state", state_get, name="state")
    r.add_post("/api/v1/state/revocations", crl_post, name="state_revocations")
    r.add_get("/api/v1/state/{ns}/{key}", entry_get, name="state_entry")
    r.add_put("/api/v1/state/{ns}/{key}", entry_put, name="state_entry_put")
