"""Login attempts are counted before the password is checked: concurrent and slow-body requests cannot
exceed the per-source bound, a body that does not arrive times out, a guesser from many addresses
slows the checks down without locking the admin out, and a browser that logged in before keeps its
own allowance. A console password reset ends every session of the running service."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import aiohttp
import pytest

from tests.unit.test_web_support import PASSWORD, csrf, do_login, do_setup, fast_argon2, make_app  # noqa: F401
from x0node.io.peer import source_key
from x0node.web import app as web_app
from x0node.web import throttle
from x0node.web.credentials import Credentials
from x0node.web.throttle import LoginThrottle

WRONG = "wrong password!"


class Source:
    """An HTTP client whose connections come from one loopback address (the whole 127/8 is local)."""

    def __init__(self, server, addr: str) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(addr, 0)), cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, password: str) -> aiohttp.ClientResponse:
        async with self.session.get(self.base + "/api/v1/auth/state") as r:
            token = (await r.json())["csrf_token"]
        async with self.session.post(self.base + "/api/v1/auth/login", json={"password": password},
                                     headers={"X-CSRF-Token": token}) as r:
            await r.read()
            return r

    async def close(self) -> None:
        await self.session.close()


async def test_concurrent_attempts_cannot_exceed_the_per_source_bound(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    c.session.cookie_jar.clear()
    token = await csrf(c)

    async def attempt() -> int:
        r = await c.post("/api/v1/auth/login", json={"password": WRONG}, headers={"X-CSRF-Token": token})
        return r.status

    statuses = await asyncio.gather(*(attempt() for _ in range(3 * throttle.FAILS_PER_CLIENT)))
    assert statuses.count(401) == throttle.FAILS_PER_CLIENT, statuses
    assert statuses.count(429) == 2 * throttle.FAILS_PER_CLIENT


def _raw_login(token: str, body: bytes) -> bytes:
    return (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Cookie: x0_csrf=" + token.encode() + b"\r\nX-CSRF-Token: " + token.encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")


async def _status_of(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), 10)
    return int(line.split()[1])


async def test_slow_bodies_are_counted_when_they_arrive(aiohttp_client, tmp_path):
    """Requests that started before a lockout and send their body after it are refused, not checked."""
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    c.session.cookie_jar.clear()
    token = await csrf(c)
    body = json.dumps({"password": PASSWORD}).encode()
    slow = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", c.server.port)
        writer.write(_raw_login(token, body) + body[:5])
        await writer.drain()
        slow.append((reader, writer))
    await asyncio.sleep(0.2)  # the handlers are now waiting for the rest of their bodies
    for _ in range(throttle.FAILS_PER_CLIENT):
        r = await c.post("/api/v1/auth/login", json={"password": WRONG}, headers={"X-CSRF-Token": token})
        assert r.status == 401
    statuses = []
    for reader, writer in slow:
        writer.write(body[5:])
        await writer.drain()
        statuses.append(await _status_of(reader))
        writer.close()
    assert statuses == [429, 429, 429]


async def test_a_body_that_never_arrives_times_out(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(web_app, "BODY_READ_TIMEOUT_S", 0.3)
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    c.session.cookie_jar.clear()
    token = await csrf(c)
    reader, writer = await asyncio.open_connection("127.0.0.1", c.server.port)
    writer.write(_raw_login(token, b'{"password": "12345678901"}') + b'{"pass')
    await writer.drain()
    assert await _status_of(reader) == 408
    writer.close()


def test_source_is_the_address_or_its_ipv6_64():
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key(None) == source_key("not an address") == "unknown"


def test_global_slow_down_spaces_checks_and_bounds_waiting():
    t = LoginThrottle()
    now = 1000.0
    for i in range(throttle.FAILS_GLOBAL):
        d = t.begin(f"10.0.0.{i}", now)
        assert d.retry_after_s == 0 and d.check_at == now
    # from now on checks from all sources together are spaced GLOBAL_SLOW_INTERVAL_S apart ...
    slots = []
    i = 0
    while True:
        d = t.begin(f"10.0.1.{i}", now)
        i += 1
        if d.retry_after_s > 0:
            break
        slots.append(d.check_at)
    assert slots[0] == now and all(b - a == throttle.GLOBAL_SLOW_INTERVAL_S for a, b in zip(slots, slots[1:], strict=False))
    # ... and nobody waits longer than GLOBAL_WAIT_MAX_S: the rest are told when to come back
    assert slots[-1] - now <= throttle.GLOBAL_WAIT_MAX_S
    assert d.retry_after_s > 0
    # a source with a check already queued cannot queue a second one
    assert t.begin("10.0.1.1", now).retry_after_s > 0
    # nobody is locked out: once the queue has drained, a new source is checked again
    later = slots[-1] + throttle.GLOBAL_SLOW_INTERVAL_S
    assert t.begin("192.0.2.1", later).retry_after_s == 0
    # the slow-down ends when the failures leave the window
    calm = later + throttle.WINDOW_S + 1
    d = t.begin("192.0.2.2", calm)
    assert d.retry_after_s == 0 and d.check_at == calm


def test_attempts_count_before_the_check_and_success_takes_its_own_back():
    t = LoginThrottle()
    for i in range(throttle.FAILS_PER_CLIENT):
        assert t.begin("a", float(i)).retry_after_s == 0
    assert t.begin("a", 10.0).retry_after_s == throttle.LOCKOUT_BASE_S - 6
    d = t.begin("b", 11.0)
    t.success("b", d)
    assert t.to_dict()["global_fails"] == [float(i) for i in range(throttle.FAILS_PER_CLIENT)]


@pytest.fixture
def quick_slowdown(monkeypatch):
    monkeypatch.setattr(throttle, "GLOBAL_SLOW_INTERVAL_S", 0.02)


async def test_many_guessing_addresses_do_not_lock_the_admin_out(aiohttp_client, tmp_path, quick_slowdown):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    attackers = [Source(c.server, f"127.0.0.{10 + i}") for i in range(throttle.FAILS_GLOBAL + 5)]
    admin = Source(c.server, "127.0.0.2")
    try:
        for a in attackers:
            assert (await a.login(WRONG)).status in (401, 429)
        r = await admin.login(PASSWORD)
        assert r.status == 200
    finally:
        for s in (*attackers, admin):
            await s.close()


async def test_a_known_browser_logs_in_while_its_address_is_locked(aiohttp_client, tmp_path):
    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    device = [v for v in c.session.cookie_jar if v.key == web_app.DEVICE_COOKIE]
    assert device, "a successful sign-in marks the browser"
    guesser = Source(c.server, "127.0.0.1")  # same address as the admin (a shared NAT, the same LAN host)
    try:
        for _ in range(throttle.FAILS_PER_CLIENT + 1):
            r = await guesser.login(WRONG)
        assert r.status == 429
        # a forged device cookie does not help the guesser
        guesser.session.cookie_jar.update_cookies({web_app.DEVICE_COOKIE: "00" * 16 + "." + "00" * 16})
        assert (await guesser.login(PASSWORD)).status == 429
    finally:
        await guesser.close()
    await c.post("/api/v1/auth/logout", json={}, headers={"X-CSRF-Token": await csrf(c)})
    await do_login(c)


async def test_console_password_reset_ends_all_sessions(aiohttp_client, tmp_path, monkeypatch):
    from x0node.cli import main

    c = await aiohttp_client(make_app(tmp_path))
    await do_setup(c, tmp_path)
    assert (await c.get("/api/v1/status")).status == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("a console password\n"))
    assert main(["web", "set-password", "--data-dir", str(tmp_path), "--password-stdin"]) == 0
    assert (await c.get("/api/v1/status")).status == 401
    assert Credentials(tmp_path / "web").verify("a console password")
    await do_login(c, "a console password")
    assert (await c.get("/api/v1/status")).status == 200
