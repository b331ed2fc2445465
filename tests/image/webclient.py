"""A small client for the node's web API through the forwarded port, over HTTPS: the server's
certificate is checked against the fingerprint the device printed on its console (the device's own
self-signed certificate, so there is no CA to verify against), then first-time setup with the setup
code (read from the device) and authenticated GETs. Bounded: every request has a timeout."""

from __future__ import annotations

import hashlib
import re
import secrets
import ssl
import time
import urllib.parse
import warnings

import requests
import urllib3

REQUEST_TIMEOUT_S = 10.0
# first-time setup hashes the new password with a memory-hard KDF: tens of seconds of emulated CPU on a
# loaded host, where a plain request takes one
SETUP_TIMEOUT_S = 60.0


def server_fingerprint(url: str) -> str:
    """SHA-256 of the certificate the server at url presents, AA:BB:..."""
    u = urllib.parse.urlsplit(url)
    pem = ssl.get_server_certificate((u.hostname, u.port or 443), timeout=REQUEST_TIMEOUT_S)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()


def pinned_session(url: str, fingerprint: str) -> requests.Session:
    """A session for url after its certificate matched the console's fingerprint (verification by pin)."""
    got = server_fingerprint(url)
    if got != fingerprint.replace(":", "").upper():
        raise AssertionError(f"{url} presents certificate {got}, the console printed {fingerprint}")
    s = requests.Session()
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify=False
    s.verify = False
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    return s


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            requests.get(url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S, verify=False)  # only: is it up?
            return
        except requests.RequestException as exc:
            last = exc
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s: {last}")


def set_up(url: str, fingerprint: str, setup_code: str) -> requests.Session:
    """A signed-in session after first-time setup (a new password) with the device's setup code."""
    s = pinned_session(url, fingerprint)
    state = s.get(url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S).json()
    password = "x0-test-" + secrets.token_hex(8)
    r = s.post(url + "api/v1/auth/setup", json={"setup_code": setup_code, "password": password},
               headers={"X-CSRF-Token": state["csrf_token"]}, timeout=SETUP_TIMEOUT_S)
    r.raise_for_status()
    return s


def setup_code(vm) -> str:  # type: ignore[no-untyped-def]
    """The setup code as the device stored it: its own line of the console output (the daemon's lines
    may be interleaved with it), read again if a loaded console garbled it."""
    for _ in range(3):
        rc, out = vm.shell("cat /data/x0node/web/setup-code")
        match = re.search(r"^([A-Z0-9]{4}(?:-[A-Z0-9]{4}){2,})\r?$", out, re.M)
        if rc == 0 and match:
            return match.group(1)
    raise AssertionError(f"no setup code readable on the console: {out!r}")
