"""/api/v1/state routes: authenticated like every route, validated bodies, 503 without the service."""

from __future__ import annotations

from tests.sim.state_mesh import SimStateService, StateSim
from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.state import revocations
from x0node.web.state_api import add_routes


async def test_state_routes(aiohttp_client, tmp_path):
    sim = StateSim(2, [(0, 1)], seed=8)
    svc: list = [None]
    app = make_app(tmp_path)
    add_routes(app, lambda: svc[0])
    client = await aiohttp_client(app)
    assert (await client.get("/api/v1/state")).status == 401
    assert (await client.put("/api/v1/state/kv/x", json={"value": 1})).status == 403  # no CSRF token
    token = await do_setup(client, tmp_path)
    h = {"X-CSRF-Token": token}
    assert (await client.get("/api/v1/state")).status == 503
    svc[0] = SimStateService(sim)
    r = await client.put("/api/v1/state/kv/x", json={"value": {"a": 1}}, headers=h)
    assert r.status == 200, await r.text()
    assert (await (await client.get("/api/v1/state/kv/x")).json())["value"] == {"a": 1}
    assert (await client.get("/api/v1/state/kv/none")).status == 404
    assert (await client.put("/api/v1/state/nope/x", json={"value": 1}, headers=h)).status == 400
    assert (await client.put("/api/v1/state/g.c/x", json={"incr": "many"}, headers=h)).status == 400
    view = await (await client.get("/api/v1/state")).json()
    assert view["objects"]["kv"]["x"]["value"] == {"a": 1}
    assert (await client.post("/api/v1/state/revocations", json={"crl": "zz"}, headers=h)).status == 400
    crl = sim.anchor.revoke([b"\x01" * 16], serial=2, issued_at=1)
    svc[0].ctx.router.apply_revocations = lambda crl, now: "not_newer"
    r = await client.post("/api/v1/state/revocations", json={"crl": crl.encode().hex()}, headers=h)
    assert r.status == 200 and (await r.json())["serial"] == 2
    assert revocations.best(svc[0].gossip.store, svc[0].gossip.trust).serial == 2
