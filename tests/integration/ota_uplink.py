"""A vendor's download server for OTA tests and bench/ota.py: static files with HTTP Range, counting
the bytes it sends into `<dir>/uplink-stats.json`. Run inside one namespace (the gateway's):
    python -m tests.integration.ota_uplink DIR PORT
"""

from __future__ import annotations

import json
import pathlib
import sys

from aiohttp import web


def main() -> None:
    root = pathlib.Path(sys.argv[1]).resolve()
    port = int(sys.argv[2])
    stats = {"bytes": 0, "requests": 0}

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = root / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        size = path.stat().st_size
        rng = request.http_range
        start, stop = rng.start or 0, min(rng.stop if rng.stop is not None else size, size)
        stats["bytes"] += max(0, stop - start)
        stats["requests"] += 1
        (root / "uplink-stats.json").write_text(json.dumps(stats))
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *a: print("uplink ready", flush=True))


if __name__ == "__main__":
    main()
