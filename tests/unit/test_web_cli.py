from __future__ import annotations

import io
import sys

from tests.unit.test_web_support import fast_argon2  # noqa: F401
from x0node.cli import main
from x0node.web.credentials import Credentials


def test_setup_code_then_set_password(tmp_path, capsys, monkeypatch):
    assert main(["web", "setup-code", "--data-dir", str(tmp_path)]) == 0
    code = capsys.readouterr().out.strip()
    assert code == (tmp_path / "web" / "setup-code").read_text().strip()
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["web", "set-password", "--data-dir", str(tmp_path), "--password-stdin"]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    assert main(["web", "set-password", "--data-dir", str(tmp_path), "--password-stdin"]) == 0
    c = Credentials(tmp_path / "web")
    assert c.verify("long enough password") and not c.setup_code_path.exists()
    assert main(["web", "setup-code", "--data-dir", str(tmp_path)]) == 1
