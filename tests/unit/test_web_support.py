"""Shared fixtures for the web unit tests: a fresh app over a MemoryProvider, with fast argon2 limits."""

from __future__ import annotations

import pathlib
from typing import Any

import nacl.pwhash
import pytest
from prometheus_client import CollectorRegistry

from x0node.web import credentials
from x0node.web.app import create_app
from x0node.web.config import WebConfig
from x0node.web.memory_provider import MemoryProvider, demo_provider

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stored format and verification are unchanged; only the cost drops so the suite stays fast.
    monkeypatch.setattr(credentials, "ARGON2_OPSLIMIT", nacl.pwhash.argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(credentials, "ARGON2_MEMLIMIT", nacl.pwhash.argon2id.MEMLIMIT_MIN)


def make_app(tmp: pathlib.Path, provider: MemoryProvider | None = None, **cfg: Any):
    provider = provider or demo_provider(persist_path=tmp / "cfg.json")
    return create_app(provider, WebConfig(**cfg), tmp, CollectorRegistry())


async def csrf(client) -> str:
    r = await client.get("/api/v1/auth/state")
    return (await r.json())["csrf_token"]


async def do_setup(client, data_dir: pathlib.Path, password: str = PASSWORD) -> str:
    code = (data_dir / "web" / "setup-code").read_text().strip()
    r = await client.post("/api/v1/auth/setup", json={"setup_code": code, "password": password},
                          headers={"X-CSRF-Token": await csrf(client)})
    assert r.status == 201, await r.text()
    return (await r.json())["csrf_token"]


async def do_login(client, password: str = PASSWORD) -> str:
    r = await client.post("/api/v1/auth/login", json={"password": password},
                          headers={"X-CSRF-Token": await csrf(client)})
    assert r.status == 200, await r.text()
    return (await r.json())["csrf_token"]
