"""Every registered route refuses an anonymous request unless it is on the allow list."""

from __future__ import annotations

from tests.unit.test_web_support import fast_argon2, make_app  # noqa: F401
from x0node.web.app import ANONYMOUS_ROUTES

# Paths reachable without a session, and why.
ALLOWED_ANONYMOUS = {
    "/login": "sign-in page",
    "/setup": "first-password page",
    "/api/v1/auth/state": "tells the page whether to show setup or sign-in, hands out the pre-login CSRF token",
    "/api/v1/auth/login": "signing in",
    "/api/v1/auth/setup": "setting the first password with the setup code",
    "/static": "assets of the pages above (no node data)",
}


def _concrete(canonical: str) -> str:
    return "/static/app.js" if canonical == "/static" else canonical


async def test_every_route_refuses_anonymous_requests(aiohttp_client, tmp_path):
    # metrics_allow empty: /metrics is then as closed as everything else
    app = make_app(tmp_path, metrics_allow=())
    client = await aiohttp_client(app)
    routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]
    assert len(routes) >= 20
    token = (await (await client.get("/api/v1/auth/state")).json())["csrf_token"]
    checked = 0
    for method, canonical in routes:
        path = _concrete(canonical)
        # with a valid pre-login CSRF token, so that CSRF is not what refuses the request
        resp = await client.request(method, path, allow_redirects=False, json={} if method not in ("GET", "HEAD") else None,
                                    headers={"X-CSRF-Token": token})
        if canonical in ALLOWED_ANONYMOUS:
            assert resp.status < 500, (method, path, resp.status)
            continue
        checked += 1
        if path.startswith("/api/"):
            assert resp.status == 401, (method, path, resp.status)
        elif path == "/metrics":
            assert resp.status == 403, (method, path, resp.status)
        else:
            assert resp.status == 303 and resp.headers["Location"] in ("/login", "/setup"), (method, path, resp.status)
        body = await resp.read()
        assert b"node_id" not in body and b"mesh_addr" not in body
    assert checked >= 15
    # the allow list in the app and in this test agree
    names = {r.resource.name for r in app.router.routes() if r.resource is not None and r.resource.canonical in ALLOWED_ANONYMOUS}
    assert names == set(ANONYMOUS_ROUTES)
