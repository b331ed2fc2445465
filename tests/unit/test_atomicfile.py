"""Durable writes: the helper's own rules, and every config/state writer of the package goes through it
(complete data after short writes, file and directory fsync'd, the old file intact on a failure)."""

from __future__ import annotations

import errno
import os
import pathlib
import random
import re
import stat

import pytest

from x0node.io import atomicfile
from x0node.io.atomicfile import storage_full, write_atomic

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "x0node"


def _leftovers(directory: pathlib.Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_replaces_with_mode_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    write_atomic(target, b"new contents", mode=0o600)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


class FsyncSpy:
    """Records what was fsync'd (files and directories) and can fail the n-th file fsync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_with: int | None = None) -> None:
        self.files: list[int] = []
        self.dirs = 0
        self.fail_with = fail_with
        real = os.fsync

        def fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.dirs += 1
            else:
                if self.fail_with is not None:
                    raise OSError(self.fail_with, os.strerror(self.fail_with))
                self.files.append(fd)
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def short_writes(monkeypatch: pytest.MonkeyPatch, at_most: int = 7) -> None:
    """os.write may write less than asked (signals, some file systems): take at most `at_most` bytes."""
    real = os.write

    def write(fd: int, data: bytes) -> int:
        return real(fd, bytes(data[:at_most]))

    monkeypatch.setattr(os, "write", write)


def test_short_writes_are_continued_and_everything_is_synced(tmp_path, monkeypatch):
    spy = FsyncSpy(monkeypatch)
    short_writes(monkeypatch)
    data = random.Random(1).randbytes(1000)
    write_atomic(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data
    assert spy.files and spy.dirs == 1


def test_a_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"precious")
    FsyncSpy(monkeypatch, fail_with=errno.ENOSPC)
    with pytest.raises(OSError) as info:
        write_atomic(target, b"x" * 100)
    assert storage_full(info.value)
    assert target.read_bytes() == b"precious" and _leftovers(tmp_path) == []

    def no_progress(fd: int, data: bytes) -> int:
        return 0

    monkeypatch.setattr(os, "write", no_progress)
    with pytest.raises(OSError) as info:
        write_atomic(target, b"y")
    assert storage_full(info.value) and target.read_bytes() == b"precious"
    assert not storage_full(OSError(errno.EIO, "io")) and not storage_full(ValueError())


def test_never_follows_a_planted_symlink(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    monkeypatch.setattr(atomicfile.secrets, "token_hex", lambda n: "fixed")
    (tmp_path / f".f.{os.getpid()}-fixed.tmp").symlink_to(victim)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "f", b"data")
    assert victim.read_bytes() == b"keep"


# ---- every writer in the package ---------------------------------------------------------------------

def _credentials(d: pathlib.Path) -> pathlib.Path:
    import nacl.pwhash

    from x0node.web import credentials

    credentials.ARGON2_OPSLIMIT, credentials.ARGON2_MEMLIMIT = (nacl.pwhash.argon2id.OPSLIMIT_MIN,
                                                                 nacl.pwhash.argon2id.MEMLIMIT_MIN)
    credentials.Credentials(d / "web").set_password("a long enough password")
    return d / "web" / "password"


def _setup_code(d: pathlib.Path) -> pathlib.Path:
    from x0node.web import credentials

    credentials.Credentials(d / "web").ensure_setup_code()
    return d / "web" / "setup-code"


def _throttle(d: pathlib.Path) -> pathlib.Path:
    from prometheus_client import CollectorRegistry

    from x0node.web.app import WebState
    from x0node.web.config import WebConfig
    from x0node.web.memory_provider import MemoryProvider

    st = WebState(MemoryProvider(), WebConfig(), d, CollectorRegistry())
    st.throttle.begin("192.0.2.1", 100.0)
    st.save_throttle()
    return st.throttle_path


def _daemon_config(d: pathlib.Path) -> pathlib.Path:
    from x0node.daemon import config as cfg

    (d / "x0node.toml").write_text('[node]\ninterfaces = ["m1"]\n')
    conf = cfg.load(d / "x0node.toml", data_dir=str(d / "data"))
    return conf.with_changes({"node.log_level": "debug"}).save_local()


def _node_key(d: pathlib.Path) -> pathlib.Path:
    from x0node.proto.identity import Identity
    from x0node.proto.keyfile import save_node_key

    save_node_key(d / "node.key", Identity.generate(bytes(32)))
    return d / "node.key"


def _demo_config(d: pathlib.Path) -> pathlib.Path:
    from x0node.web.memory_provider import MemoryProvider

    MemoryProvider(persist_path=d / "cfg.json").config_set({"routing": {"hello_interval_s": 2}})
    return d / "cfg.json"


def _anomaly_state(d: pathlib.Path) -> pathlib.Path:
    import types

    import numpy as np

    from x0node.anomaly import service

    svc = service.AnomalyService.__new__(service.AnomalyService)
    svc._state_path = d / "observe.json"
    svc._saved_state, svc._saved_phase, svc._saved_at = None, None, float("-inf")
    observe = types.SimpleNamespace(phase=types.SimpleNamespace(value="observe"), to_dict=lambda: {"phase": "observe"})
    chain = types.SimpleNamespace(normal_rows=1, _normal=[np.zeros(len(service.FEATURES))])
    svc.engine = types.SimpleNamespace(observe=observe, chain=chain, drift=None)
    svc._persist(force=True)
    return d / "normal_rows.npy"


def _reboot_reasons(d: pathlib.Path) -> pathlib.Path:
    import asyncio

    from x0node.healing.actions import ActionKind, ActionRequest
    from x0node.healing.actuator import REBOOT_FILE, LocalActuator
    from x0node.healing.monitor import Element, ElementKind

    req = ActionRequest(1, ActionKind.REBOOT, Element(ElementKind.NODE, "aa"), (), False, 1, "test")
    result = asyncio.run(LocalActuator(d, [], reboot_command=["true"], wall=lambda: 1.0).perform(req))
    if not result.ok:  # the actuator answers instead of raising; the durability checks want the error
        raise OSError(result.detail)
    return d / REBOOT_FILE


WRITERS = [_credentials, _setup_code, _throttle, _daemon_config, _node_key, _demo_config, _anomaly_state,
           _reboot_reasons]


@pytest.mark.parametrize("writer", WRITERS, ids=lambda f: f.__name__.lstrip("_"))
def test_every_state_writer_is_durable(writer, tmp_path, monkeypatch):
    (tmp_path / "reference").mkdir()
    (tmp_path / "checked").mkdir()
    expected = writer(tmp_path / "reference").read_bytes()
    spy = FsyncSpy(monkeypatch)
    short_writes(monkeypatch, at_most=3)
    written = writer(tmp_path / "checked")
    data = written.read_bytes()
    assert len(data) == len(expected) and data, "short writes must be continued"
    assert spy.files and spy.dirs >= 1, "file and directory must be fsync'd"
    assert _leftovers(written.parent) == []


def test_every_writer_failure_keeps_the_old_file(tmp_path, monkeypatch):
    for writer in WRITERS:
        if writer is _setup_code:
            continue  # written once, never replaced
        d = tmp_path / writer.__name__
        d.mkdir()
        path = writer(d)
        before = path.read_bytes()
        with monkeypatch.context() as m:
            FsyncSpy(m, fail_with=errno.ENOSPC)
            with pytest.raises(OSError):
                writer(d)
        assert path.read_bytes() == before, writer.__name__
        assert _leftovers(path.parent) == [], writer.__name__


# Writes that are not configuration or state: sysctl values under /proc, files a command writes where
# its user asked (graph exports), and an unreadable sqlite file moved aside (sqlite journals its own
# writes; the knowledge store is a database, not a file we replace).
# A staged update bundle is written in place chunk by chunk, each chunk fsynced before the bitmap
# (itself written with write_atomic) claims it: docs/ota.md.
NOT_STATE = {"io/sysctl.py", "telemetry/explainer.py", "healing/store.py", "ota/staging.py"}
WRITE_CALL = re.compile(r"os\.replace\(|\.write_text\(|\.write_bytes\(|open\([^)]*[\"']wb?[\"']|os\.O_CREAT")


def test_no_writer_bypasses_the_helper():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "io/atomicfile.py" or rel in NOT_STATE:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if WRITE_CALL.search(line) and "/dev/net/tun" not in line:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []
