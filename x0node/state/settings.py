"""Mesh-wide settings: daemon config keys whose value is shared by every node (LWW in the state).

Rules:
- A setting lives in namespace `settings` under its dotted config key (`node.log_level`); its value is
  canonical JSON (sorted keys, no spaces). The validator refuses a record whose key is not
  `section.key` or whose value is not JSON ("bad_setting").
- Which keys are mesh-wide is local configuration (`[state] mesh_settings`); a record for another key is
  stored and gossiped (other nodes may share it) but not applied here.
- Conflicts resolve by the LWW stamp (HLC, then origin id): the same winner on every node.
- `to_apply` is pure: it compares the winners with the current config and returns what must change;
  `to_publish` returns what a local config change must write. A value applied from the state equals the
  winner, so applying it never writes again (no echo).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from x0node.state.record import Kind, Record, decode_payload
from x0node.state.store import Store

SETTINGS_NS = "settings"
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,63}$")
MAX_MESH_SETTINGS = 64


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def decode(raw: bytes) -> Any:
    return json.loads(raw.decode())


def validator(rec: Record) -> str | None:
    if rec.kind != Kind.LWW or not KEY_RE.match(rec.key):
        return "bad_setting"
    value = decode_payload(rec.kind, rec.payload)
    if value is None:
        return None
    try:
        decode(value)
    except (UnicodeDecodeError, ValueError):
        return "bad_setting"
    return None


def winner(store: Store, key: str) -> tuple[Any, Record] | None:
    rec = store.lww_winner(SETTINGS_NS, key)
    if rec is None:
        return None
    value = decode_payload(rec.kind, rec.payload)
    return None if value is None else (decode(value), rec)


def to_apply(store: Store, keys: Iterable[str], current: Callable[[str], Any]) -> dict[str, Any]:
    out = {}
    for key in keys:
        w = winner(store, key)
        if w is not None and w[0] != current(key):
            out[key] = w[0]
    return out


def to_publish(store: Store, keys: Iterable[str], current: Callable[[str], Any]) -> dict[str, Any]:
    out = {}
    for key in keys:
        value = current(key)
        w = winner(store, key)
        if w is None or w[0] != value:
            out[key] = value
    return out
