"""The aiohttp application: pages, the JSON API under /api/v1/, live updates (SSE) and /metrics.

Security rules (each enforced in one middleware or helper below, and tested route by route):
- Every route needs a session except those named in `ANONYMOUS_ROUTES` (login/setup pages and their
  API calls, static assets). `/metrics` is instead gated by source address (`WebConfig.metrics_allow`),
  or a session. Anonymous page requests are redirected to /setup (no password yet) or /login; anonymous
  API requests get 401.
- A request whose Host is neither an IP literal, nor the device's host name (also with .local or
  .lan), nor in `WebConfig.allowed_hosts` is refused (421) before anything else: a page on another
  site cannot reach the UI by making its own name resolve to the router (DNS rebinding).
- Every state change (any method but GET/HEAD) carries `X-CSRF-Token`: the session's token, or before
  login the `x0_csrf` cookie's (double submit). A present `Origin` must match `Host`. Bodies must be
  `application/json`, at most `max_request_bytes`; malformed JSON is a 400 naming the problem, and
  nothing is changed.
- Login, setup and password change go through `LoginThrottle` (429 + Retry-After while locked out);
  its state is saved in `<data_dir>/web/login-throttle.json` so a restart does not reset it.
- Cookies are HttpOnly and SameSite=Strict (Secure when served over TLS); sessions expire.
- Every response carries a strict Content-Security-Policy (no inline script or style), nosniff,
  no-referrer and frame-ancestors 'none'; API responses are not cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import pathlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from x0node import __version__
from x0node.web import openapi
from x0node.web.config import WebConfig
from x0node.web.credentials import Credentials, PasswordPolicyError, check_policy
from x0node.web.host_stats import HostStats
from x0node.web.metrics import HttpMetrics, NodeStateCollector
from x0node.web.provider import EVENTS_LIMIT_MAX, ConfigError, NodeStateProvider
from x0node.web.sessions import Session, SessionStore
from x0node.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "x0_session"
PRE_CSRF_COOKIE = "x0_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAM_INTERVAL_S = 1.0
STREAM_HEAVY_EVERY = 5  # routes/topology are re-checked every this many stream ticks
STREAMS_MAX = 16
# Read views are encoded at most once per this interval and the bytes shared by concurrent requests,
# so many tabs plus a scraper cost the node one provider call per view per interval.
VIEW_CACHE_S = 0.1
CONFIG_CHANGE_KEYS_MAX = 64
JSON_DEPTH_MAX = 4
PAGES = ("/", "/neighbours", "/routes", "/topology", "/events", "/settings")
ANONYMOUS_ROUTES = frozenset({"login_page", "setup_page", "auth_state", "auth_login", "auth_setup", "static"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

# typed application keys
K_PROVIDER = web.AppKey("provider", object)
K_STATE = web.AppKey("web_state", object)
K_SESSION = web.RequestKey("session", object)


class WebState:
    """Per-app mutable state: credentials, sessions, throttle, metrics, open streams."""

    def __init__(self, provider: NodeStateProvider, config: WebConfig, data_dir: pathlib.Path,
                 registry: CollectorRegistry) -> None:
        self.provider = provider
        self.config = config
        self.web_dir = pathlib.Path(data_dir) / "web"
        self.credentials = Credentials(self.web_dir)
        self.sessions = SessionStore(config.session_idle_s, config.session_max_s)
        self.throttle_path = self.web_dir / "login-throttle.json"
        self.throttle = self._load_throttle()
        self.registry = registry
        # names someone else (the daemon) already serves from this registry are left to them; collectors
        # without describe() are only known by what they yield, so ask them once
        taken = set(getattr(registry, "_names_to_collectors", {}))
        try:
            taken |= {m.name for m in registry.collect()}
        except Exception:  # noqa: BLE001 - a broken collector elsewhere must not stop the UI
            log.warning("could not list the metrics already registered", exc_info=True)
        self.http_metrics = HttpMetrics(registry, taken)
        self.collector = NodeStateCollector(provider, taken)
        registry.register(self.collector)
        self.metrics_nets = config.metrics_networks()
        self.allowed_hosts = allowed_host_names(config)
        self.hash_lock = asyncio.Semaphore(1)  # one argon2id (64 MiB) at a time
        self.streams: set[asyncio.Task[Any]] = set()
        self.closing = asyncio.Event()
        self._view_cache: dict[str, tuple[float, bytes]] = {}
        self.host = HostStats()

    def view_bytes(self, name: str, get: Callable[[], Any]) -> bytes:
        now = time.monotonic()
        hit = self._view_cache.get(name)
        if hit is not None and now - hit[0] < VIEW_CACHE_S:
            return hit[1]
        body = json.dumps(get(), separators=(",", ":")).encode()
        self._view_cache[name] = (now, body)
        return body

    def _load_throttle(self) -> LoginThrottle:
        try:
            return LoginThrottle.from_dict(json.loads(self.throttle_path.read_text()))
        except FileNotFoundError:
            return LoginThrottle()
        except (ValueError, UnicodeDecodeError):
            log.warning("ignoring unreadable %s", self.throttle_path)
            return LoginThrottle()

    def save_throttle(self) -> None:
        tmp = self.throttle_path.with_name(self.throttle_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(self.throttle.to_dict()).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.throttle_path)


# ---- helpers ----------------------------------------------------------------------------------------

def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _depth(v: Any, d: int = 0) -> int:
    if isinstance(v, dict):
        return max([_depth(x, d + 1) for x in v.values()] or [d + 1])
    if isinstance(v, list):
        return max([_depth(x, d + 1) for x in v] or [d + 1])
    return d


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest(415, "request body must be application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, f"request body larger than {request.app[K_STATE].config.max_request_bytes} bytes") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(400, "request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "request body must be a JSON object")
    if _depth(data) > JSON_DEPTH_MAX:
        raise BadRequest(400, f"request body nested deeper than {JSON_DEPTH_MAX} levels")
    return data


def require_str(body: dict[str, Any], key: str, max_len: int = 512) -> str:
    v = body.get(key)
    if not isinstance(v, str):
        raise BadRequest(400, f"field '{key}' is required and must be a string", key=key)
    if len(v) > max_len:
        raise BadRequest(400, f"field '{key}' is longer than {max_len} characters", key=key)
    return v


def client_key(request: web.Request) -> str:
    return request.remote or "unknown"


def session_of(request: web.Request) -> Session | None:
    return request.get(K_SESSION)  # type: ignore[return-value]


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def route_name(request: web.Request) -> str | None:
    info = request.match_info
    route = getattr(info, "route", None)
    if route is None:
        return None
    if route.name:
        return route.name
    resource = route.resource
    if resource is not None and resource.name:
        return resource.name
    return None


def endpoint_label(request: web.Request) -> str:
    route = getattr(request.match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or isinstance(request.match_info.http_exception, web.HTTPException):
        return "unmatched"
    if route_name(request) == "static":
        return "/static/"
    return resource.canonical


# ---- middlewares ------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        ep = endpoint_label(request)
        st.http_metrics.requests.labels(request.method, ep, str(status)).inc()
        st.http_metrics.duration.labels(request.method, ep).observe(time.perf_counter() - t0)


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Is the Host header an IP literal or an allowed name (port ignored)? A missing Host is allowed
    (only HTTP/1.0 clients omit it, and a browser never does)."""
    if host_header is None:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        if end < 0:
            return False
        literal = host[1:end]
        try:
            ipaddress.IPv6Address(literal.split("%", 1)[0])
            return True
        except ValueError:
            return False
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        pass
    name = name.rstrip(".")
    return "*" in allowed or name in allowed


def allowed_host_names(config: WebConfig) -> frozenset[str]:
    import socket

    own = socket.gethostname().lower().rstrip(".")
    names = set(config.allowed_hosts)
    if own:
        names |= {own, f"{own}.local", f"{own}.lan"}
    return frozenset(names)


@web.middleware
async def host_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if not host_allowed(request.headers.get("Host"), st.allowed_hosts):
        return json_error(421, "this device does not answer to that host name; use its address, or add "
                               "the name to web.allowed_hosts")
    return await handler(request)


@web.middleware
async def headers_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            resp = json_error(exc.status, exc.reason)
        elif exc.status >= 400:
            resp = web.Response(status=exc.status, text=f"{exc.status} {exc.reason}\n")
        else:
            raise _with_security_headers(exc, request) from None  # redirects keep their shape
    except BadRequest as exc:
        resp = json_error(exc.status, exc.message, **exc.extra)
    return _with_security_headers(resp, request)


def _with_security_headers(resp: Any, request: web.Request) -> Any:
    h = resp.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if request.path.startswith("/api/") or request.path == "/metrics":
        h.setdefault("Cache-Control", "no-store")
    elif request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-cache")
    else:
        h.setdefault("Cache-Control", "no-store")
    return resp


def _origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host", "")
    return origin in (f"http://{host}", f"https://{host}")


@web.middleware
async def auth_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    session = st.sessions.get(request.cookies.get(SESSION_COOKIE), time.monotonic())
    request[K_SESSION] = session
    name = route_name(request)
    matched = name is not None or not isinstance(request.match_info.http_exception, web.HTTPException)

    if name == "metrics":
        if session is None and not _metrics_allowed(st, request):
            return json_error(403, "metrics are not served to this address")
        return await handler(request)

    if request.method not in SAFE_METHODS:
        if not _origin_ok(request):
            return json_error(403, "cross-origin request refused")
        expected = session.csrf if session is not None else request.cookies.get(PRE_CSRF_COOKIE)
        given = request.headers.get(CSRF_HEADER, "")
        if not expected or not secrets.compare_digest(expected.encode(), given.encode()[:256]):
            return json_error(403, f"missing or wrong {CSRF_HEADER} header (reload the page)")

    if name in ANONYMOUS_ROUTES or session is not None:
        return await handler(request)
    if not matched:
        # Unknown paths: do not reveal which exist to anonymous clients.
        return json_error(401, "authentication required") if request.path.startswith("/api/") else \
            _redirect_to_login(st)
    if request.path.startswith("/api/") or name == "metrics":
        return json_error(401, "authentication required")
    return _redirect_to_login(st)


def _redirect_to_login(st: WebState) -> web.Response:
    target = "/login" if st.credentials.password_set() else "/setup"
    return web.Response(status=303, headers={"Location": target})


def _metrics_allowed(st: WebState, request: web.Request) -> bool:
    try:
        addr = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in st.metrics_nets)


# ---- pages ------------------------------------------------------------------------------------------

async def app_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if session_of(request) is not None:
        return web.Response(status=303, headers={"Location": "/"})
    if not st.credentials.password_set():
        return web.Response(status=303, headers={"Location": "/setup"})
    return web.FileResponse(STATIC_DIR / "login.html")


async def setup_page(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if st.credentials.password_set():
        return web.Response(status=303, headers={"Location": "/login"})
    return web.FileResponse(STATIC_DIR / "login.html")


# ---- auth API ---------------------------------------------------------------------------------------

async def auth_state(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    session = session_of(request)
    if session is not None:
        return json_response({"password_set": True, "authenticated": True, "csrf_token": session.csrf})
    token = request.cookies.get(PRE_CSRF_COOKIE)
    if not token or len(token) > 128:
        token = secrets.token_urlsafe(32)
    resp = json_response({"password_set": st.credentials.password_set(), "authenticated": False,
                          "csrf_token": token})
    set_cookie(request, resp, PRE_CSRF_COOKIE, token, None)
    return resp


def _throttled(st: WebState, request: web.Request) -> web.Response | None:
    wait = st.throttle.retry_after(client_key(request), time.time())
    if wait > 0:
        secs = int(wait) + 1
        return json_response({"error": f"too many failed attempts; try again in {secs} s", "retry_after_s": secs},
                             status=429, headers={"Retry-After": str(secs)})
    return None


def _fail(st: WebState, request: web.Request) -> None:
    st.throttle.failure(client_key(request), time.time())
    st.save_throttle()
    log.warning("web login failure from %s", client_key(request))


def _start_session(st: WebState, request: web.Request, status: int = 200) -> web.Response:
    session = st.sessions.create(time.monotonic())
    resp = json_response({"authenticated": True, "csrf_token": session.csrf}, status=status)
    set_cookie(request, resp, SESSION_COOKIE, session.token, int(st.config.session_max_s))
    resp.del_cookie(PRE_CSRF_COOKIE, path="/")
    return resp


async def _verify(st: WebState, password: str) -> bool:
    async with st.hash_lock:
        return await asyncio.get_running_loop().run_in_executor(None, st.credentials.verify, password)


async def auth_login(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if (r := _throttled(st, request)) is not None:
        return r
    body = await read_json_object(request)
    password = require_str(body, "password")
    if not st.credentials.password_set():
        return json_error(409, "no password set yet: use the setup page")
    if not await _verify(st, password):
        _fail(st, request)
        return json_error(401, "wrong password")
    st.throttle.success(client_key(request))
    st.save_throttle()
    log.info("web login from %s", client_key(request))
    return _start_session(st, request)


async def auth_setup(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if st.credentials.password_set():
        return json_error(409, "a password is already set: log in instead")
    if (r := _throttled(st, request)) is not None:
        return r
    body = await read_json_object(request)
    code = require_str(body, "setup_code", 64)
    password = require_str(body, "password")
    if not st.credentials.check_setup_code(code):
        _fail(st, request)
        return json_error(403, "wrong setup code (see the console or <data_dir>/web/setup-code)")
    try:
        check_policy(password)
    except PasswordPolicyError as exc:
        return json_error(400, str(exc), key="password")
    async with st.hash_lock:
        await asyncio.get_running_loop().run_in_executor(None, st.credentials.set_password, password)
    st.throttle.success(client_key(request))
    st.save_throttle()
    log.warning("web UI password set from %s; setup code consumed", client_key(request))
    return _start_session(st, request, status=201)


async def auth_logout(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    session = session_of(request)
    if session is not None:
        st.sessions.drop(session.token)
    resp = json_response({"authenticated": False})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def auth_password(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if (r := _throttled(st, request)) is not None:
        return r
    body = await read_json_object(request)
    current = require_str(body, "current_password")
    new = require_str(body, "new_password")
    try:
        check_policy(new)
    except PasswordPolicyError as exc:
        return json_error(400, str(exc), key="new_password")
    if not await _verify(st, current):
        _fail(st, request)
        return json_error(403, "current password is wrong", key="current_password")
    async with st.hash_lock:
        await asyncio.get_running_loop().run_in_executor(None, st.credentials.set_password, new)
    session = session_of(request)
    st.sessions.drop_all_except(session.token if session else None)
    log.warning("web UI password changed from %s; other sessions ended", client_key(request))
    return json_response({"changed": True})


# ---- node API ---------------------------------------------------------------------------------------

def _status(st: WebState) -> dict[str, Any]:
    data = dict(st.provider.status())
    data.setdefault("version", __version__)
    if any(data.get(k) is None for k in ("cpu_percent", "mem_used_bytes", "mem_total_bytes")):
        for k, v in st.host.sample().items():  # the provider may leave machine figures to us
            if data.get(k) is None:
                data[k] = v
    return data


def _view(request: web.Request, name: str) -> web.Response:
    st: WebState = request.app[K_STATE]
    get = {"status": lambda: _status(st), "neighbours": st.provider.neighbours, "routes": st.provider.routes,
           "topology": st.provider.topology}[name]
    return web.Response(body=st.view_bytes(name, get), content_type="application/json")


async def api_status(request: web.Request) -> web.StreamResponse:
    return _view(request, "status")


async def api_neighbours(request: web.Request) -> web.StreamResponse:
    return _view(request, "neighbours")


async def api_routes(request: web.Request) -> web.StreamResponse:
    return _view(request, "routes")


async def api_topology(request: web.Request) -> web.StreamResponse:
    return _view(request, "topology")


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(400, f"query parameter '{name}' must be an integer", key=name) from None
    if not lo <= v <= hi:
        raise BadRequest(400, f"query parameter '{name}' must be between {lo} and {hi}", key=name)
    return v


async def api_events(request: web.Request) -> web.StreamResponse:
    since = _int_param(request, "since", 0, 0, 2**53)
    limit = _int_param(request, "limit", 100, 1, EVENTS_LIMIT_MAX)
    return json_response(request.app[K_STATE].provider.events(since, limit))


async def api_config_get(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[K_STATE].provider.config_get())


def _count_keys(v: Any) -> int:
    if isinstance(v, dict):
        return len(v) + sum(_count_keys(x) for x in v.values())
    return 0


async def api_config_patch(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    changes = await read_json_object(request)
    if not changes:
        raise BadRequest(400, "no changes given")
    if _count_keys(changes) > CONFIG_CHANGE_KEYS_MAX:
        raise BadRequest(400, f"more than {CONFIG_CHANGE_KEYS_MAX} settings in one change")
    try:
        new = st.provider.config_set(changes)
    except ConfigError as exc:
        return json_error(400, exc.message, key=exc.key)
    except ValueError as exc:  # the daemon's own ConfigError has the same shape
        key, message = getattr(exc, "key", None), getattr(exc, "message", None)
        if not isinstance(key, str) or not isinstance(message, str):
            raise
        return json_error(400, message, key=key)
    log.info("config changed from web UI: %s", ", ".join(
        f"{s}.{k}" if isinstance(v, dict) else str(s) for s, vs in changes.items()
        for k, v in (vs.items() if isinstance(vs, dict) else [(s, vs)])))
    return json_response(new)


async def api_openapi(request: web.Request) -> web.StreamResponse:
    return json_response(openapi.document(__version__))


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `status`, `neighbours` every tick when changed; `routes`, `topology` every
    few ticks when changed; `events` as they arrive. Ends when the session ends or the app stops."""
    st: WebState = request.app[K_STATE]
    if len(st.streams) >= STREAMS_MAX:
        return json_error(503, "too many live streams open")
    session = session_of(request)
    since = _int_param(request, "since", 0, 0, 2**53)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    _with_security_headers(resp, request)
    await resp.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    st.streams.add(task)
    last: dict[str, str] = {}
    tick = 0
    try:
        while not st.closing.is_set():
            if session is None or st.sessions.get(session.token, time.monotonic()) is None:
                await resp.write(b"event: logout\ndata: {}\n\n")
                break
            views: dict[str, Callable[[], Any]] = {
                "status": lambda: _status(st), "neighbours": st.provider.neighbours}
            if tick % STREAM_HEAVY_EVERY == 0:
                views.update(routes=st.provider.routes, topology=st.provider.topology)
            for name, get in views.items():
                text = json.dumps(get(), separators=(",", ":"))
                if last.get(name) != text:
                    last[name] = text
                    await resp.write(f"event: {name}\ndata: {text}\n\n".encode())
            new_events = st.provider.events(since, EVENTS_LIMIT_MAX)
            if new_events:
                since = int(new_events[-1]["seq"])
                await resp.write(f"event: events\ndata: {json.dumps(new_events, separators=(',', ':'))}\n\n".encode())
            tick += 1
            try:
                await asyncio.wait_for(st.closing.wait(), STREAM_INTERVAL_S)
            except TimeoutError:
                pass
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        st.streams.discard(task)
    return resp


async def metrics(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, st.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---- assembly ---------------------------------------------------------------------------------------

async def _on_shutdown(app: web.Application) -> None:
    st: WebState = app[K_STATE]
    st.closing.set()
    for task in list(st.streams):
        task.cancel()


def create_app(provider: NodeStateProvider, web_config: WebConfig | dict[str, Any] | None,
               data_dir: pathlib.Path | str, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the application. Logs the setup code (creating it if needed) when no password is set."""
    config = web_config if isinstance(web_config, WebConfig) else WebConfig.from_mapping(web_config)
    registry = registry if registry is not None else CollectorRegistry()
    state = WebState(provider, config, pathlib.Path(data_dir), registry)
    state.credentials.ensure_setup_code()
    app = web.Application(middlewares=[metrics_mw, headers_mw, host_mw, auth_mw], client_max_size=config.max_request_bytes)
    app[K_PROVIDER] = provider
    app[K_STATE] = state
    r = app.router
    for i, path in enumerate(PAGES):
        r.add_get(path, app_page, name=f"page_{i}")
    r.add_get("/login", login_page, name="login_page")
    r.add_get("/setup", setup_page, name="setup_page")
    r.add_static("/static/", STATIC_DIR, name="static", append_version=False)
    r.add_get("/api/v1/auth/state", auth_state, name="auth_state")
    r.add_post("/api/v1/auth/login", auth_login, name="auth_login")
    r.add_post("/api/v1/auth/setup", auth_setup, name="auth_setup")
    r.add_post("/api/v1/auth/logout", auth_logout, name="auth_logout")
    r.add_post("/api/v1/auth/password", auth_password, name="auth_password")
    r.add_get("/api/v1/status", api_status, name="status")
    r.add_get("/api/v1/neighbours", api_neighbours, name="neighbours")
    r.add_get("/api/v1/routes", api_routes, name="routes")
    r.add_get("/api/v1/topology", api_topology, name="topology")
    r.add_get("/api/v1/events", api_events, name="events")
    r.add_get("/api/v1/config", api_config_get, name="config_get")
    r.add_patch("/api/v1/config", api_config_patch, name="config_patch")
    r.add_get("/api/v1/stream", api_stream, name="stream")
    r.add_get("/api/v1/openapi.json", api_openapi, name="openapi")
    r.add_get("/metrics", metrics, name="metrics")
    app.on_shutdown.append(_on_shutdown)
    return app
