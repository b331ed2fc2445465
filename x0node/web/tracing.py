"""API request spans for the web service (x0node/daemon/spans.py has the pipeline's rules).

One SERVER span per request that reached a route, named "<METHOD> <route template>" as OpenTelemetry's
HTTP conventions ask (never the raw path: bounded names), with `http.request.method`, `http.route` and
`http.response.status_code`; a 5xx answer marks it as an error. Static files and pages are left out:
only `/api/` routes and `/metrics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from x0node.daemon import spans

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(extras: Mapping[str, Any]) -> Any:
    @web.middleware
    async def tracing_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else ""
        if not (route.startswith("/api/") or route == "/metrics") or spans.tracer(extras, "x0node.web") is None:
            return await handler(request)
        with spans.span(extras, "x0node.web", f"{request.method} {route}", kind="server",
                        **{"http.request.method": request.method, "http.route": route}) as s:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                _status(s, exc.status)
                raise
            _status(s, resp.status)
            return resp

    return tracing_mw


def _status(s: Any, code: int) -> None:
    if s is None:
        return
    s.set_attribute("http.response.status_code", code)
    if code >= 500:
        from opentelemetry.trace import Status, StatusCode

        s.set_status(Status(StatusCode.ERROR, str(code)))
