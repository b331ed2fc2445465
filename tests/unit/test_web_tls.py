"""HTTPS for the web service (x0node.web.tls): config keys, TLS serving with the device certificate the
image makes (rootfs/usr/lib/x0tta6bl4/webcert.py), the HTTP listener that only redirects, key-file rules."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import types

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from tests.unit.rootfs_modules import load
from tests.unit.test_web_support import fast_argon2  # noqa: F401
from x0node.daemon.config import ConfigError
from x0node.daemon.services import validate_section
from x0node.web import service
from x0node.web.memory_provider import demo_provider


def _webcert():
    return load("webcert")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tls_keys_are_validated_and_fed_back():
    out = validate_section("web", {"port": 8443, "tls_cert": "web/tls.crt", "tls_key": "web/tls.key", "http_port": 8080})
    assert out["tls_cert"] == "web/tls.crt" and out["http_port"] == 8080
    assert service.create_service(out).tls.enabled
    assert "tls_cert" not in validate_section("web", {})
    for bad, key in (({"tls_cert": "a"}, "web.tls_key"), ({"tls_key": "a"}, "web.tls_cert"),
                     ({"http_port": 80}, "web.http_port"), ({"tls_cert": "", "tls_key": "k"}, "web.tls_cert"),
                     ({"tls_cert": "c", "tls_key": "k", "port": 443, "http_port": 443}, "web.http_port"),
                     ({"tls_cert": "c", "tls_key": "k", "http_port": True}, "web.http_port")):
        with pytest.raises(ConfigError) as exc:
            validate_section("web", bad)
        assert exc.value.key == key, bad


def test_certificate_is_made_once_with_a_private_key(tmp_path):
    wc = _webcert()
    cert, key = tmp_path / "web/tls.crt", tmp_path / "web/tls.key"
    fp, made = wc.ensure(cert, key)
    assert made and key.stat().st_mode & 0o777 == 0o600
    assert wc.ensure(cert, key) == (fp, False)  # kept as it is
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert fp.replace(":", "") == hashlib.sha256(der).hexdigest().upper() and len(fp.split(":")) == 32
    cert.unlink()
    with pytest.raises(RuntimeError, match="only one of"):
        wc.ensure(cert, key)  # never overwrite half a pair
    assert key.exists()


async def test_https_with_redirect_and_fingerprint(tmp_path):
    fp, _ = _webcert().ensure(tmp_path / "web/tls.crt", tmp_path / "web/tls.key")
    http_port = _free_port()
    section = validate_section("web", {"listen": "127.0.0.1", "port": 0, "tls_cert": "web/tls.crt",
                                       "tls_key": str(tmp_path / "web/tls.key"), "http_port": http_port})
    svc = service.create_service(section)
    ctx = types.SimpleNamespace(provider=demo_provider(), data_dir=tmp_path, registry=CollectorRegistry())
    await svc.start(ctx)
    try:
        assert svc.url.startswith("https://127.0.0.1:") and svc.status()["tls_sha256"] == fp
        port = int(svc.url.rsplit(":", 1)[1].strip("/"))
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        async with aiohttp.ClientSession() as s:
            async with s.get(svc.url + "api/v1/auth/state", ssl=client_ctx) as r:
                assert r.status == 200
            pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port))
            assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper() == fp.replace(":", "")
            async with s.get(f"http://127.0.0.1:{http_port}/settings?x=1", allow_redirects=False) as r:
                assert r.status == 308 and r.headers["Location"] == f"https://127.0.0.1:{port}/settings?x=1"
            async with s.post(f"http://127.0.0.1:{http_port}/api/v1/auth/login", allow_redirects=False,
                              headers={"Host": "evil.example"}) as r:
                assert r.status == 421 and "Location" not in r.headers
            # plain HTTP on the HTTPS port is not served
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{port}/api/v1/auth/state") as r:
                    await r.read()
    finally:
        await svc.stop()


async def test_a_key_readable_by_others_refuses_to_start(tmp_path):
    _webcert().ensure(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "tls.key").chmod(0o644)
    svc = service.create_service({"listen": "127.0.0.1", "port": 0, "tls_cert": "tls.crt", "tls_key": "tls.key"})
    ctx = types.SimpleNamespace(provider=demo_provider(), data_dir=tmp_path, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="chmod 600"):
        await svc.start(ctx)
    assert svc.runner is None


async def test_dual_stack_listen_answers_on_ipv4_and_ipv6(tmp_path):
    svc = service.create_service({"listen": "::", "port": 0})
    ctx = types.SimpleNamespace(provider=demo_provider(), data_dir=tmp_path, registry=CollectorRegistry())
    await svc.start(ctx)
    try:
        port = int(svc.url.rsplit(":", 1)[1].strip("/"))
        async with aiohttp.ClientSession() as s:
            for host in ("127.0.0.1", "[::1]"):
                async with s.get(f"http://{host}:{port}/api/v1/auth/state") as r:
                    assert r.status == 200, host
    finally:
        await svc.stop()


def test_a_provisioned_unit_gets_its_web_certificate_named_for_it(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from image import provision

    ident = provision.Identity("ab" * 16, "fd78:3074:6b14:abab:abab:abab:abab:abab", b"k", b"c")
    key_pem, cert_pem, fp = provision.web_pair(ident)
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "x0-abababababab" in names.get_values_for_type(x509.DNSName)
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == [ident.mesh_addr]
    # the boot-time check finds the pair and prints the same fingerprint the browser will show
    wc = _webcert()
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    assert wc.ensure(tmp_path / "tls.crt", tmp_path / "tls.key") == (fp, False)
    assert fp == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    for bad in (b"", b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ValueError):
            wc.fingerprint(bad)
