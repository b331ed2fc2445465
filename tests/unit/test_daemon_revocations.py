"""Revocation lists at start and at run time: a bad list is refused with the file named (start) or
logged and counted (run time), never silently ignored; a good newer one is applied at once."""

from __future__ import annotations

import logging
import os
import random

import pytest

from x0node.daemon import config as cfg
from x0node.daemon.node import StartupError, load_trust
from x0node.daemon.revocations import RevocationFile
from x0node.proto import keyfile
from x0node.proto.identity import Identity
from x0node.proto.router import Router
from x0node.proto.trust import TrustAnchor, TrustStore

ANCHOR = TrustAnchor.from_seed(b"\x31" * 32)
ROGUE = TrustAnchor.from_seed(b"\x32" * 32)
VICTIM = b"\x07" * 16


def _config(tmp_path, crl_path):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    keyfile.save_anchor_public(tmp_path / "anchor.pub", ANCHOR.public_key)
    conf = tmp_path / "x0node.toml"
    conf.write_text(f'[node]\ninterfaces = ["m0"]\n[trust]\nanchors = ["{tmp_path / "anchor.pub"}"]\n'
                    f'revocations = "{crl_path}"\n')
    return cfg.load(conf, data_dir=str(data))


def test_a_revocation_list_that_does_not_verify_stops_the_start_naming_the_file(tmp_path):
    crl = tmp_path / "revoked.crl"
    keyfile.save_revocations(crl, ROGUE.revoke([VICTIM], 5, 0))  # signed by someone else
    with pytest.raises(StartupError, match=str(crl)):
        load_trust(_config(tmp_path, crl))
    crl.write_text("x0node-crl v1\nzz\n")  # malformed
    with pytest.raises(StartupError, match=str(crl)):
        load_trust(_config(tmp_path, crl))
    keyfile.save_revocations(crl, ANCHOR.revoke([VICTIM], 5, 0))
    _, store = load_trust(_config(tmp_path, crl))
    assert store.is_revoked(VICTIM) and store.crl_serial == 5


def _router() -> Router:
    return Router(Identity.from_seed(b"\x09" * 32), TrustStore([ANCHOR.public_key]), None, random.Random(3))


def test_the_file_is_reloaded_when_it_changes_and_a_bad_one_is_logged_and_counted(tmp_path, caplog):
    router = _router()
    path = tmp_path / "revoked.crl"
    watcher = RevocationFile(path, lambda crl: router.apply_revocations(crl, 1.0), router.revocations_refused)
    assert watcher.poll() is False  # no file yet: nothing to do
    keyfile.save_revocations(path, ANCHOR.revoke([VICTIM], 1, 0))
    assert watcher.poll() is True and router.trust.is_revoked(VICTIM)
    assert watcher.poll() is False  # unchanged
    with caplog.at_level(logging.ERROR, logger="x0node.daemon.revocations"):
        keyfile.save_revocations(path, ROGUE.revoke([], 9, 0))  # does not verify: would un-revoke
        os.utime(path, ns=(1, 1))
        assert watcher.poll() is False
        path.write_text("garbage\n")
        assert watcher.poll() is False
        keyfile.save_revocations(path, ANCHOR.revoke([], 1, 0))  # not newer than the one in force
        assert watcher.poll() is False
    assert router.trust.is_revoked(VICTIM)  # the list in force stays
    assert watcher.refused == {"bad_signature": 1, "malformed": 1, "not_newer": 1}
    assert router.stats().counters["revocations_refused"] == 3
    assert [r.getMessage().startswith(str(path)) for r in caplog.records].count(True) == 3
    path.unlink()
    assert watcher.poll() is False and router.trust.is_revoked(VICTIM)  # removing the file revokes nothing back
    keyfile.save_revocations(path, ANCHOR.revoke([], 2, 0))
    assert watcher.poll() is True and not router.trust.is_revoked(VICTIM)
    assert router.stats().counters["revocations_applied"] == 2
