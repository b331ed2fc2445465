"""The Firmware page's data: what image this device runs and what is in it (read only).

    GET /api/v1/firmware        board, version, sources, counts and every component (name, version, kind,
                                licences) from the image's bill of materials
    GET /api/v1/firmware/sbom   the bill of materials itself (CycloneDX JSON, as built)

Source on the device: /usr/share/x0tta6bl4/sbom.cdx.json, written by the image build (image/sbom.py)
into the read-only root. Rules: both need a session like every API
route; a file larger than FIRMWARE_FILE_MAX_BYTES or not of the expected shape is answered with 503 and
a reason (never a partial list); off an image (no such files) the answer is 404 with a reason. The parsed
summary is kept while the file's size and mtime stay the same (the root is read-only).
"""

from __future__ import annotations

import json
import pathlib
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
