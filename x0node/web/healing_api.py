"""The self-healing part of the JSON API (`/api/v1/healing...`): the Incidents page's data.

Routes (a session like every route; writes also need the CSRF token; bodies go through
`read_json_object`). Without a running healing service every route answers 503.

- GET  /api/v1/healing                              the loop: mode (and whether the operator pinned it),
                                                    observe-mode precision, symptoms, open incidents
- GET  /api/v1/healing/incidents?limit=N            recent incidents, newest first
- GET  /api/v1/healing/incidents/{id}               one incident: summary, timeline steps (detected ->
                                                    root cause with confidence -> decision -> action ->
                                                    verified or undone -> closed; feedback), causal graph
- GET  /api/v1/healing/incidents/{id}/graph.dot     the causal graph as Graphviz DOT (a download)
- PUT  /api/v1/healing/mode                         {"mode": "observe" | "active" | "auto"}; kept across
                                                    restarts in the knowledge store
- POST /api/v1/healing/incidents/{id}/feedback      {"right": bool, "note": "<= 500 characters"}: "was this
                                                    right?", written to the knowledge store

An answer "right" on an incident whose root cause is at this node (`node:<this node>`, one of its
interfaces or services, or a link with this node at one end) is also a fault the anomaly detector's
observe mode learns from (anomaly/observe.py): the incident's window, from INCIDENT_LOOKBACK_S before
it opened until it closed (or now), is a confirmed fault on this node; its alarms raised in it were
right, and none raised is a missed fault. "Wrong" says the diagnosis was wrong, not that nothing was
wrong, so it tells the detector nothing. When the detector's state cannot be written the answer is
still stored for the incident and the detector's part is logged.

Rules: an unknown incident is 404; a note too long or holding control characters (other than line
breaks), a missing or non-boolean `right`, or an unknown mode is 400 and changes nothing; at most
`FEEDBACK_PER_INCIDENT_MAX` answers per incident (409 after that), so a page left open cannot fill the
store. A store that cannot be written answers 503/507 (nothing is reported as saved that was not).

The timeline and the graph are built here from the knowledge store's records (x0node/healing/incident.py
shapes) by pure functions (`incident_view`, `causal_graph`, `graph_dot`); records of an unexpected shape
are skipped, never an error. Graph: causes (every candidate of every diagnosis, the current one marked),
the evidence the top cause explains, the symptoms, the actions taken; edges say which explains, shows or
acts on which.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from x0node.web.app import BadRequest, int_param, json_error, json_response, read_json_object, storage_error

log = logging.getLogger("x0node.web")

FEEDBACK_NOTE_MAX = 500
INCIDENT_LOOKBACK_S = 60.0
"""An incident opens once healing has seen its symptoms for a while; the fault began before."""
FEEDBACK_PER_INCIDENT_MAX = 20
INCIDENTS_LIMIT_MAX = 200
INCIDENT_ID_MAX = 2**53
MODES = ("observe", "active", "auto")
STEPS_MAX = 500
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # line feed is allowed in a note
_EVIDENCE = re.compile(r"^(?P<signal>[a-z_]+)@(?P<element>[^\[=]+)(?:\[(?P<path>[^\]]*)\])?=(?P<degree>[0-9.]+)$")


# ---- pure views ---------------------------------------------------------------------------------------

def _s(v: Any, limit: int = 300) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _candidates(rec: dict[str, Any]) -> list[tuple[str, str, float]]:
    out = []
    for c in rec.get("candidates") or []:
        if isinstance(c, list | tuple) and len(c) == 3 and isinstance(c[0], str) and isinstance(c[1], str):
            conf = _num(c[2])
            out.append((c[0][:200], c[1][:64], 0.0 if conf is None else conf))
    return out


def steps(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The incident's life in the order it happened, one step per record, in words a person reads."""
    out: list[dict[str, Any]] = []
    for rec in timeline[:STEPS_MAX]:
        if not isinstance(rec, dict):
            continue
        kind, wall = rec.get("type"), _num(rec.get("wall"))
        step: dict[str, Any] | None = None
        if kind == "IncidentOpened":
            syms = [_s(x, 200) for x in rec.get("symptoms") or [] if isinstance(x, str)]
            step = {"phase": "detected", "title": "Detected", "text": ", ".join(syms) or "symptoms"}
        elif kind == "Diagnosed" and isinstance(rec.get("candidates"), list):
            cands = _candidates(rec)
            if cands:
                el, fault, conf = cands[0]
                others = ", ".join(f"{f}@{e} ({c:.0%})" for e, f, c in cands[1:4])
                step = {"phase": "root_cause", "title": "Root cause", "text": f"{fault} at {el}",
                        "confidence": conf, "detail": f"alternatives: {others}" if others else "no alternative"}
            else:
                step = {"phase": "root_cause", "title": "Root cause", "text": "no cause found", "confidence": None}
        elif kind == "Decided":
            outcome = _s(rec.get("outcome"), 32)
            title = {"requested": "Action chosen", "observe_only": "Would act (observe mode)",
                     "skipped": "Action skipped", "waiting": "Waiting", "exhausted": "No action left"}.get(outcome, "Decision")
            step = {"phase": "decision", "outcome": outcome, "title": title,
                    "text": f"{_s(rec.get('action'), 64)} on {_s(rec.get('target'), 200)}", "detail": _s(rec.get("reason"))}
        elif kind == "ActionDone":
            undo, ok = rec.get("undo") is True, rec.get("ok") is True
            step = {"phase": "undone" if undo else "action", "ok": ok,
                    "title": ("Undone" if ok else "Undo failed") if undo else ("Action taken" if ok else "Action failed"),
                    "text": f"{_s(rec.get('action'), 64)} on {_s(rec.get('target'), 200)}", "detail": _s(rec.get("detail"))}
        elif kind == "Verified":
            ok = rec.get("success") is True
            step = {"phase": "verified" if ok else "not_verified", "ok": ok,
                    "title": "Verified" if ok else "Not verified", "text": _s(rec.get("reason"))}
        elif kind == "IncidentClosed":
            mttr = _num(rec.get("mttr_s"))
            step = {"phase": "closed", "title": "Closed", "outcome": _s(rec.get("outcome"), 32),
                    "text": _s(rec.get("outcome"), 32) + (f" after {mttr:.1f} s" if mttr is not None else "")}
        elif kind == "Feedback":
            right = rec.get("right") is True
            step = {"phase": "feedback", "right": right, "title": "Feedback",
                    "text": "right" if right else "wrong", "detail": _s(rec.get("note"), FEEDBACK_NOTE_MAX)}
        if step is not None:
            step["at"] = wall
            out.append(step)
    return out


def causal_graph(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """Causes, evidence, symptoms and actions of one incident, with the edges between them."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []

    def node(nid: str, kind: str, label: str, **extra: Any) -> str:
        if nid not in nodes:
            nodes[nid] = {"id": nid, "kind": kind, "label": label, **extra}
        else:
            nodes[nid].update({k: v for k, v in extra.items() if v is not None})
        return nid

    def edge(a: str, b: str, kind: str, label: str = "") -> None:
        if not any(e["from"] == a and e["to"] == b and e["kind"] == kind for e in edges):
            edges.append({"from": a, "to": b, "kind": kind, "label": label})

    symptoms: list[str] = []
    diagnoses = [r for r in timeline if isinstance(r, dict) and r.get("type") == "Diagnosed"
                 and isinstance(r.get("candidates"), list)]
    for rec in timeline:
        if isinstance(rec, dict) and rec.get("type") == "IncidentOpened":
            for x in rec.get("symptoms") or []:
                if isinstance(x, str):
                    kind, _, element = x.partition("@")
                    symptoms.append(node(f"symptom:{x[:200]}", "symptom", kind[:64], element=element[:200]))
    for i, rec in enumerate(diagnoses):
        current = i == len(diagnoses) - 1
        for rank, (el, fault, conf) in enumerate(_candidates(rec)):
            cid = node(f"cause:{fault}@{el}", "cause", fault, element=el, confidence=conf, rank=rank + 1,
                       current=current and rank == 0, superseded=not current and rank == 0 or None)
            if current:
                nodes[cid].update(confidence=conf, rank=rank + 1)
                if rank == 0:
                    nodes[cid]["superseded"] = False
            if not current or rank:
                for sid in symptoms:
                    edge(cid, sid, "could_explain", f"{conf:.0%}")
        if current:
            cands = _candidates(rec)
            top = f"cause:{cands[0][1]}@{cands[0][0]}" if cands else None
            reached = set()
            for ev in rec.get("evidence") or []:
                m = _EVIDENCE.match(ev) if isinstance(ev, str) else None
                if m is None or top is None:
                    continue
                eid = node(f"evidence:{m['signal']}@{m['element']}", "evidence", m["signal"],
                           element=m["element"][:200], degree=float(m["degree"]))
                edge(top, eid, "shows", m["degree"])
                for sid in symptoms:
                    if nodes[sid]["element"] == m["element"]:
                        edge(eid, sid, "observed_as")
                        reached.add(sid)
            if top is not None:
                for sid in symptoms:
                    if sid not in reached:
                        edge(top, sid, "explains", f"{cands[0][2]:.0%}")
    # actions: what was done (or would have been), with how it ended
    verdicts: dict[str, str] = {}
    for rec in timeline:
        if not isinstance(rec, dict):
            continue
        kind = rec.get("type")
        key = f"action:{_s(rec.get('action'), 64)}@{_s(rec.get('target'), 200)}"
        if kind == "Decided" and rec.get("outcome") in ("requested", "observe_only"):
            verdicts.setdefault(key, "observe only" if rec["outcome"] == "observe_only" else "requested")
            if rec["outcome"] == "requested" and verdicts[key] == "observe only":
                verdicts[key] = "requested"
        elif kind == "ActionDone":
            if rec.get("undo") is True:
                verdicts[key] = "undone"
            elif verdicts.get(key) != "verified":
                verdicts[key] = "done" if rec.get("ok") is True else "failed"
        elif kind == "Verified":
            verdicts[key] = "verified" if rec.get("success") is True else "not verified"
    current_top = next((n["id"] for n in nodes.values() if n.get("current")), None)
    for rec in timeline:
        if isinstance(rec, dict) and rec.get("type") in ("Decided", "ActionDone") and rec.get("action"):
            key = f"action:{_s(rec.get('action'), 64)}@{_s(rec.get('target'), 200)}"
            if key not in verdicts:
                continue
            aid = node(key, "action", _s(rec.get("action"), 64), element=_s(rec.get("target"), 200),
                       result=verdicts[key])
            if current_top is not None:
                edge(aid, current_top, "acts_on", verdicts[key])
    return {"nodes": list(nodes.values()), "edges": edges}


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_SHAPES = {"cause": "box", "evidence": "ellipse", "symptom": "octagon", "action": "cds"}
_DOT_STYLES = {"could_explain": "dashed", "explains": "solid", "shows": "solid", "observed_as": "dotted",
               "acts_on": "bold"}


def graph_dot(incident_id: int, graph: dict[str, Any]) -> str:
    """Graphviz DOT of `causal_graph`'s output (every string quoted and escaped)."""
    ids = {n["id"]: f"n{i}" for i, n in enumerate(graph["nodes"])}
    lines = [f"digraph incident_{int(incident_id)} {{", "  rankdir=LR;", '  node [fontname="sans-serif"];']
    for n in graph["nodes"]:
        label = f"{n['kind']}: {n['label']}"
        if n.get("element"):
            label += f"\n{n['element']}"
        if n["kind"] == "cause" and isinstance(n.get("confidence"), float):
            label += f"\nconfidence {n['confidence']:.0%}"
        if n["kind"] == "action" and n.get("result"):
            label += f"\n{n['result']}"
        attrs = [f"label={_dot_str(label)}", f"shape={_DOT_SHAPES.get(n['kind'], 'box')}"]
        if n.get("current"):
            attrs.append("penwidth=2")
        lines.append(f"  {ids[n['id']]} [{', '.join(attrs)}];")
    for e in graph["edges"]:
        if e["from"] in ids and e["to"] in ids:
            label = e["kind"].replace("_", " ") + (f" {e['label']}" if e.get("label") else "")
            lines.append(f"  {ids[e['from']]} -> {ids[e['to']]} [label={_dot_str(label)}, "
                         f"style={_DOT_STYLES.get(e['kind'], 'solid')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def incident_view(row: dict[str, Any] | None, timeline: list[dict[str, Any]], live: dict[str, Any] | None,
                  incident_id: int) -> dict[str, Any]:
    """One incident for the page: the store's summary row, the live state when it is open, the steps,
    the operator's feedback and the causal graph."""
    row = row or {}
    feedback = [{"right": r.get("right") is True, "note": _s(r.get("note"), FEEDBACK_NOTE_MAX), "at": _num(r.get("wall"))}
                for r in timeline if isinstance(r, dict) and r.get("type") == "Feedback"]
    return {
        "id": incident_id,
        "state": (live or {}).get("state") or ("closed" if row.get("closed_wall") is not None else "open"),
        "opened": _num(row.get("opened_wall")),
        "closed": _num(row.get("closed_wall")),
        "outcome": row.get("outcome"),
        "root_cause": row.get("root_cause"),
        "element": row.get("element"),
        "confidence": _num(row.get("confidence")),
        "action": row.get("action"),
        "mttr_s": _num(row.get("mttr_s")),
        "symptoms": [s for s in row.get("symptoms") or [] if isinstance(s, str)],
        "cause": (live or {}).get("cause"),
        "steps": steps(timeline),
        "feedback": feedback,
        "graph": causal_graph(timeline),
    }


def concerns_node(element: Any, node_id: str) -> bool:
    """Whether an incident's root-cause element (`kind:id`, healing/monitor.Element) is at this node."""
    if not isinstance(element, str) or not node_id:
        return False
    kind, _, eid = element.partition(":")
    me = node_id.lower()
    if kind == "node":
        return eid.lower() == me
    if kind == "link":
        return me in (end.lower() for end in eid.split("~"))
    return kind in ("interface", "service")


def _cause_element(cause: Any) -> str | None:
    """The element of an open incident's current cause, `fault@kind:id (0.91)` (analyze.Candidate)."""
    if not isinstance(cause, str) or "@" not in cause:
        return None
    return cause.split("@", 1)[1].rsplit(" (", 1)[0]


# ---- routes -------------------------------------------------------------------------------------------

def add_routes(app: web.Application, service: Callable[[], Any],
               anomaly: Callable[[], Any] | None = None) -> None:
    """Register the routes; `service()` returns the running healing service or None, `anomaly()` the
    running anomaly service or None (a confirmed incident at this node is a fault it learns from)."""
    async def tell_detector(view: dict[str, Any]) -> None:
        det = anomaly() if anomaly is not None else None
        if det is None or getattr(det, "engine", None) is None:
            return
        element = view.get("element") or _cause_element(view.get("cause"))
        if not concerns_node(element, getattr(det, "node_id", "")):
            return
        opened, closed = view.get("opened"), view.get("closed")
        if opened is None:
            return
        try:
            await det.store_fault(opened - INCIDENT_LOOKBACK_S, closed if closed is not None else time.time(),
                                  "incident")
        except OSError:
            log.warning("the anomaly detector could not save a confirmed incident", exc_info=True)

    def running() -> Any:
        svc = service()
        if svc is None or getattr(svc, "engine", None) is None or getattr(svc, "store", None) is None:
            raise BadRequest(503, "the self-healing service is not running on this node")
        return svc

    def incident_id(request: web.Request) -> int:
        v = int(request.match_info["id"])
        if not 1 <= v <= INCIDENT_ID_MAX:
            raise BadRequest(404, "no such incident")
        return v

    def live_of(svc: Any, iid: int) -> dict[str, Any] | None:
        return next((o for o in svc.status().get("open", []) if o.get("id") == iid), None)

    async def load(svc: Any, iid: int) -> dict[str, Any]:
        row = await svc.incident(iid)
        live = live_of(svc, iid)
        if row is None and live is None:
            raise BadRequest(404, "no such incident")
        return incident_view(row, await svc.timeline(iid), live, iid)

    async def status(request: web.Request) -> web.StreamResponse:
        st = running().status()
        keep = ("mode", "pinned", "observe_precision", "observe_outcomes", "cycles", "symptoms", "open",
                "disruptive_last_hour", "mitigations", "tick_errors", "store_errors", "probes_off",
                "update_in_progress")
        return json_response({k: st.get(k) for k in keep})

    async def incidents(request: web.Request) -> web.StreamResponse:
        svc = running()
        limit = int_param(request, "limit", 50, 1, INCIDENTS_LIMIT_MAX)
        rows = await svc.incidents(limit)
        live = {o.get("id"): o for o in svc.status().get("open", [])}
        out = []
        for r in rows:
            lv = live.get(r.get("id"))
            out.append({"id": r["id"], "opened": r.get("opened_wall"), "closed": r.get("closed_wall"),
                        "state": lv["state"] if lv else ("closed" if r.get("closed_wall") is not None else "open"),
                        "outcome": r.get("outcome"), "root_cause": r.get("root_cause"), "element": r.get("element"),
                        "confidence": r.get("confidence"), "action": r.get("action"), "mttr_s": r.get("mttr_s"),
                        "symptoms": r.get("symptoms") or [], "cause": lv.get("cause") if lv else None})
        return json_response(out)

    async def incident(request: web.Request) -> web.StreamResponse:
        svc = running()
        return json_response(await load(svc, incident_id(request)))

    async def graph(request: web.Request) -> web.StreamResponse:
        svc = running()
        iid = incident_id(request)
        view = await load(svc, iid)
        return web.Response(text=graph_dot(iid, view["graph"]), content_type="text/vnd.graphviz",
                            headers={"Content-Disposition": f'attachment; filename="incident-{iid}.dot"'})

    async def mode(request: web.Request) -> web.StreamResponse:
        svc = running()
        body = await read_json_object(request)
        value = body.get("mode")
        if value not in MODES:
            raise BadRequest(400, 'field \'mode\' must be "observe", "active" or "auto"', key="mode")
        try:
            await svc.switch_mode(value)
        except (OSError, sqlite3.Error) as exc:
            return storage_error(exc if isinstance(exc, OSError) else OSError(str(exc)), "the mode")
        return await status(request)

    async def feedback(request: web.Request) -> web.StreamResponse:
        svc = running()
        iid = incident_id(request)
        body = await read_json_object(request)
        right = body.get("right")
        if not isinstance(right, bool):
            raise BadRequest(400, "field 'right' is required and must be true or false", key="right")
        note = body.get("note", "")
        if not isinstance(note, str):
            raise BadRequest(400, "field 'note' must be a string", key="note")
        if len(note) > FEEDBACK_NOTE_MAX:
            raise BadRequest(400, f"field 'note' is longer than {FEEDBACK_NOTE_MAX} characters", key="note")
        if _CONTROL.search(note):
            raise BadRequest(400, "field 'note' holds control characters", key="note")
        unknown = set(body) - {"right", "note"}
        if unknown:
            raise BadRequest(400, f"unknown field '{sorted(unknown)[0]}'", key=sorted(unknown)[0])
        view = await load(svc, iid)
        if len(view["feedback"]) >= FEEDBACK_PER_INCIDENT_MAX:
            return json_error(409, f"this incident already has {FEEDBACK_PER_INCIDENT_MAX} answers")
        try:
            await svc.store_feedback(iid, right, note.strip())
        except (OSError, sqlite3.Error) as exc:
            return storage_error(exc if isinstance(exc, OSError) else OSError(str(exc)), "the feedback")
        view = await load(svc, iid)
        if right:
            await tell_detector(view)
        return json_response(view, status=201)

    r = app.router
    r.add_get("/api/v1/healing", status, name="healing")
    r.add_get("/api/v1/healing/incidents", incidents, name="healing_incidents")
    r.add_get(r"/api/v1/healing/incidents/{id:[0-9]{1,16}}", incident, name="healing_incident")
    r.add_get(r"/api/v1/healing/incidents/{id:[0-9]{1,16}}/graph.dot", graph, name="healing_incident_graph")
    r.add_post(r"/api/v1/healing/incidents/{id:[0-9]{1,16}}/feedback", feedback, name="healing_feedback")
    r.add_put("/api/v1/healing/mode", mode, name="healing_mode")
