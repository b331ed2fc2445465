"""A small client for the node's web API through the forwarded port: first-time setup with the setup
code (read from the device), then authenticated GETs. Bounded: every request has a timeout."""

from __future__ import annotations

import secrets
import time

import requests

REQUEST_TIMEOUT_S = 10.0


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            requests.get(url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S)
            return
        except requests.RequestException as exc:
            last = exc
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s: {last}")


def setup_and_get(url: str, setup_code: str, path: str) -> tuple[int, object]:
    s = requests.Session()
    state = s.get(url + "api/v1/auth/state", timeout=REQUEST_TIMEOUT_S).json()
    password = "x0-test-" + secrets.token_hex(8)
    r = s.post(url + "api/v1/auth/setup", json={"setup_code": setup_code, "password": password},
               headers={"X-CSRF-Token": state["csrf_token"]}, timeout=REQUEST_TIMEOUT_S)
    r.raise_for_status()
    r = s.get(url + path.lstrip("/"), timeout=REQUEST_TIMEOUT_S)
    return r.status_code, r.json()
