from __future__ import annotations

import os
import sqlite3

from x0node.healing import store as st
from x0node.healing.incident import ActionDone, Decided, IncidentClosed, IncidentOpened
from x0node.healing.store import SqliteStore


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_records_incidents_actions_stats_and_ids_round_trip(tmp_path):
    clock = Clock(1000.0)
    s = SqliteStore(tmp_path / "k.sqlite", wall=clock)
    s.write([IncidentOpened(7, ("link_loss@link:a~b",), 1.0),
             Decided(7, "penalise_link", "link:a~b", "requested", "lossy", "active", 1.0),
             ActionDone(7, 31, "penalise_link", "link:a~b", False, True, "", 1.0),
             ActionDone(7, 32, "restart_daemon", "node:a", False, False, "no watchdog", 2.0)],
            {("link_lossy", "penalise_link"): (1, 1)}, next_request_id=40)
    clock.t = 1010.0
    s.write([IncidentClosed(7, "recovered", "link_lossy", "link:a~b", 0.8, "penalise_link", 1.5, 3.0)])
    inc = s.incidents()
    assert inc[0]["id"] == 7 and inc[0]["outcome"] == "recovered" and inc[0]["symptoms"] == ["link_loss@link:a~b"]
    assert inc[0]["closed_wall"] == 1010.0 and inc[0]["mttr_s"] == 1.5
    assert [e["type"] for e in s.timeline(7)] == ["IncidentOpened", "Decided", "ActionDone", "ActionDone",
                                                   "IncidentClosed"]
    assert s.load_stats() == [("link_lossy", "penalise_link", 1, 1)]
    assert s.next_ids() == (8, 40)
    clock.t = 1000.0 + 600.0
    past = {(p.action, p.ok, p.disruptive, round(p.ago_s)) for p in s.recent_actions(3600.0)}
    assert past == {("penalise_link", True, False, 600), ("restart_daemon", False, True, 600)}
    assert s.recent_actions(100.0) == []
    s.close()
    assert oct(os.stat(tmp_path / "k.sqlite").st_mode & 0o777) == "0o600"
    again = SqliteStore(tmp_path / "k.sqlite", wall=clock)
    assert again.next_ids() == (8, 40)
    again.close()


def test_an_unreadable_file_is_moved_aside_and_a_fresh_store_started(tmp_path):
    path = tmp_path / "k.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    s = SqliteStore(path)
    assert s.incidents() == [] and (tmp_path / "k.sqlite.corrupt").exists()
    s.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    SqliteStore(path).close()  # a schema from the future is moved aside too
    assert (tmp_path / "k.sqlite.corrupt").exists()


def test_rows_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(st, "MAX_EVENT_ROWS", 5)
    monkeypatch.setattr(st, "MAX_INCIDENT_ROWS", 2)
    s = SqliteStore(tmp_path / "k.sqlite")
    s.write([IncidentOpened(i, (), 0.0) for i in range(1, 11)])
    assert [r["id"] for r in s.incidents()] == [10, 9]
    assert sum(len(s.timeline(i)) for i in range(1, 11)) == 5
    s.close()
