"""The knowledge store: incidents, decisions, actions and learned success counts in sqlite on /data.

Rules and invariants (adapter; the engine never sees sqlite):
- One file, `<data_dir>/healing/knowledge.sqlite`, journal_mode=WAL with synchronous=FULL: a
  committed batch survives power loss; a torn write is rolled back by sqlite itself. Each `write` is
  one transaction (one cycle's records), so a crash loses at most the cycle being written.
- Writes happen only when there are records (incidents are rare), so an idle node does not wear its
  flash. Rows are bounded: beyond MAX_EVENT_ROWS events and MAX_INCIDENT_ROWS incidents the oldest
  are deleted.
- A file sqlite cannot read is moved aside (`knowledge.sqlite.corrupt`) and a fresh one started; the
  failure is logged, learning restarts from the policy's table order.
- Small settings the loop keeps across restarts (the operator's mode switch) live in the `meta` table
  (`get_setting` / `set_setting`, each one committed transaction).
- Wall-clock times are stamped here (`time.time()`); `recent_actions` turns them back into "seconds
  ago" for the engine.
- Blocking: call it from a worker thread (the service uses asyncio.to_thread); a lock serialises use.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from x0node.healing.actions import PLUGINS, ActionKind
from x0node.healing.incident import ActionDone, IncidentClosed, IncidentOpened
from x0node.healing.knowledge import PastAction, record_dict, record_kind
from x0node.io.atomicfile import rename_durable

log = logging.getLogger("x0node.healing.store")

SCHEMA_VERSION = 1
MAX_EVENT_ROWS = 20_000
MAX_INCIDENT_ROWS = 2_000
MAX_BODY_CHARS = 8_000
FILE_NAME = "knowledge.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, opened_wall REAL NOT NULL, closed_wall REAL, outcome TEXT, root_cause TEXT,
    element TEXT, confidence REAL, action TEXT, mttr_s REAL, symptoms TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, wall REAL NOT NULL, incident_id INTEGER, type TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_incident ON events (incident_id);
CREATE TABLE IF NOT EXISTS actions (
    request_id INTEGER PRIMARY KEY, wall REAL NOT NULL, incident_id INTEGER, action TEXT NOT NULL,
    target TEXT NOT NULL, undo INTEGER NOT NULL, ok INTEGER NOT NULL, disruptive INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stats (
    fault TEXT NOT NULL, action TEXT NOT NULL, successes INTEGER NOT NULL, tries INTEGER NOT NULL,
    PRIMARY KEY (fault, action));
"""


class SqliteStore:
    def __init__(self, path: pathlib.Path, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            log.error("knowledge store %s unreadable (%s): moved aside, starting fresh", path, exc)
            rename_durable(path, path.with_name(path.name + ".corrupt"))
            for suffix in ("-wal", "-shm"):
                pathlib.Path(str(path) + suffix).unlink(missing_ok=True)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {row[0]}, expected {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        os.chmod(self.path, 0o600)
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- reads
    def load_stats(self) -> list[tuple[str, str, int, int]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT fault, action, successes, tries FROM stats")]

    def recent_actions(self, window_s: float) -> list[PastAction]:
        now = self._wall()
        with self._lock:
            rows = self._db.execute(
                "SELECT action, target, wall, ok FROM actions WHERE undo = 0 AND wall >= ? ORDER BY wall",
                (now - window_s,)).fetchall()
        out = []
        for action, target, wall, ok in rows:
            try:
                disruptive = PLUGINS[ActionKind(action)].disruptive
            except ValueError:
                continue
            out.append(PastAction(action, target, max(0.0, now - wall), bool(ok), disruptive))
        return out

    def next_ids(self) -> tuple[int, int]:
        with self._lock:
            inc = self._db.execute("SELECT coalesce(max(id), 0) FROM incidents").fetchone()[0]
            req = self._db.execute("SELECT value FROM meta WHERE key='next_request_id'").fetchone()
            act = self._db.execute("SELECT coalesce(max(request_id), 0) FROM actions").fetchone()[0]
        return int(inc) + 1, max(int(req[0]) if req else 1, int(act) + 1)

    def get_setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"setting.{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting.{key}", value))

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        with self._lock:
            cur = self._db.execute(
                "SELECT id, opened_wall, closed_wall, outcome, root_cause, element, confidence, action, mttr_s, "
                "symptoms FROM incidents WHERE id = ?", (incident_id,))
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip(names, row, strict=True))
        out["symptoms"] = json.loads(out["symptoms"])
        return out

    def incidents(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT id, opened_wall, closed_wall, outcome, root_cause, element, confidence, action, mttr_s, "
                "symptoms FROM incidents ORDER BY id DESC LIMIT ?", (max(1, min(limit, 1000)),))
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for r in rows:
            r["symptoms"] = json.loads(r["symptoms"])
        return rows

    def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT wall, body FROM events WHERE incident_id = ? ORDER BY seq",
                                    (incident_id,)).fetchall()
        return [{"wall": w, **json.loads(b)} for w, b in rows]

    # ---- writes
    def write(self, records: list[Any], stats: dict[tuple[str, str], tuple[int, int]] | None = None,
              next_request_id: int | None = None) -> None:
        if not records and stats is None and next_request_id is None:
            return
        wall = self._wall()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for rec in records:
                    self._write_one(db, rec, wall)
                if stats is not None:
                    db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?)",
                                   [(f, a, ok, n) for (f, a), (ok, n) in stats.items()])
                if next_request_id is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('next_request_id', ?)", (str(next_request_id),))
                self._trim(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _write_one(self, db: sqlite3.Connection, rec: Any, wall: float) -> None:
        body = json.dumps(record_dict(rec), default=str)[:MAX_BODY_CHARS]
        incident_id = getattr(rec, "incident_id", None)
        db.execute("INSERT INTO events (wall, incident_id, type, body) VALUES (?, ?, ?, ?)",
                   (wall, incident_id, record_kind(rec), body))
        if isinstance(rec, IncidentOpened):
            db.execute("INSERT OR IGNORE INTO incidents (id, opened_wall, symptoms) VALUES (?, ?, ?)",
                       (rec.incident_id, wall, json.dumps(list(rec.symptoms))))
        elif isinstance(rec, IncidentClosed):
            db.execute("UPDATE incidents SET closed_wall=?, outcome=?, root_cause=?, element=?, confidence=?, "
                       "action=?, mttr_s=? WHERE id=?",
                       (wall, rec.outcome, rec.root_cause, rec.element, rec.confidence, rec.action, rec.mttr_s,
                        rec.incident_id))
        elif isinstance(rec, ActionDone):
            try:
                disruptive = PLUGINS[ActionKind(rec.action)].disruptive
            except ValueError:
                disruptive = False
            db.execute("INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (rec.request_id, wall, rec.incident_id, rec.action, rec.target, int(rec.undo), int(rec.ok),
                        int(disruptive)))

    def _trim(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?", (MAX_EVENT_ROWS,))
        db.execute("DELETE FROM incidents WHERE id <= (SELECT max(id) FROM incidents) - ?", (MAX_INCIDENT_ROWS,))
        db.execute("DELETE FROM actions WHERE request_id <= (SELECT max(request_id) FROM actions) - ?",
                   (MAX_EVENT_ROWS,))
