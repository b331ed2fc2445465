"""HTTPS for the web UI: the `[web]` TLS keys, the server TLS context, the listener that only redirects
plain HTTP to HTTPS, and the listening socket.

Keys (beside those of `WebConfig`; handled by `x0node.web.service`):
    tls_cert = "web/tls.crt"   # PEM certificate (chain); relative paths are under node.data_dir
    tls_key  = "web/tls.key"   # PEM private key, a regular file readable by its owner only
    http_port = 80             # plain HTTP listener that answers every request with a redirect to HTTPS
                               # (0 = none; only with TLS)

Rules:
- Both of tls_cert/tls_key or neither; a key file readable by group or others, a missing file or a
  pair that does not load refuses to start the service (nothing is ever served in plain text instead).
- TLS 1.2 or later (RFC 8996 retires 1.0 and 1.1), otherwise the ssl module's server defaults.
- The redirect listener reads no body and answers 308 (RFC 9110 section 15.4.9: method and body kept)
  to `https://<host>[:port]<path>?<query>`, for a Host the UI answers to (`host_allowed`), else 421. No
  HSTS: the per-device certificate is self-signed, and HSTS would forbid the user from accepting it
  after comparing its fingerprint (RFC 6797 section 12.1).
- `listen = "::"` means every IPv4 and IPv6 address (one dual-stack socket, IPV6_V6ONLY off); any other
  address listens on that address only.
"""

from __future__ import annotations

import ipaddress
import pathlib
import socket
import ssl
import stat
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from x0node.web.provider import ConfigError

TLS_KEYS = ("tls_cert", "tls_key", "http_port")
HTTPS_DEFAULT_PORT = 443
LISTEN_BACKLOG = 128


@dataclass(frozen=True)
class TlsConfig:
    cert: str = ""
    key: str = ""
    http_port: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], https_port: int) -> TlsConfig:
        out: dict[str, Any] = {}
        for key in ("tls_cert", "tls_key"):
            if key in data:
                v = data[key]
                if not isinstance(v, str) or not v or "\x00" in v or len(v) > 4096:
                    raise ConfigError(f"web.{key}", "expected a file path")
                out[key[4:]] = v
        if ("cert" in out) != ("key" in out):
            raise ConfigError("web.tls_key" if "cert" in out else "web.tls_cert", "give both tls_cert and tls_key")
        if "http_port" in data:
            v = data["http_port"]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
                raise ConfigError("web.http_port", "expected an integer between 0 and 65535")
            if v and "cert" not in out:
                raise ConfigError("web.http_port", "a redirect to HTTPS needs tls_cert and tls_key")
            if v and v == https_port:
                raise ConfigError("web.http_port", "must differ from web.port")
            out["http_port"] = v
        return cls(**out)

    def as_mapping(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        return {"tls_cert": self.cert, "tls_key": self.key, "http_port": self.http_port}


def _resolve(path: str, data_dir: pathlib.Path) -> pathlib.Path:
    p = pathlib.Path(path)
    return p if p.is_absolute() else data_dir / p


def server_context(cfg: TlsConfig, data_dir: pathlib.Path) -> ssl.SSLContext:
    """The TLS context for the UI; OSError/ValueError/ssl.SSLError name the file on a bad pair."""
    cert, key = _resolve(cfg.cert, data_dir), _resolve(cfg.key, data_dir)
    st = key.stat()
    if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{key}: the TLS key must be a regular file readable by its owner only (chmod 600)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def fingerprint(cfg: TlsConfig, data_dir: pathlib.Path) -> str:
    """SHA-256 of the (first) certificate, AA:BB:... as browsers show it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = _resolve(cfg.cert, data_dir).read_bytes()
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex(":").upper()


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket; "::" is dual-stack."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def redirect_app(https_port: int, allowed_hosts: frozenset[str]) -> web.Application:
    """An app that answers every request with a redirect to the same host and path over HTTPS."""
    from x0node.web.app import host_allowed

    async def redirect(request: web.Request) -> web.StreamResponse:
        host_header = request.headers.get("Host")
        if not host_header or not host_allowed(host_header, allowed_hosts):
            return web.Response(status=421, text="421 Misdirected Request\n")
        host = host_header.strip()
        if host.startswith("["):
            host = host[: host.index("]") + 1]
        elif host.count(":") == 1:
            host = host.rsplit(":", 1)[0]
        port = "" if https_port == HTTPS_DEFAULT_PORT else f":{https_port}"
        return web.Response(status=308, headers={"Location": f"https://{host}{port}{request.path_qs}",
                                                 "Cache-Control": "no-store"})

    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app
