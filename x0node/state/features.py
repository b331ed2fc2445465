"""Neighbours' anomaly feature vectors as 1-hop state records (the detector's neighbour context).

Rules and invariants:
- Each tick the anomaly service publishes this node's raw feature vector (bus topic
  `anomaly.features`); the state service writes it as one 1-hop LWW record, namespace FEATURES_NS,
  key FEATURES_KEY, signed by this node like every record, pushed to the neighbours at once and never
  forwarded (gossip.py: 1-hop records are accepted only from their origin). Its TTL is a bounded
  multiple of the anomaly interval (`ttl_for`), so a silent neighbour's vector expires.
- The value is exactly N_VALUES little-endian float32 (VALUE_BYTES bytes). The validator refuses
  (counted as "bad_features") a record that is not 1-hop, not under FEATURES_KEY, of another size, or
  holds a non-finite, negative or absurd (> MAX_VALUE) number. The detector clips to its own pinned
  ranges on top of this.
- `decode_vector` and `neighbour_vectors` are pure: the service hands each received vector to the
  anomaly service's `update_peer(node_id_hex, values)`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

from x0node.state.record import HOP_TTL_MAX_S, Kind, Record, Scope, decode_payload
from x0node.state.store import Store

FEATURES_NS = "anomaly"
FEATURES_KEY = "features"
N_VALUES = 8
"""x0node/anomaly/features.py N_FEATURES (kept here as a wire constant: the record format)."""
VALUE_BYTES = 4 * N_VALUES
MAX_VALUE = 1e6
TTL_TICKS = 4
"""A vector expires after this many anomaly intervals without a newer one."""
_PACK = struct.Struct("<8f")


def encode_vector(values: Sequence[float]) -> bytes:
    if len(values) != N_VALUES:
        raise ValueError(f"expected {N_VALUES} values")
    clean = [float(v) if math.isfinite(float(v)) else 0.0 for v in values]
    return _PACK.pack(*(min(max(v, 0.0), MAX_VALUE) for v in clean))


def decode_vector(value: bytes | None) -> tuple[float, ...] | None:
    if value is None or len(value) != VALUE_BYTES:
        return None
    out = _PACK.unpack(value)
    if not all(math.isfinite(v) and 0.0 <= v <= MAX_VALUE for v in out):
        return None
    return out


def ttl_for(interval_s: float) -> int:
    return int(min(HOP_TTL_MAX_S, max(1.0, math.ceil(TTL_TICKS * interval_s))))


def validator(rec: Record) -> str | None:
    if rec.kind != Kind.LWW or rec.scope != Scope.HOP or rec.key != FEATURES_KEY:
        return "bad_features"
    value = decode_payload(rec.kind, rec.payload)
    if decode_vector(value) is None:
        return "bad_features"
    return None


def neighbour_vectors(store: Store, newer_than: Mapping[bytes, int] | None = None) -> dict[bytes, tuple[int, tuple[float, ...]]]:
    """origin -> (version, vector) of every 1-hop feature record held whose version is newer than
    `newer_than[origin]` (all when None). Only validated records reach the store."""
    seen = newer_than or {}
    out = {}
    for (origin, ns, key), (rec, _) in store.hop.items():
        if ns != FEATURES_NS or key != FEATURES_KEY or rec.version <= seen.get(origin, 0):
            continue
        vec = decode_vector(decode_payload(rec.kind, rec.payload))
        if vec is not None:
            out[origin] = (rec.version, vec)
    return out
