from __future__ import annotations

import json

from x0node.cli import main
from x0node.healing.incident import Decided, IncidentClosed, IncidentOpened
from x0node.healing.store import FILE_NAME, SqliteStore


def test_incidents_and_timeline_from_the_store(tmp_path, capsys):
    store = SqliteStore(tmp_path / "healing" / FILE_NAME)
    store.write([IncidentOpened(3, ("forwarding_loss@node:bb",), 1.0),
                 Decided(3, "steer_around_node", "node:bb", "observe_only", "would steer", "observe", 1.0),
                 IncidentClosed(3, "cleared", "node_blackhole", "node:bb", 0.7, "", 9.0, 10.0)])
    store.close()
    assert main(["healing", "incidents", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "node_blackhole" in out and "cleared" in out
    assert main(["healing", "incidents", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["root_cause"] == "node_blackhole"
    assert main(["healing", "incidents", "--data-dir", str(tmp_path), "--timeline", "3"]) == 0
    out = capsys.readouterr().out
    assert "observe_only" in out and "would steer" in out


def test_missing_store_and_bad_probe_arguments(tmp_path, capsys):
    assert main(["healing", "incidents", "--data-dir", str(tmp_path)]) == 1
    assert "no knowledge store" in capsys.readouterr().err
    assert main(["healing", "probe", "--source", "fd00::1", "--via", "eth0", "--to", "fd00::2"]) == 2
    assert main(["healing"]) == 2
