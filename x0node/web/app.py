"""The aiohttp application: pages, the JSON API under /api/v1/, live updates (SSE) and /metrics.

Security rules (each enforced in one middleware or helper below, and tested route by route):
- Every route needs a session except those named in `ANONYMOUS_ROUTES` (login/setup pages and their
  API calls, static assets). `/metrics` is instead gated by source address (`WebConfig.metrics_allow`),
  or a session. Anonymous page requests are redirected to /setup (no password yet) or /login; anonymous
  API requests get 401.
- A request whose Host is neither an IP literal, nor the device's host name (also with .local or
  .lan), nor in `WebConfig.allowed_hosts` is refused (421) before anything else: a page on another
  site cannot reach the UI by making its own name resolve to the router (DNS rebinding).
- Host is parsed strictly (RFC 9110 section 7.2, RFC 3986 section 3.2.2): a bracketed IPv6 literal, an
  IPv4 address or a DNS name, then nothing but an optional `:port` of digits (`[::1]evil` is refused).
- Every state change (any method but GET/HEAD) carries `X-CSRF-Token`: the session's token, or before
  login the `x0_csrf` cookie's (double submit). A present `Origin` must match `Host`. Bodies must be
  `application/json`, at most `max_request_bytes`, arrive within `BODY_READ_TIMEOUT_S` (408), hold
  only finite numbers of at most `JSON_NUMBER_MAX_CHARS` characters and valid Unicode; anything else
  is a 400 naming the problem, and nothing is changed.
- Login, setup and password change go through `LoginThrottle`: the attempt is counted after the body
  arrived and before the secret is checked (429 + Retry-After while the source is locked out; a
  global slow-down spaces checks). A browser that signed in before carries a signed `x0_device`
  cookie and is throttled on its own, so guessers elsewhere cannot lock the admin out. The state is
  saved in `<data_dir>/web/login-throttle.json` (best effort: a full disk never stops a login).
- Sessions end when the stored password changes, also when it was changed on the console.
- Configuration writes: keys in `WEB_READ_ONLY` (trust, kernel, the data directory, web.enabled) are
  refused with 403; the provider validates the rest like the config file; secrets are never returned
  (`SECRET_KEYS`, shown as `SECRET_PLACEHOLDER`).
- A write that fails for storage reasons answers 507 (full) or 503 and changes nothing.
- Cookies are HttpOnly and SameSite=Strict (Secure when served over TLS); sessions expire.
- Every response carries a strict Content-Security-Policy (no inline script or style), nosniff,
  no-referrer and frame-ancestors 'none', also errors and unexpected failures (a 500 is JSON with the
  same headers); API responses are not cached; no `Server` header names software or versions.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import pathlib
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from x0node import __version__
from x0node.io.atomicfile import storage_full, write_atomic
from x0node.io.peer import source_key
from x0node.web import firmware, openapi, settings
from x0node.web.config import WebConfig
from x0node.web.credentials import Credentials, PasswordPolicyError, check_policy
from x0node.web.host_stats import HostStats
from x0node.web.metrics import HttpMetrics, NodeStateCollector
from x0node.web.provider import EVENTS_LIMIT_MAX, ConfigError, NodeStateProvider
from x0node.web.sessions import Session, SessionStore
from x0node.web.throttle import Decision, LoginThrottle

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "x0_session"
PRE_CSRF_COOKIE = "x0_csrf"
DEVICE_COOKIE = "x0_device"
DEVICE_COOKIE_MAX_AGE_S = 365 * 86400
DEVICE_ID_BYTES = 16
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
JSON_NUMBER_MAX_CHARS = 32
# Long enough for a phone on a poor link to send a small JSON body, short enough that a client
# trickling bytes cannot hold a request (and a counted login attempt) open.
BODY_READ_TIMEOUT_S = 10.0
# Sent instead of aiohttp's "Python/x.y aiohttp/x.y.z" on the few answers aiohttp writes itself
# (malformed HTTP); our own answers carry no Server header at all.
SERVER_NAME = "x0node"
# Keys the web API never writes: the trust material and kernel settings can keep the node from
# starting (a wrong anchor path, a table or rule priority the kernel refuses), the data directory
# holds everything else, and turning the UI off from the UI would lock its user out. They are
# changed in the config file, on the console. A section name alone means every key of it.
WEB_READ_ONLY = frozenset({"trust", "kernel", "node.data_dir", "web.enabled",
                           "web.tls_cert", "web.tls_key",  # a missing certificate file stops the UI
                           "web.http_port"})  # a port in use there stops the UI too
# Keys whose values are secrets (a tunnel's pre-shared key): replaced in every answer.
SECRET_KEYS = frozenset({"password", "psk", "secret", "private_key"})
SECRET_PLACEHOLDER = "(secret, not shown)"  # shown instead of a secret; not one # nosec B105
PAGES = ("/", "/neighbours", "/routes", "/topology", "/events", "/incidents", "/settings", "/firmware")
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
        self.throttle_unsaved = False
        self.sessions.follow(self.credentials.stamp())
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
        write_atomic(self.throttle_path, json.dumps(self.throttle.to_dict()).encode())

    def keep_throttle(self) -> None:
        """Persist the throttle, best effort: the counts hold in memory whatever happens, and a full
        disk must not stop anyone from signing in (logged once per outage)."""
        try:
            self.save_throttle()
        except OSError as exc:
            if not self.throttle_unsaved:
                log.error("cannot save %s (%s): login throttling continues in memory only",
                          self.throttle_path, exc.strerror)
            self.throttle_unsaved = True
        else:
            self.throttle_unsaved = False


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


class _NumberError(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text) > JSON_NUMBER_MAX_CHARS:
        raise _NumberError(f"a number longer than {JSON_NUMBER_MAX_CHARS} characters")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > JSON_NUMBER_MAX_CHARS:
        raise _NumberError(f"a number longer than {JSON_NUMBER_MAX_CHARS} characters")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise _NumberError(f"{text} is out of range")
    return value


def _json_constant(name: str) -> Any:
    raise _NumberError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, finite numbers of bounded length, no NaN/Infinity, no lone surrogates."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates ("\\ud800") fail here
    except UnicodeError:
        raise BadRequest(400, "request body is not valid UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NumberError as exc:
        raise BadRequest(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest(415, "request body must be application/json")
    try:
        raw = await asyncio.wait_for(request.read(), BODY_READ_TIMEOUT_S)
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, f"request body larger than {request.app[K_STATE].config.max_request_bytes} bytes") from None
    except TimeoutError:
        raise BadRequest(408, f"request body not received within {BODY_READ_TIMEOUT_S:g} s") from None
    data = parse_json(raw)
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
    return source_key(request.remote)


def storage_error(exc: OSError, what: str) -> web.Response:
    """507 when the file system is full (RFC 4918 section 11.5), 503 for other storage faults."""
    if storage_full(exc):
        return json_error(507, f"{what} was not saved: the data partition is full; free space and retry")
    return json_error(503, f"{what} was not saved: storage error ({exc.strerror or exc})")


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


_PORT = re.compile(r":[0-9]{1,5}")
_DNS_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?")
_ZONE = re.compile(r"[a-z0-9_.-]{1,15}")


def _port_ok(rest: str) -> bool:
    return rest == "" or (_PORT.fullmatch(rest) is not None and int(rest[1:]) <= 65535)


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Is the Host header (RFC 9110 section 7.2: uri-host [":" port]) an IP literal or an allowed name?
    Parsed strictly: anything after the host but a `:port` of digits refuses it. A missing Host is
    allowed (only HTTP/1.0 clients omit it, and a browser never does)."""
    if host_header is None:
        return True
    host = host_header.lower()
    if host.startswith("["):  # IP-literal: "[" IPv6address [ "%25" zone ] "]" (RFC 3986, RFC 6874)
        end = host.find("]")
        if end < 0 or not _port_ok(host[end + 1:]):
            return False
        literal, pct, zone = host[1:end].partition("%")
        if pct and _ZONE.fullmatch(zone.removeprefix("25")) is None:
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    name, colon, port = host.rpartition(":")
    if not colon:
        name = host
    elif not _port_ok(colon + port):
        return False
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        pass
    if len(name) > 254 or _DNS_NAME.fullmatch(name) is None:
        return False
    return "*" in allowed or name.removesuffix(".") in allowed


def allowed_host_names(config: WebConfig) -> frozenset[str]:

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
        if exc.status == 408:
            resp.force_close()  # the rest of the body may still come: do not read it as a request
    except Exception:  # noqa: BLE001 - an unexpected failure is still an answer with our headers
        log.exception("web request %s %s failed", request.method, request.path)
        resp = json_error(500, "internal error (logged on the device)")
    return _with_security_headers(resp, request)


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.pop("Server", None)


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
    if st.sessions.follow(st.credentials.stamp()):
        log.warning("web UI password changed outside this service: every session ended")
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
        return json_response({"password_set": True, "authenticated": True, "csrf_token": session.csrf})  # a JSON key name, not a password # nosec B105
    token = request.cookies.get(PRE_CSRF_COOKIE)
    if not token or len(token) > 128:
        token = secrets.token_urlsafe(32)
    resp = json_response({"password_set": st.credentials.password_set(), "authenticated": False,
                          "csrf_token": token})
    set_cookie(request, resp, PRE_CSRF_COOKIE, token, None)
    return resp


def _too_many(wait_s: float) -> web.Response:
    secs = int(wait_s) + 1
    return json_response({"error": f"too many failed attempts; try again in {secs} s", "retry_after_s": secs},
                         status=429, headers={"Retry-After": str(secs)})


def _device_mac(key: bytes, device_id: str) -> str:
    return hmac.new(key, device_id.encode(), hashlib.sha256).hexdigest()[:32]


def _known_device(st: WebState, request: web.Request) -> str | None:
    """The id in a valid `x0_device` cookie (signed with a key derived from the stored password)."""
    raw = request.cookies.get(DEVICE_COOKIE, "")
    device_id, _, mac = raw.partition(".")
    key = st.credentials.device_key()
    if key is None or len(device_id) != 2 * DEVICE_ID_BYTES or len(mac) != 32:
        return None
    return device_id if hmac.compare_digest(_device_mac(key, device_id), mac) else None


def _throttle_key(st: WebState, request: web.Request) -> str:
    device = _known_device(st, request)
    return f"device:{device}" if device is not None else client_key(request)


async def _guarded(st: WebState, request: web.Request,
                   check: Callable[[], Awaitable[bool]]) -> web.Response | Decision | None:
    """Count the attempt, wait for its slot, run `check` (the secret comparison). Returns the 429
    answer, the decision when the secret was right, or None when it was wrong (it stays counted)."""
    key = _throttle_key(st, request)
    decision = st.throttle.begin(key, time.time())
    if decision.retry_after_s > 0:
        return _too_many(decision.retry_after_s)
    st.keep_throttle()
    wait = decision.check_at - time.time()
    try:
        if wait > 0:
            await asyncio.sleep(wait)
        ok = await check()
    finally:
        st.throttle.checked(key)
    if not ok:
        log.warning("web sign-in failure from %s", client_key(request))
        return None
    st.throttle.success(key, decision)
    st.keep_throttle()
    return decision


def _start_session(st: WebState, request: web.Request, status: int = 200) -> web.Response:
    session = st.sessions.create(time.monotonic())
    resp = json_response({"authenticated": True, "csrf_token": session.csrf}, status=status)
    set_cookie(request, resp, SESSION_COOKIE, session.token, int(st.config.session_max_s))
    resp.del_cookie(PRE_CSRF_COOKIE, path="/")
    _mark_device(st, request, resp)
    return resp


def _mark_device(st: WebState, request: web.Request, resp: web.StreamResponse) -> None:
    key = st.credentials.device_key()
    if key is None:
        return
    device_id = _known_device(st, request) or secrets.token_hex(DEVICE_ID_BYTES)
    set_cookie(request, resp, DEVICE_COOKIE, f"{device_id}.{_device_mac(key, device_id)}", DEVICE_COOKIE_MAX_AGE_S)


async def _verify(st: WebState, password: str) -> bool:
    async with st.hash_lock:
        return await asyncio.get_running_loop().run_in_executor(None, st.credentials.verify, password)


async def _store_password(st: WebState, password: str) -> None:
    async with st.hash_lock:
        await asyncio.get_running_loop().run_in_executor(None, st.credentials.set_password, password)


async def auth_login(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    body = await read_json_object(request)
    password = require_str(body, "password")
    if not st.credentials.password_set():
        return json_error(409, "no password set yet: use the setup page")
    result = await _guarded(st, request, lambda: _verify(st, password))
    if result is None:
        return json_error(401, "wrong password")
    if isinstance(result, web.Response):
        return result
    log.info("web login from %s", client_key(request))
    return _start_session(st, request)


async def auth_setup(request: web.Request) -> web.StreamResponse:
    st: WebState = request.app[K_STATE]
    if st.credentials.password_set():
        return json_error(409, "a password is already set: log in instead")
    body = await read_json_object(request)
    code = require_str(body, "setup_code", 64)
    password = require_str(body, "password")
    try:
        check_policy(password)
    except PasswordPolicyError as exc:
        return json_error(400, str(exc), key="password")

    async def code_ok() -> bool:
        return st.credentials.check_setup_code(code)

    result = await _guarded(st, request, code_ok)
    if result is None:
        return json_error(403, "wrong setup code (see the console or <data_dir>/web/setup-code)")
    if isinstance(result, web.Response):
        return result
    if st.credentials.password_set():
        return json_error(409, "a password is already set: log in instead")
    try:
        await _store_password(st, password)
    except OSError as exc:
        return storage_error(exc, "the password")
    st.sessions.follow(st.credentials.stamp())
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
    body = await read_json_object(request)
    current = require_str(body, "current_password")
    new = require_str(body, "new_password")
    try:
        check_policy(new)
    except PasswordPolicyError as exc:
        return json_error(400, str(exc), key="new_password")
    result = await _guarded(st, request, lambda: _verify(st, current))
    if result is None:
        return json_error(403, "current password is wrong", key="current_password")
    if isinstance(result, web.Response):
        return result
    try:
        await _store_password(st, new)
    except OSError as exc:
        return storage_error(exc, "the new password")
    session = session_of(request)
    st.sessions.follow(st.credentials.stamp(), keep=session.token if session else None)
    log.warning("web UI password changed from %s; other sessions ended", client_key(request))
    resp = json_response({"changed": True})
    _mark_device(st, request, resp)  # the device key follows the password: sign this browser again
    return resp


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


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
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
    since = int_param(request, "since", 0, 0, 2**53)
    limit = int_param(request, "limit", 100, 1, EVENTS_LIMIT_MAX)
    return json_response(request.app[K_STATE].provider.events(since, limit))


def hide_secrets(value: Any) -> Any:
    """A copy of a config view with every value under a `SECRET_KEYS` key replaced by the placeholder."""
    if isinstance(value, dict):
        return {k: SECRET_PLACEHOLDER if k in SECRET_KEYS and v not in (None, "") else hide_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


def _placeholder_path(value: Any, path: str) -> str | None:
    """The dotted path of a secret sent back as the placeholder, if any."""
    if isinstance(value, dict):
        for k, v in value.items():
            found = f"{path}.{k}" if k in SECRET_KEYS and v == SECRET_PLACEHOLDER else _placeholder_path(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := _placeholder_path(v, f"{path}[{i}]"):
                return found
    return None


def _check_writable(st: WebState, changes: dict[str, Any]) -> None:
    """Refuse what the web API must not store: read-only keys (403), placeholders for secrets and
    settings that would keep the UI from coming back at the next start (400)."""
    for section, values in changes.items():
        keys = values if isinstance(values, dict) else {}
        if section in WEB_READ_ONLY:
            key = f"{section}.{next(iter(keys))}" if keys else section
            raise BadRequest(403, "not changeable from the web UI (it can keep the node from starting); "
                                  "edit the config file on the device", key=key)
        for key in keys:
            if f"{section}.{key}" in WEB_READ_ONLY:
                raise BadRequest(403, "not changeable from the web UI; edit the config file on the device",
                                 key=f"{section}.{key}")
        if (found := _placeholder_path(values, str(section))) is not None:
            raise BadRequest(400, "a secret cannot be sent back as its placeholder; send the secret itself",
                             key=found)
    web_changes = changes.get("web")
    if isinstance(web_changes, dict):
        _check_listen(st, web_changes)


def _check_listen(st: WebState, web_changes: dict[str, Any]) -> None:
    """The UI must come back after a restart: a new `listen` must be an address of this device and a
    new `port` free (values of the wrong type are left to the config validation)."""
    listen, port = web_changes.get("listen", st.config.listen), web_changes.get("port", st.config.port)
    if not isinstance(listen, str) or not isinstance(port, int) or isinstance(port, bool):
        return
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(listen).version == 6 else socket.AF_INET
    except ValueError:
        return
    if listen != st.config.listen:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((listen, 0))
            except OSError as exc:
                raise BadRequest(400, f"cannot serve on {listen}: {exc.strerror} (not an address of "
                                      "this device?)", key="web.listen") from None
    if port != st.config.port and 0 < port <= 65535:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((listen, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise BadRequest(400, f"port {port} is in use by another program", key="web.port") from None
                raise BadRequest(400, f"cannot serve on port {port}: {exc.strerror}", key="web.port") from None


async def api_config_get(request: web.Request) -> web.StreamResponse:
    return json_response(hide_secrets(request.app[K_STATE].provider.config_get()))


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
    _check_writable(st, changes)
    try:
        new = st.provider.config_set(changes)
    except ConfigError as exc:
        return json_error(400, exc.message, key=exc.key)
    except OSError as exc:
        return storage_error(exc, "the change")
    except ValueError as exc:  # the daemon's own ConfigError has the same shape
        key, message = getattr(exc, "key", None), getattr(exc, "message", None)
        if not isinstance(key, str) or not isinstance(message, str):
            raise
        return json_error(400, message, key=key)
    log.info("config changed from web UI: %s", ", ".join(
        f"{s}.{k}" if isinstance(v, dict) else str(s) for s, vs in changes.items()
        for k, v in (vs.items() if isinstance(vs, dict) else [(s, vs)])))
    return json_response(hide_secrets(new))


async def api_config_schema(request: web.Request) -> web.StreamResponse:
    provider = request.app[K_STATE].provider
    ranges = getattr(provider, "config_ranges", None)
    return json_response(settings.describe(provider.config_get(), WEB_READ_ONLY, ranges() if ranges else None))


async def api_openapi(request: web.Request) -> web.StreamResponse:
    return json_response(openapi.document(__version__))


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `status`, `neighbours` every tick when changed; `routes`, `topology` every
    few ticks when changed; `events` as they arrive. Ends when the session ends or the app stops."""
    st: WebState = request.app[K_STATE]
    if len(st.streams) >= STREAMS_MAX:
        return json_error(503, "too many live streams open")
    session = session_of(request)
    since = int_param(request, "since", 0, 0, 2**53)
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
    app.on_response_prepare.append(_drop_server_header)
    # aiohttp names itself and its version on the answers it writes before any app code runs
    # (malformed HTTP); it reads this module global at that time.
    web_response.SERVER_SOFTWARE = SERVER_NAME
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
    r.add_get("/api/v1/config/schema", api_config_schema, name="config_schema")
    r.add_get("/api/v1/stream", api_stream, name="stream")
    r.add_get("/api/v1/openapi.json", api_openapi, name="openapi")
    r.add_get("/metrics", metrics, name="metrics")
    firmware.add_routes(r)
    app.on_shutdown.append(_on_shutdown)
    return app
