"""The Firmware page's data: what image this device runs, what is in it, and its updates.

    GET /api/v1/firmware        board, version, sources, counts and every component (name, version, kind,
                                licences) from the image's bill of materials
    GET /api/v1/firmware/sbom   the bill of materials itself (CycloneDX JSON, as built)
    GET  /api/v1/ota            slots, phase, staged bundle, rollout, every node's progress (x0node/ota)
    POST /api/v1/ota/manifest   {"manifest": {...}, "signatures": [...], "force": bool}: verify and admit
                                a signed manifest; the bundle is uploaded next
    PUT  /api/v1/ota/bundle/{id}  the bundle's bytes (application/octet-stream, Content-Length = the
                                manifest's size), streamed chunk by chunk; each chunk is checked against
                                the manifest before it is written, nothing is held in memory but a chunk
    POST /api/v1/ota/install | /api/v1/ota/rollback | /api/v1/ota/rollout {"action": "start"|"stop", ...}
OTA routes answer 503 when the OTA service is not running and 409 with the reason when the service
refuses (bad signature, wrong board, downgrade, busy, no space ...); like every route they need a
session and, for changes, the CSRF token.

Source on the device: /usr/share/x0tta6bl4/sbom.cdx.json, written by the image build (image/sbom.py)
into the read-only root. Rules: both need a session like every API
route; a file larger than FIRMWARE_FILE_MAX_BYTES or not of the expected shape is answered with 503 and
a reason (never a partial list); off an image (no such files) the answer is 404 with a reason. The parsed
summary is kept while the file's size and mtime stay the same (the root is read-only).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

FIRMWARE_DIR = pathlib.Path("/usr/share/x0tta6bl4")
SBOM_FILE = "sbom.cdx.json"
FIRMWARE_FILE_MAX_BYTES = 8 * 1024 * 1024
COMPONENTS_MAX = 20000
_cache: dict[str, tuple[tuple[int, int], Any]] = {}


class FirmwareUnavailable(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _read(path: pathlib.Path) -> tuple[bytes, tuple[int, int]]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FirmwareUnavailable(404, f"no {path.name} on this system (not running from a built image)") from None
    if st.st_size > FIRMWARE_FILE_MAX_BYTES:
        raise FirmwareUnavailable(503, f"{path.name} is larger than {FIRMWARE_FILE_MAX_BYTES} bytes")
    return path.read_bytes(), (st.st_size, st.st_mtime_ns)


def _text(v: Any, limit: int = 256) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _licences(c: dict[str, Any]) -> list[str]:
    out = []
    for item in c.get("licenses") or []:
        if not isinstance(item, dict):
            continue
        lic = item.get("license") if isinstance(item.get("license"), dict) else {}
        name = item.get("expression") or lic.get("id") or lic.get("name")
        if isinstance(name, str):
            out.append(name[:128])
    return out


def summary(directory: pathlib.Path | None = None) -> dict[str, Any]:
    """The Firmware page's data from the image's SBOM."""
    path = (directory or FIRMWARE_DIR) / SBOM_FILE
    raw, key = _read(path)
    cached = _cache.get(str(path))
    if cached and cached[0] == key:
        return cached[1]
    try:
        doc = json.loads(raw)
        if doc.get("bomFormat") != "CycloneDX" or not isinstance(doc.get("components"), list):
            raise ValueError("not a CycloneDX document")
        meta = doc.get("metadata") or {}
        props = [p for p in meta.get("properties") or [] if isinstance(p, dict)]
        comps = doc["components"]
        if len(comps) > COMPONENTS_MAX:
            raise ValueError(f"more than {COMPONENTS_MAX} components")
    except (ValueError, AttributeError, TypeError) as exc:
        raise FirmwareUnavailable(503, f"{path.name} is unusable: {exc}") from None
    components = []
    for c in comps:
        if not isinstance(c, dict):
            continue
        purl = _text(c.get("purl"), 512)
        kind = "debian" if purl.startswith("pkg:deb/") else "python" if purl.startswith("pkg:pypi/") else "other"
        components.append({"name": _text(c.get("name")), "version": _text(c.get("version")), "kind": kind,
                           "licenses": _licences(c)})
    component = meta.get("component") if isinstance(meta.get("component"), dict) else {}
    out = {
        "name": _text(component.get("name")),
        "version": _text(component.get("version")),
        "built": _text(meta.get("timestamp")),
        "board": next((_text(p.get("value")) for p in props if p.get("name") == "x0tta6bl4:board"), ""),
        "sources": [_text(p.get("value"), 512) for p in props if p.get("name") == "x0tta6bl4:debian:source"],
        "counts": {k: sum(1 for c in components if c["kind"] == k) for k in ("debian", "python", "other")},
        "components": components,
    }
    _cache[str(path)] = (key, out)
    return out


async def api_firmware(request: web.Request) -> web.StreamResponse:
    try:
        return web.json_response(summary())
    except FirmwareUnavailable as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)


async def api_firmware_sbom(request: web.Request) -> web.StreamResponse:
    try:
        raw, _ = _read(FIRMWARE_DIR / SBOM_FILE)
    except FirmwareUnavailable as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    return web.Response(body=raw, content_type="application/vnd.cyclonedx+json",
                        headers={"Content-Disposition": f'attachment; filename="{SBOM_FILE}"'})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/firmware", api_firmware, name="firmware")
    router.add_get("/api/v1/firmware/sbom", api_firmware_sbom, name="firmware_sbom")


UPLOAD_READ_TIMEOUT_S = 120.0
"""One chunk of an upload must arrive within this time."""


def add_ota_routes(app: web.Application, service: Callable[[], Any]) -> None:
    """The OTA routes; `service()` returns the running OTA service or None."""
    from x0node.web.app import BadRequest, json_error, json_response, read_json_object

    def running() -> Any:
        svc = service()
        if svc is None:
            raise BadRequest(503, "the OTA service is not running (section [ota])")
        return svc

    async def ota_get(request: web.Request) -> web.StreamResponse:
        return json_response(running().view())

    async def manifest_post(request: web.Request) -> web.StreamResponse:
        svc = running()
        body = await read_json_object(request)
        force = body.pop("force", False) is True
        data = json.dumps(body).encode()
        try:
            st = svc.accept_manifest(data, from_mesh=False, force=force)
        except ValueError as exc:
            return json_error(409, str(exc))
        return json_response({"id": st.m.id, "version": st.m.version, "bytes": st.m.bundle_bytes,
                              "chunk_bytes": st.m.chunk_bytes, "chunks": len(st.m.chunks), "have": len(st.have)})

    async def bundle_put(request: web.Request) -> web.StreamResponse:
        svc = running()
        st = svc.target
        if st is None or st.m.id != request.match_info["id"]:
            return json_error(409, "post this bundle's manifest first")
        if request.content_length != st.m.bundle_bytes:
            return json_error(400, f"Content-Length must be the bundle's size, {st.m.bundle_bytes} bytes")
        bad = 0
        for i in range(len(st.m.chunks)):
            try:
                data = await asyncio.wait_for(request.content.readexactly(st.m.chunk_size(i)), UPLOAD_READ_TIMEOUT_S)
            except (asyncio.IncompleteReadError, TimeoutError):
                return json_error(400, f"upload ended at chunk {i} of {len(st.m.chunks)}; upload it again to resume")
            try:
                ok = await asyncio.to_thread(st.put, i, data)
            except OSError as exc:
                from x0node.web.app import storage_error

                return storage_error(exc, "the bundle")
            bad += not ok
        if bad:
            return json_error(409, f"hash_mismatch: {bad} chunk(s) do not match the manifest (tampered or damaged)")
        await svc._verify_target()
        if svc.phase != "verified":
            return json_error(409, svc.why)
        return json_response({"id": st.m.id, "phase": svc.phase, "version": st.m.version})

    async def install_post(request: web.Request) -> web.StreamResponse:
        svc = running()
        try:
            return json_response({"message": svc.begin_install()}, status=202)
        except ValueError as exc:
            return json_error(409, str(exc))

    async def rollback_post(request: web.Request) -> web.StreamResponse:
        svc = running()
        try:
            return json_response({"message": await svc.rollback()})
        except ValueError as exc:
            return json_error(409, str(exc))

    async def rollout_post(request: web.Request) -> web.StreamResponse:
        svc = running()
        body = await read_json_object(request)
        action = body.get("action")
        try:
            if action == "start":
                nums = {}
                for key, default in (("threshold", 0.2), ("spread_s", 0.0), ("wave_timeout_s", 1800.0)):
                    v = body.get(key, default)
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        return json_error(400, f"field '{key}' must be a number")
                    nums[key] = float(v)
                return json_response({"rollout": await svc.start_rollout(**nums)})
            if action == "stop":
                return json_response({"rollout": await svc.stop_rollout()})
        except ValueError as exc:
            return json_error(409, str(exc))
        return json_error(400, "field 'action' must be \"start\" or \"stop\"")

    r = app.router
    r.add_get("/api/v1/ota", ota_get, name="ota")
    r.add_post("/api/v1/ota/manifest", manifest_post, name="ota_manifest")
    r.add_put("/api/v1/ota/bundle/{id}", bundle_put, name="ota_bundle")
    r.add_post("/api/v1/ota/install", install_post, name="ota_install")
    r.add_post("/api/v1/ota/rollback", rollback_post, name="ota_rollback")
    r.add_post("/api/v1/ota/rollout", rollout_post, name="ota_rollout")
