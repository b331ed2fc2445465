"""Federated head updates (x0node/anomaly/federated.py) as signed mesh-wide state records.

Rules and invariants:
- Each round of federated fine-tuning, a node that trained the head publishes its update as one LWW
  record, namespace FED_NS, key FED_KEY, mesh scope (every node averages every node's update), signed
  by the node like every record; a later round replaces its earlier record (the store keeps one per
  origin). TTL_S bounds how long an update of a node that went silent is kept.
- The value is exactly VALUE_BYTES: round (u32), rows (u32), then N_PARAMS little-endian float32.
  The validator refuses (counted as "bad_fedhead") a record that is not mesh-scoped, not under
  FED_KEY, of another size, or with a round outside 1..MAX_ROUND_NUMBER (the shared schedule's round
  number, federated.round_at), no rows or more than
  MAX_RECORD_ROWS, or a non-finite or absurd (|p| > MAX_ABS_PARAM) parameter.
- `decode_update` and `peer_updates` are pure. A record's version is its signed sequence number and is
  never accepted twice from one origin: `peer_updates` hands over only records newer than the version
  already handed over, with that version, and the federation core (`Federation.offer`) refuses a
  version at or below the last it took from that origin (a newer one for the same round replaces the
  update it holds).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from x0node.anomaly.federated import MAX_ABS_PARAM, MAX_ROUND_NUMBER, N_PARAMS, Update, valid_params
from x0node.state.record import Kind, Record, Scope, decode_payload
from x0node.state.store import Store

FED_NS = "fed"
FED_KEY = "head"
TTL_S = 24 * 3600
MAX_RECORD_ROWS = 1 << 20
_HEAD = struct.Struct("<II")
_PARAMS = struct.Struct(f"<{N_PARAMS}f")
VALUE_BYTES = _HEAD.size + _PARAMS.size


def _problem(u: Update) -> str | None:
    if not 1 <= u.round <= MAX_ROUND_NUMBER or not 1 <= u.rows <= MAX_RECORD_ROWS:
        return "round or rows out of range"
    if not valid_params(u.params):
        return f"expected {N_PARAMS} finite parameters within +-{MAX_ABS_PARAM}"
    return None


def encode_update(u: Update) -> bytes:
    problem = _problem(u)
    if problem is not None:
        raise ValueError(problem)
    return _HEAD.pack(u.round, u.rows) + _PARAMS.pack(*u.params)


def decode_update(value: bytes | None) -> Update | None:
    if value is None or len(value) != VALUE_BYTES:
        return None
    round_, rows = _HEAD.unpack_from(value)
    u = Update(round_, _PARAMS.unpack_from(value, _HEAD.size), rows)
    return None if _problem(u) is not None else u


def validator(rec: Record) -> str | None:
    if rec.kind != Kind.LWW or rec.scope != Scope.MESH or rec.key != FED_KEY:
        return "bad_fedhead"
    if decode_update(decode_payload(rec.kind, rec.payload)) is None:
        return "bad_fedhead"
    return None


def peer_updates(store: Store, newer_than: Mapping[bytes, int] | None = None,
                 me: bytes | None = None) -> dict[bytes, tuple[int, Update]]:
    """origin -> (version, update) of every held head record newer than `newer_than[origin]` (all when
    None), this node's own (`me`) left out. Only validated records reach the store."""
    seen = newer_than or {}
    out = {}
    for origin, st in store.origins.items():
        rec = st.records.get((FED_NS, FED_KEY))
        if rec is None or origin == me or rec.version <= seen.get(origin, 0):
            continue
        u = decode_update(decode_payload(rec.kind, rec.payload))
        if u is not None:
            out[origin] = (rec.version, u)
    return out
