"""Arbitrary bodies and query strings never crash the app or change state: always a clear 4xx."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ui.web_server import ThreadedServer
from tests.unit.test_web_support import PASSWORD
from x0node.web import credentials
from x0node.web.memory_provider import demo_provider

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz")
    credentials.Credentials(data_dir / "web").set_password(PASSWORD)
    provider = demo_provider()
    with ThreadedServer(provider, data_dir) as srv:
        s = requests.Session()
        token = s.get(f"{srv.url}/api/v1/auth/state").json()["csrf_token"]
        csrf = s.post(f"{srv.url}/api/v1/auth/login", json={"password": PASSWORD},
                      headers={"X-CSRF-Token": token}).json()["csrf_token"]
        yield srv, s, csrf


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_config_patch_with_arbitrary_bodies(live, body):
    srv, s, csrf = live
    before = srv.provider.config_get()
    r = s.patch(f"{srv.url}/api/v1/config", data=body,
                headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    if r.status_code == 200:
        assert r.json() == srv.provider.config_get()
    else:
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
        assert srv.provider.config_get() == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.text(max_size=12), limit=st.text(max_size=12))
def test_events_query_strings(live, since, limit):
    srv, s, _ = live
    r = s.get(f"{srv.url}/api/v1/events", params={"since": since, "limit": limit})
    assert r.status_code in (200, 400), r.text
    assert isinstance(r.json(), list if r.status_code == 200 else dict)
