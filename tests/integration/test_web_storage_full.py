"""A full data partition (a small tmpfs filled by the test): sign-in still works, writes answer 507 and
change nothing, no file is corrupted or left half written, and everything works again once space is
freed. Runs the web app over the daemon's own provider and config persistence."""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.test_daemon_provider import NodeUnderTest
from tests.unit.test_web_support import PASSWORD, csrf, do_login, do_setup, fast_argon2  # noqa: F401
from x0node.daemon import config as cfg
from x0node.daemon.provider import DaemonStateProvider
from x0node.web.app import K_STATE, create_app
from x0node.web.config import WebConfig

TMPFS_SIZE = "1m"


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "data"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: pathlib.Path) -> pathlib.Path:
    """Take every free byte (tmpfs reserves none for root); returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) == 0:
                        break
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def temporaries(root: pathlib.Path) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


async def _patch(c, token, changes):
    r = await c.patch("/api/v1/config", json=changes, headers={"X-CSRF-Token": token})
    return r.status, await r.json()


async def test_full_data_partition(aiohttp_client, small_fs, tmp_path):
    conf_path = tmp_path / "x0node.toml"
    conf_path.write_text('[node]\ninterfaces = ["m1"]\n[routing]\nhello_interval_s = 0.5\n')
    node = NodeUnderTest(cfg.load(conf_path, data_dir=str(small_fs)))
    app = create_app(DaemonStateProvider(node), WebConfig(), small_fs, CollectorRegistry())
    c = await aiohttp_client(app)
    token = await do_setup(c, small_fs)
    status, _ = await _patch(c, token, {"routing": {"hello_interval_s": 0.4}})
    assert status == 200
    local = small_fs / cfg.LOCAL_CONFIG_NAME
    password_file = small_fs / "web" / "password"
    before = {p: p.read_bytes() for p in (local, password_file)}

    filler = fill(small_fs)
    with pytest.raises(OSError):
        (small_fs / "probe").write_bytes(b"x" * 8192)

    # configuration: 507, nothing changed in memory or on disk
    status, body = await _patch(c, token, {"routing": {"hello_interval_s": 0.3}})
    assert status == 507 and "full" in body["error"], body
    assert node.config.routing["hello_interval_s"] == 0.4
    # password change: 507, the old password still works
    r = await c.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "another long one"},
                     headers={"X-CSRF-Token": token})
    assert r.status == 507, await r.text()
    # sign-in: a wrong password is a 401 (its count kept in memory), the right one still signs in
    await c.post("/api/v1/auth/logout", json={}, headers={"X-CSRF-Token": token})
    c.session.cookie_jar.clear()
    r = await c.post("/api/v1/auth/login", json={"password": "not the password"},
                     headers={"X-CSRF-Token": await csrf(c)})
    assert r.status == 401
    token = await do_login(c)
    assert (await c.get("/api/v1/status")).status == 200
    assert {p: p.read_bytes() for p in before} == before
    assert temporaries(small_fs) == []

    # a first start on a full partition: the UI comes up and says why setup cannot finish yet
    fresh = small_fs / "fresh"
    filler.unlink()
    fresh.mkdir()
    filler = fill(small_fs)
    app2 = create_app(DaemonStateProvider(node), WebConfig(), fresh, CollectorRegistry())
    c2 = await aiohttp_client(app2)
    state = await (await c2.get("/api/v1/auth/state")).json()
    assert state["password_set"] is False
    code = app2[K_STATE].credentials.read_setup_code()
    assert code
    r = await c2.post("/api/v1/auth/setup", json={"setup_code": code, "password": PASSWORD},
                      headers={"X-CSRF-Token": state["csrf_token"]})
    assert r.status == 507
    assert not (fresh / "web" / "password").exists() and temporaries(small_fs) == []

    # space back: everything works again, with the same setup code
    filler.unlink()
    status, _ = await _patch(c, token, {"routing": {"hello_interval_s": 0.3}})
    assert status == 200 and node.config.routing["hello_interval_s"] == 0.3
    r = await c2.post("/api/v1/auth/setup", json={"setup_code": code, "password": PASSWORD},
                      headers={"X-CSRF-Token": state["csrf_token"]})
    assert r.status == 201
