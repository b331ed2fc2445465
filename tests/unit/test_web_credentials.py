from __future__ import annotations

import logging
import os
import stat

import pytest

from tests.unit.test_web_support import fast_argon2  # noqa: F401
from x0node.web.credentials import SETUP_CODE_ALPHABET, Credentials, PasswordPolicyError


def test_setup_code_created_once_logged_and_consumed(tmp_path, caplog):
    c = Credentials(tmp_path / "web")
    with caplog.at_level(logging.WARNING):
        code = c.ensure_setup_code()
    assert code is not None and code in caplog.text
    assert len(code) == 14 and all(ch in SETUP_CODE_ALPHABET + "-" for ch in code)
    assert c.ensure_setup_code() == code  # stable across restarts until used
    assert stat.S_IMODE(os.stat(c.setup_code_path).st_mode) == 0o600
    assert c.check_setup_code(code.lower().replace("-", " "))
    assert not c.check_setup_code("AAAA-AAAA-AAAA") and not c.check_setup_code("x" * 100)
    c.set_password("a good long password")
    assert not c.setup_code_path.exists() and not c.check_setup_code(code)
    assert c.ensure_setup_code() is None


def test_password_hash_and_verify(tmp_path):
    c = Credentials(tmp_path)
    assert not c.verify("anything at all")
    with pytest.raises(PasswordPolicyError):
        c.set_password("short")
    with pytest.raises(PasswordPolicyError):
        c.set_password("x" * 257)
    c.set_password("a good long password")
    assert c.password_path.read_bytes().startswith(b"$argon2id$")
    assert c.verify("a good long password")
    assert not c.verify("a good long passworD") and not c.verify("") and not c.verify("x" * 10000)
    c.password_path.write_bytes(b"garbage")
    assert not c.verify("a good long password")
