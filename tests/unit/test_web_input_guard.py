"""Hostile input to the web API gets a clear 4xx with the security headers: huge or non-finite numbers,
lone surrogates, Host headers with anything after the port, unexpected failures; and no answer names
the server software or its version."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.web import app as web_app


def _has_security_headers(headers) -> bool:
    return "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "") and \
        headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("body,text", [
    ('{"routing": {"hello_interval_s": ' + "9" * 5000 + "}}", "number longer"),
    ('{"routing": {"hello_interval_s": 1' + "0" * 400 + ".5}}", "number longer"),
    ('{"routing": {"hello_interval_s": 1e999}}', "out of range"),
    ('{"routing": {"hello_interval_s": NaN}}', "NaN"),
    ('{"routing": {"hello_interval_s": -Infinity}}', "Infinity"),
    ('{"routing": {"nope": "\\ud800"}}', "UTF-8"),
])
async def test_bad_numbers_and_text_are_a_400_with_headers(aiohttp_client, tmp_path, body, text):
    c = await aiohttp_client(make_app(tmp_path))
    token = await do_setup(c, tmp_path)
    r = await c.patch("/api/v1/config", data=body, headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert r.status == 400 and text in (await r.json())["error"]
    assert _has_security_headers(r.headers)
    assert not (tmp_path / "cfg.json").exists()


async def test_an_unexpected_failure_is_json_with_headers(aiohttp_client, tmp_path, monkeypatch):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)

    def broken() -> dict:
        raise KeyError("bug")

    monkeypatch.setattr(c.server.app[web_app.K_STATE].provider, "config_get", broken)
    r = await c.get("/api/v1/config")
    assert r.status == 500 and "error" in await r.json() and _has_security_headers(r.headers)
    assert "bug" not in await r.text()


async def test_no_server_banner(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    for path in ("/api/v1/auth/state", "/api/v1/status", "/nope", "/static/app.js"):
        r = await c.get(path, allow_redirects=False)
        assert "Server" not in r.headers, (path, r.headers.get("Server"))
    # answers aiohttp writes on its own (malformed HTTP) do not name it or its version either
    reader, writer = await asyncio.open_connection("127.0.0.1", c.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n")
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(4096), 10)).split(b"\r\n\r\n")[0].decode()
    writer.close()
    assert head.startswith("HTTP/1.") and " 400 " in head.split("\r\n")[0]
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert all("aiohttp" not in line and "Python" not in line for line in server), server


def test_host_is_parsed_strictly():
    names = frozenset({"localhost", "router.lan"})
    for bad in ("[::1]evil", "[::1]:80evil", "[::1]:", "[::1]:99999", "127.0.0.1:evil", "127.0.0.1:",
                "localhost:8080:80", "localhost:-1", "local host", "localhost/x", "router.lan..", "[::1]]",
                "[::1%]", "[::1%25]", "localhost:８０", "127.0.0.1:+80", "-router.lan", "a" * 300):
        assert not web_app.host_allowed(bad, names), bad
    for ok in ("[::1]", "[::1]:8080", "[fe80::1%25eth0]:80", "127.0.0.1:65535", "localhost:80", "router.lan."):
        assert web_app.host_allowed(ok, names), ok


async def test_a_host_with_junk_after_the_literal_is_refused(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    r = await c.get("/api/v1/auth/state", headers={"Host": "[::1]evil.example"})
    assert r.status == 421 and _has_security_headers(r.headers)
