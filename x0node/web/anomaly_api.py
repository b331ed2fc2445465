"""The anomaly detector's part of the JSON API (`/api/v1/anomaly...`): its alarms on the Incidents page.

Routes (a session like every route; writes also need the CSRF token; bodies go through
`read_json_object`). Without a running anomaly service every route answers 503.

- GET  /api/v1/anomaly/alarms?limit=N            observe mode (phase, acting, precision over judged
                                                 alarms, recall over known faults, counts) and this
                                                 node's newest alarms with their verdicts
- POST /api/v1/anomaly/alarms/{id}/feedback      {"fault": bool}: the operator's verdict on one alarm
                                                 (true: a real fault; false: a false alarm); the
                                                 judged alarm with 201 once written to observe.json

Rules: an alarm the detector no longer holds is 404; a missing or non-boolean `fault` or any other
field is 400 and changes nothing; a verdict may be changed (the last one counts). A store that cannot
be written answers 503/507 and the verdict is not kept (anomaly/service.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from x0node.web.app import BadRequest, int_param, json_response, read_json_object, storage_error

ALARMS_LIMIT_MAX = 200
ALARM_ID_MAX = 2**53


def add_routes(app: web.Application, service: Callable[[], Any]) -> None:
    """Register the routes; `service()` returns the running anomaly service or None."""

    def running() -> Any:
        svc = service()
        if svc is None or getattr(svc, "engine", None) is None:
            raise BadRequest(503, "the anomaly detector is not running on this node")
        return svc

    def view(svc: Any, limit: int) -> dict[str, Any]:
        return {"observe": svc.engine.observe.status(), "alarms": svc.alarms(limit)}

    async def alarms(request: web.Request) -> web.StreamResponse:
        svc = running()
        return json_response(view(svc, int_param(request, "limit", 50, 1, ALARMS_LIMIT_MAX)))

    async def feedback(request: web.Request) -> web.StreamResponse:
        svc = running()
        aid = int(request.match_info["id"])
        body = await read_json_object(request)
        fault = body.get("fault")
        if not isinstance(fault, bool):
            raise BadRequest(400, "field 'fault' is required and must be true or false", key="fault")
        unknown = sorted(set(body) - {"fault"})
        if unknown:
            raise BadRequest(400, f"unknown field '{unknown[0]}'", key=unknown[0])
        if not 1 <= aid <= ALARM_ID_MAX or svc.engine.observe.alarm(aid) is None:
            raise BadRequest(404, "no such alarm")
        try:
            if not await svc.store_feedback(aid, fault):
                raise BadRequest(404, "no such alarm")
        except OSError as exc:
            return storage_error(exc, "the verdict")
        a = svc.engine.observe.alarm(aid)
        alarm = {"id": a.id, "raised": a.raised, "cleared": a.cleared, "fault": a.fault, "source": a.source}
        return json_response({"alarm": alarm, "observe": svc.engine.observe.status()}, status=201)

    r = app.router
    r.add_get("/api/v1/anomaly/alarms", alarms, name="anomaly_alarms")
    r.add_post(r"/api/v1/anomaly/alarms/{id:[0-9]{1,16}}/feedback", feedback, name="anomaly_alarm_feedback")
