"""API behaviour of x0node.web.app through aiohttp's test client."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.unit.test_web_support import PASSWORD, csrf, do_login, do_setup, fast_argon2, make_app  # noqa: F401
from x0node.web import throttle
from x0node.web.memory_provider import MemoryProvider


async def test_first_visit_redirects_to_setup_and_code_is_private(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    r = await c.get("/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/setup"
    r = await c.get("/login", allow_redirects=False)
    assert r.headers["Location"] == "/setup"
    code_file = tmp_path / "web" / "setup-code"
    assert stat.S_IMODE(os.stat(code_file).st_mode) == 0o600
    st = await (await c.get("/api/v1/auth/state")).json()
    assert st["password_set"] is False and st["authenticated"] is False
    r = await c.post("/api/v1/auth/login", json={"password": "x" * 12}, headers={"X-CSRF-Token": st["csrf_token"]})
    assert r.status == 409


async def test_setup_needs_right_code_then_consumes_it(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    token = await csrf(c)
    r = await c.post("/api/v1/auth/setup", json={"setup_code": "AAAA-BBBB-CCCC", "password": PASSWORD},
                     headers={"X-CSRF-Token": token})
    assert r.status == 403
    assert not (tmp_path / "web" / "password").exists()
    code = (tmp_path / "web" / "setup-code").read_text().strip()
    r = await c.post("/api/v1/auth/setup", json={"setup_code": code, "password": "short"},
                     headers={"X-CSRF-Token": token})
    assert r.status == 400 and (await r.json())["key"] == "password"
    new_csrf = await do_setup(c, tmp_path)
    assert not (tmp_path / "web" / "setup-code").exists()
    pw_file = tmp_path / "web" / "password"
    assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
    assert pw_file.read_bytes().startswith(b"$argon2id$")
    assert PASSWORD.encode() not in pw_file.read_bytes()
    r = await c.get("/api/v1/status")
    assert r.status == 200
    # a second setup is refused even with the old code
    r = await c.post("/api/v1/auth/setup", json={"setup_code": code, "password": PASSWORD},
                     headers={"X-CSRF-Token": new_csrf})
    assert r.status == 409


async def test_session_cookie_flags_and_security_headers(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    code = (tmp_path / "web" / "setup-code").read_text().strip()
    r = await c.post("/api/v1/auth/setup", json={"setup_code": code, "password": PASSWORD},
                     headers={"X-CSRF-Token": await csrf(c)})
    cookie = [v for v in r.headers.getall("Set-Cookie") if v.startswith("x0_session=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie and "path=/" in cookie
    for path in ("/", "/api/v1/status", "/static/app.js", "/login"):
        r = await c.get(path, allow_redirects=False)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = await c.get("/api/v1/status")
    assert r.headers["Cache-Control"] == "no-store"


async def test_pages_have_no_inline_script_or_style(aiohttp_client, tmp_path):
    from x0node.web.app import STATIC_DIR

    for page in ("index.html", "login.html"):
        html = (STATIC_DIR / page).read_text()
        assert "<style" not in html and " style=" not in html
        assert "<script>" not in html and "onclick" not in html and "javascript:" not in html
        for src in ("http://", "https://", "//"):
            assert f'src="{src}' not in html and f'href="{src}' not in html


async def test_api_views_return_provider_state(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    st = await (await c.get("/api/v1/status")).json()
    assert st["node_id"] == "a1b2c3d4e5f60718" and st["health"] == "ok" and st["version"]
    ns = await (await c.get("/api/v1/neighbours")).json()
    assert {n["quality"] for n in ns} == {"good", "fair", "poor"}
    routes = await (await c.get("/api/v1/routes")).json()
    assert len(routes) == 4 and all(r["dest"].endswith("/128") for r in routes)
    topo = await (await c.get("/api/v1/topology")).json()
    assert len(topo["nodes"]) == 5 and len(topo["links"]) == 6
    ev = await (await c.get("/api/v1/events?since=2&limit=1")).json()
    assert [e["seq"] for e in ev] == [3]
    for bad in ("since=-1", "since=abc", "limit=0", "limit=100000"):
        r = await c.get(f"/api/v1/events?{bad}")
        assert r.status == 400 and "error" in await r.json()


async def test_config_write_validates_and_changes_nothing_on_error(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    token = await do_setup(c, tmp_path)
    before = await (await c.get("/api/v1/config")).json()
    h = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    cases = [
        ("{not json", 400, "malformed JSON"),
        ("[1, 2]", 400, "JSON object"),
        ('{"routing": {"hello_interval_s": "fast"}}', 400, "number"),
        ('{"routing": {"hello_interval_s": 999}}', 400, "between"),
        ('{"routing": {"nope": 1}}', 400, "unknown setting"),
        ('{"routing": {"hello_interval_s": 2, "dead_interval_s": 1}}', 400, "greater"),
        ("{}", 400, "no changes"),
        (b"\xff\xfe", 400, "UTF-8"),
        ('{"a":{"b":{"c":{"d":{"e":1}}}}}', 400, "nested"),
    ]
    for body, status, text in cases:
        r = await c.patch("/api/v1/config", data=body, headers=h)
        j = await r.json()
        assert r.status == status and text in j["error"], (body, j)
    r = await c.patch("/api/v1/config", data='{"routing": {"nope": 1}}', headers=h)
    assert (await r.json())["key"] == "routing.nope"
    r = await c.patch("/api/v1/config", data='{"routing": {"hello_interval_s": 1}}',
                      headers={"X-CSRF-Token": token, "Content-Type": "text/plain"})
    assert r.status == 415
    assert await (await c.get("/api/v1/config")).json() == before
    assert not (tmp_path / "cfg.json").exists()
    r = await c.patch("/api/v1/config", json={"routing": {"hello_interval_s": 0.5}}, headers={"X-CSRF-Token": token})
    assert r.status == 200 and (await r.json())["routing"]["hello_interval_s"] == 0.5
    assert json.loads((tmp_path / "cfg.json").read_text())["routing"]["hello_interval_s"] == 0.5


async def test_request_size_is_bounded(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path, max_request_bytes=4096))
    token = await do_setup(c, tmp_path)
    big = json.dumps({"routing": {"hello_interval_s": 1, "pad": "x" * 10000}})
    r = await c.patch("/api/v1/config", data=big, headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert r.status == 413 and "error" in await r.json()


async def test_csrf_and_origin_are_required_for_changes(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    token = await do_setup(c, tmp_path)
    body = {"routing": {"hello_interval_s": 2}}
    r = await c.patch("/api/v1/config", json=body)
    assert r.status == 403 and "CSRF" in (await r.json())["error"]
    r = await c.patch("/api/v1/config", json=body, headers={"X-CSRF-Token": "wrong"})
    assert r.status == 403
    r = await c.patch("/api/v1/config", json=body, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert r.status == 403
    r = await c.post("/api/v1/auth/logout", json={})
    assert r.status == 403
    # anonymous login without the pre-session token is refused too
    c.session.cookie_jar.clear()
    r = await c.post("/api/v1/auth/login", json={"password": PASSWORD})
    assert r.status == 403
    assert (await (await c.get("/api/v1/config", allow_redirects=False)).json())["error"] == "authentication required"


async def test_login_throttle_locks_out_and_survives_restart(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    c.session.cookie_jar.clear()
    token = await csrf(c)
    statuses = []
    for _ in range(throttle.FAILS_PER_CLIENT + 1):
        r = await c.post("/api/v1/auth/login", json={"password": "wrong password!"}, headers={"X-CSRF-Token": token})
        statuses.append(r.status)
    assert statuses[:-1] == [401] * throttle.FAILS_PER_CLIENT and statuses[-1] == 429
    assert int(r.headers["Retry-After"]) > 0
    # even the right password is refused while locked out
    r = await c.post("/api/v1/auth/login", json={"password": PASSWORD}, headers={"X-CSRF-Token": token})
    assert r.status == 429
    # a new app over the same data dir (a daemon restart) keeps the lockout
    c2 = await aiohttp_client(make_app(tmp_path))
    r = await c2.post("/api/v1/auth/login", json={"password": PASSWORD}, headers={"X-CSRF-Token": await csrf(c2)})
    assert r.status == 429


async def test_logout_and_password_change_end_sessions(aiohttp_client, tmp_path):
    app = make_app(tmp_path)
    c1 = await aiohttp_client(app)
    t1 = await do_setup(c1, tmp_path)
    from aiohttp.test_utils import TestClient

    c2 = TestClient(c1.server)
    await c2.start_server()
    try:
        await do_login(c2)
        assert (await c2.get("/api/v1/status")).status == 200
        r = await c1.post("/api/v1/auth/password", json={"current_password": "not it at all", "new_password": "x" * 12},
                          headers={"X-CSRF-Token": t1})
        assert r.status == 403
        r = await c1.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "short"},
                          headers={"X-CSRF-Token": t1})
        assert r.status == 400
        r = await c1.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "a new long password"},
                          headers={"X-CSRF-Token": t1})
        assert r.status == 200
        assert (await c2.get("/api/v1/status")).status == 401  # other session ended
        assert (await c1.get("/api/v1/status")).status == 200
        r = await c1.post("/api/v1/auth/logout", json={}, headers={"X-CSRF-Token": t1})
        assert r.status == 200
        assert (await c1.get("/api/v1/status")).status == 401
        await do_login(c2, "a new long password")
    finally:
        await c2.close()


async def test_metrics_names_values_and_access(aiohttp_client, tmp_path):
    p = MemoryProvider()
    p.set_neighbours([{"node_id": "b" * 16, "ifname": "m0", "state": "up", "rtt_ms": 12.5, "quality": "good",
                       "throughput_bps": 80e6, "throughput_source": "probe"},
                      {"node_id": "c" * 16, "ifname": "m1", "state": "up", "rtt_ms": 1.0, "quality": "good",
                       "throughput_bps": None}])
    p.set_topology({"nodes": [p._self_node(), {"node_id": "b" * 16}, {"node_id": "d" * 16}],
                    "links": [{"a": p.node_id, "b": "b" * 16, "cost": 125, "quality": "good"},
                              {"a": "b" * 16, "b": "d" * 16, "cost": 900, "quality": "poor"}]})
    p.count_drop("bad_signature", 7)
    p.count_spf(0.25)
    p.count_credential_check("ok", 9)
    p.count_credential_check("expired", 2)
    c = await aiohttp_client(make_app(tmp_path, provider=p))
    await c.get("/api/v1/status")
    text = await (await c.get("/metrics")).text()
    for line in ('mesh_peers_count 2.0',
                 'x0node_neighbour_throughput_bytes_per_second{ifname="m0",peer_id="' + "b" * 16 + '",source="probe"} 1e+07',
                 'x0node_mesh_nodes 2.0', 'x0node_mesh_nodes_reachable 2.0', 'x0node_mesh_links 2.0',
                 'x0node_mesh_max_hops 2.0', 'x0node_mesh_links_by_quality{quality="poor"} 1.0',
                 'x0node_mesh_links_by_quality{quality="bad"} 0.0', 'x0node_mesh_joins_total 2.0',
                 'x0node_mesh_leaves_total 0.0',
                 'node_health_status{node_id="a1b2c3d4e5f60718"} 1.0', 'x0node_packets_dropped_total{reason="bad_signature"} 7.0',
                 'x0node_spf_runs_total 1.0', 'x0node_spf_seconds_total 0.25', 'x0node_lsdb_size 3.0', 'x0node_routes 0.0',
                 'http_requests_total{endpoint="/api/v1/status",method="GET",status="401"} 1.0'):
        assert line in text, line
    assert "node_uptime_seconds{" in text and "http_request_duration_seconds_bucket" in text
    assert 'peer_id="' + "c" * 16 + '",source' not in text  # unknown throughput: no sample
    # every known node: health, uptime and identity; credential checks; RTT samples as a histogram
    p.set_topology({"nodes": [{"node_id": "a1b2c3d4e5f60718", "self": True, "mesh_addr": "fd00::1"},
                              {"node_id": "c" * 16, "reachable": True, "role": "gateway", "mesh_addr": "fd00::c"},
                              {"node_id": "d" * 16, "reachable": False, "mesh_addr": "fd00::d"}], "links": []})
    text = await (await c.get("/metrics")).text()
    peer = 'peer_id="' + "b" * 16 + '"'
    for line in ('mesh_latency_seconds_bucket{le="0.01",' + peer + '} 0.0',
                 'mesh_latency_seconds_bucket{le="0.025",' + peer + '} 1.0', 'mesh_latency_seconds_count{' + peer + '} 1.0',
                 'mesh_latency_seconds_sum{' + peer + '} 0.0125', 'node_health_status{node_id="' + "c" * 16 + '"} 1.0',
                 'node_health_status{node_id="' + "d" * 16 + '"} 0.0', 'node_uptime_seconds{node_id="' + "d" * 16 + '"} 0.0',
                 'x0node_node_info{mesh_addr="fd00::c",node_id="' + "c" * 16 + '",role="gateway",self="0"} 1.0',
                 'x0node_cert_auth_success_total 9.0', 'x0node_cert_auth_failure_total{reason="expired"} 2.0'):
        assert line in text, line
    # not served to addresses outside the allow list unless logged in
    c2 = await aiohttp_client(make_app(tmp_path / "b", metrics_allow=("10.0.0.0/8",)))
    assert (await c2.get("/metrics")).status == 403
    await do_setup(c2, tmp_path / "b")
    assert (await c2.get("/metrics")).status == 200


async def test_stream_sends_snapshots_and_new_events(aiohttp_client, tmp_path):
    p = MemoryProvider()
    c = await aiohttp_client(make_app(tmp_path, provider=p))
    await do_setup(c, tmp_path)
    r = await c.get("/api/v1/stream")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    seen: dict[str, str] = {}
    p.add_event("neighbour_up", "neighbour x up")
    while "events" not in seen:
        line = (await r.content.readline()).decode()
        if line.startswith("event: "):
            kind = line[7:].strip()
            seen[kind] = (await r.content.readline()).decode()
    assert {"status", "neighbours", "routes", "topology"} <= set(seen)
    assert json.loads(seen["events"][6:])[0]["message"] == "neighbour x up"
    r.close()


async def test_unknown_paths_and_methods(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    assert (await c.get("/api/v1/nope")).status == 401
    r = await c.get("/nope", allow_redirects=False)
    assert r.status == 303
    token = await do_setup(c, tmp_path)
    r = await c.get("/api/v1/nope")
    assert r.status == 404 and "error" in await r.json()
    r = await c.delete("/api/v1/status", headers={"X-CSRF-Token": token})
    assert r.status == 405
    assert (await c.get("/static/../app.py")).status in (403, 404)


def test_host_header_rules():
    from x0node.web.app import host_allowed

    names = frozenset({"localhost", "router.lan"})
    for ok in (None, "127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "[fd78:3074:6b14::1]", "[fe80::1%eth0]:80",
               "localhost", "LOCALHOST:8080", "router.lan.", "192.168.1.1"):
        assert host_allowed(ok, names), ok
    for bad in ("evil.example", "evil.example:8080", "localhost.evil.example", "[not-an-address]:80", "[::1",
                "", "127.0.0.1.evil.example", "fd78::1"):  # a bare IPv6 literal without brackets is not a Host
        assert not host_allowed(bad, names), bad
    assert host_allowed("anything.example", frozenset({"*"}))


async def test_other_host_names_are_refused_before_anything_else(aiohttp_client, tmp_path):
    import socket

    c = await aiohttp_client(make_app(tmp_path, allowed_hosts=("router.example",)))
    r = await c.get("/api/v1/auth/state", headers={"Host": "rebind.attacker.example"})
    assert r.status == 421 and "allowed_hosts" in (await r.json())["error"]
    r = await c.post("/api/v1/auth/setup", json={}, headers={"Host": "rebind.attacker.example"})
    assert r.status == 421
    for host in ("router.example:8080", f"{socket.gethostname()}.local", "[::1]:8080"):
        r = await c.get("/api/v1/auth/state", headers={"Host": host})
        assert r.status == 200, host


def test_allowed_hosts_config_is_validated():
    from x0node.web.config import WebConfig
    from x0node.web.provider import ConfigError

    assert WebConfig.from_mapping({"allowed_hosts": ["Router.LAN.", "*"]}).allowed_hosts == ("router.lan", "*")
    for bad in ("router", ["bad name"], ["a/b"], [""], ["."], [1]):
        with pytest.raises(ConfigError) as info:
            WebConfig.from_mapping({"allowed_hosts": bad})
        assert info.value.key == "web.allowed_hosts"


def test_validated_web_section_feeds_back_into_the_service():
    """The daemon validates [web] once and hands the filled-in section to create_service."""
    from x0node.web.service import create_service, validate_config

    section = validate_config({"allowed_hosts": ["router.lan"]})
    assert create_service(section).config.allowed_hosts == ("router.lan",)
    assert create_service(validate_config({})).config.allowed_hosts == ("localhost",)
