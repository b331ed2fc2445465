"""The coordination part of the JSON API, served by the web service.

Rules: every route is authenticated by the app's middlewares like any other (a session; writes also need
the CSRF token); bodies go through `read_json_object`. Without a running coordination service the routes
answer 503; a quorum that did not answer is 503 too, a bad key or value 400.

- GET    /api/v1/coord              group, leader, timers, this node's pool, counters
- GET    /api/v1/kv/{key}           quorum read (404 when absent)
- PUT    /api/v1/kv/{key}           {"value": "<text>"}: quorum write
- DELETE /api/v1/kv/{key}           quorum delete
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from x0node.coord.record import VALUE_MAX_BYTES
from x0node.web.app import BadRequest, json_error, json_response, read_json_object, require_str


def add_routes(app: web.Application, service: Callable[[], Any]) -> None:
    def running() -> Any:
        svc = service()
        if svc is None or not getattr(svc, "started", False):
            raise BadRequest(503, "the coordination service is not running")
        return svc

    async def status(request: web.Request) -> web.StreamResponse:
        return json_response(running().status())

    async def kv_get(request: web.Request) -> web.StreamResponse:
        svc = running()
        try:
            res = await svc.kv_get(request.match_info["key"])
        except ValueError as exc:
            return json_error(400, str(exc))
        if not res.get("ok"):
            return json_error(503, str(res.get("error")))
        if not res.get("found"):
            return json_error(404, "no such key")
        return json_response({"key": request.match_info["key"], "value": res["value"].decode("utf-8", "replace"),
                              "version": res["version"], "writer": res["writer"]})

    async def kv_write(request: web.Request) -> web.StreamResponse:
        svc = running()
        value: bytes | None = None
        if request.method == "PUT":
            body = await read_json_object(request)
            value = require_str(body, "value", VALUE_MAX_BYTES).encode()
        try:
            res = await svc.kv_put(request.match_info["key"], value)
        except ValueError as exc:
            return json_error(400, str(exc))
        if not res.get("ok"):
            return json_error(503, str(res.get("error")))
        return json_response({"ok": True, "acks": res["acks"], "version": res["version"]})

    r = app.router
    r.add_get("/api/v1/coord", status, name="coord")
    r.add_get("/api/v1/kv/{key:.+}", kv_get, name="kv_entry")
    r.add_put("/api/v1/kv/{key:.+}", kv_write, name="kv_entry_put")
    r.add_delete("/api/v1/kv/{key:.+}", kv_write, name="kv_entry_delete")
