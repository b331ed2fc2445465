"""The node directory: one bounded, signed mesh-scope record per node about itself.

Rules and invariants:
- Each node writes one LWW record in namespace DIRECTORY_NS whose key is its own node id (hex): name,
  roles (from its certificate), software version and a health summary (ok/degraded/down, a reason,
  neighbours up, uptime at the time of writing). The value is canonical JSON (`Entry.encode`) of at
  most VALUE_MAX_BYTES; every field is bounded (NAME_MAX, VERSION_MAX, REASON_MAX, NEIGHBOURS_MAX,
  UPTIME_MAX_S) and names/versions are restricted to printable ASCII without spaces.
- The record is mesh scope with TTL_S, rewritten at least every REFRESH_S (TTL_S is three refreshes),
  so a node that leaves the mesh ages out of every directory by itself.
- Receivers validate (`validator`, counted by the gossip core under the returned reason):
  "bad_directory_scope" (not mesh scope, or no TTL / a TTL above TTL_S), "bad_directory_origin" (the
  key is not the signing origin's id: a node speaks only for itself), "bad_directory" (the value does
  not decode into a valid Entry).
- `Publisher` decides when to write, purely from `now` and the current entry: the first time once the
  health is "ok" or START_GRACE_S after start (a starting node has no neighbours yet: its first entry
  is not a "degraded" one that is replaced seconds later), when name, roles or version changed, or REFRESH_S after the last write; a change of the
  health state is written once it has held for CHANGE_HOLD_S (a flapping adjacency does not flood the
  mesh). Neighbour count, reason and uptime alone never cause a write.
- `listing` is pure: the directory held in a store, as seen at wall time `wall_s`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from x0node.proto.protocol import NODE_ID_BYTES
from x0node.state import crdt
from x0node.state.record import VALUE_MAX_BYTES, Kind, Record, Scope, decode_payload
from x0node.state.store import Store

DIRECTORY_NS = "node"
REFRESH_S = 600
"""A node rewrites its entry at least this often (≈ 250 B per link per node per 10 min)."""
TTL_S = 3 * REFRESH_S
"""An entry not rewritten for this long expires on every node (a departed node ages out)."""
CHANGE_HOLD_S = 10.0
"""A new health state is published once it has held this long."""
START_GRACE_S = 15.0
"""The first entry waits at most this long after start for the node to find a neighbour."""
NAME_MAX = 63
VERSION_MAX = 32
REASON_MAX = 160
NEIGHBOURS_MAX = 4096
UPTIME_MAX_S = 2**32 - 1
ROLES = ("node", "gateway", "admin")
HEALTH = ("ok", "degraded", "down")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,31}$")
_FIELDS = {"name", "roles", "version", "health", "reason", "neighbours_up", "uptime_s"}


@dataclass(frozen=True)
class Entry:
    name: str
    roles: tuple[str, ...]
    version: str
    health: str
    reason: str = ""
    neighbours_up: int = 0
    uptime_s: int = 0

    def problem(self) -> str | None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            return "name"
        if not isinstance(self.version, str) or not VERSION_RE.match(self.version):
            return "version"
        if (not isinstance(self.roles, tuple) or len(self.roles) > len(ROLES) or list(self.roles) != sorted(set(self.roles))
                or any(r not in ROLES for r in self.roles)):
            return "roles"
        if self.health not in HEALTH:
            return "health"
        if (not isinstance(self.reason, str) or len(self.reason) > REASON_MAX
                or any(not " " <= c <= "~" for c in self.reason)):
            return "reason"
        for value, top in ((self.neighbours_up, NEIGHBOURS_MAX), (self.uptime_s, UPTIME_MAX_S)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                return "counts"
        return None

    def encode(self) -> bytes:
        problem = self.problem()
        if problem is not None:
            raise ValueError(f"directory entry: bad {problem}")
        out = json.dumps({"name": self.name, "roles": list(self.roles), "version": self.version,
                          "health": self.health, "reason": self.reason, "neighbours_up": self.neighbours_up,
                          "uptime_s": self.uptime_s}, sort_keys=True, separators=(",", ":")).encode()
        assert len(out) <= VALUE_MAX_BYTES  # every field is bounded well below it
        return out

    def same_identity(self, other: Entry) -> bool:
        return (self.name, self.roles, self.version) == (other.name, other.roles, other.version)


def make_entry(name: str, role: str | None, version: str, health: str, reason: str | None,
               neighbours_up: int, uptime_s: float) -> Entry:
    """An entry from raw local facts, squeezed into the bounds (a hostname with odd characters, a long
    reason, a huge count): what this node publishes about itself."""
    return Entry(name=clean_name(name), roles=(role,) if role in ROLES else (), version=clean_version(version),
                 health=health if health in HEALTH else "down",
                 reason="".join(c if " " <= c <= "~" else "?" for c in (reason or ""))[:REASON_MAX],
                 neighbours_up=min(max(int(neighbours_up), 0), NEIGHBOURS_MAX),
                 uptime_s=min(max(int(uptime_s), 0), UPTIME_MAX_S))


def clean_name(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]", "-", text or "").lstrip("._-")[:NAME_MAX]
    return out or "node"


def clean_version(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9.+_~-]", "-", text or "").lstrip(".+_~-")[:VERSION_MAX]
    return out or "unknown"


def decode(raw: bytes | None) -> Entry | None:
    if raw is None or len(raw) > VALUE_MAX_BYTES:
        return None
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or not isinstance(doc["roles"], list):
        return None
    e = Entry(doc["name"], tuple(doc["roles"]), doc["version"], doc["health"], doc["reason"],
              doc["neighbours_up"], doc["uptime_s"])
    try:
        return e if e.problem() is None else None
    except TypeError:  # unhashable roles (a list inside the list)
        return None


def validator(rec: Record) -> str | None:
    if rec.kind != Kind.LWW or rec.scope != Scope.MESH or not 0 < rec.ttl_s <= TTL_S:
        return "bad_directory_scope"
    if len(rec.origin) != NODE_ID_BYTES or rec.key != rec.origin.hex():
        return "bad_directory_origin"
    value = decode_payload(rec.kind, rec.payload)
    if value is not None and decode(value) is None:  # a delete (None) is allowed: a node leaving
        return "bad_directory"
    return None


class Publisher:
    """When this node's own entry must be written (sans-I/O: `now` is monotonic seconds)."""

    def __init__(self, start_s: float, refresh_s: float = REFRESH_S, hold_s: float = CHANGE_HOLD_S) -> None:
        self.start_s = start_s
        self.refresh_s = refresh_s
        self.hold_s = hold_s
        self.published: Entry | None = None
        self.published_s = 0.0
        self.health_since: float | None = None  # when the current, unpublished health state appeared

    def due(self, entry: Entry, now: float) -> bool:
        last = self.published
        if last is None:
            return entry.health == "ok" or now - self.start_s >= START_GRACE_S
        if not entry.same_identity(last) or now - self.published_s >= self.refresh_s:
            return True
        if entry.health == last.health:
            self.health_since = None
            return False
        if self.health_since is None:
            self.health_since = now
        return now - self.health_since >= self.hold_s

    def done(self, entry: Entry, now: float) -> None:
        self.published = entry
        self.published_s = now
        self.health_since = None


def listing(store: Store, wall_s: float | None) -> list[dict[str, Any]]:
    """Every valid entry held, by node id: the entry's fields plus `node_id`, `age_s` (since it was
    written, by the writer's clock), `expires_in_s`, and `uptime_s` advanced by the age."""
    out = []
    for st in store.origins.values():
        for rec in st.records.values():
            if rec.ns != DIRECTORY_NS or rec.key != rec.origin.hex():
                continue
            e = decode(decode_payload(rec.kind, rec.payload))
            if e is None:
                continue
            written = crdt.hlc_wall_s(rec.version)
            age = None if wall_s is None else max(0.0, wall_s - written)
            exp = rec.expires_wall_s()
            out.append({"node_id": rec.key, "name": e.name, "roles": list(e.roles), "version": e.version,
                        "health": e.health, "health_reason": e.reason or None, "neighbours_up": e.neighbours_up,
                        "uptime_s": e.uptime_s + int(age or 0), "age_s": None if age is None else round(age, 1),
                        "expires_in_s": None if exp is None or wall_s is None else round(max(0.0, exp - wall_s), 1)})
    return sorted(out, key=lambda d: d["node_id"])
