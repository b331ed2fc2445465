"""The eight node features the anomaly detectors see, their pinned ranges and normalisation.

Rules and invariants:
- A feature vector has exactly `N_FEATURES` raw values in the order of `FEATURES`; units are in the names.
- Every raw value is clipped to its pinned range `[0, RAW_MAX[i]]` before use, so nothing a peer or a
  counter reports can push the models outside the range they were trained and quantised for.
- Normalised values are in [0, 1]: linear for ratios, log1p-scaled for heavy-tailed values (RTT, error
  rate). Missing or non-finite raw values are replaced by `NEUTRAL_RAW` (a healthy idle node), so a
  missing counter can never look like a fault.
- The neighbour block for a node holds at most `K_NEIGHBOURS` sampled neighbours plus a 0/1 mask;
  padded rows are zero and masked out.

Pure numpy; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FEATURES: tuple[str, ...] = (
    "cpu_util",  # CPU busy fraction over the window, 0..1
    "mem_util",  # used memory fraction, 0..1
    "load",  # traffic through the node's mesh interfaces relative to their capacity, 0..1
    "rtt_ms",  # mean hello round-trip time to neighbours, milliseconds
    "loss_max",  # hello loss on the node's worst neighbour link, 0..1
    "link_changes",  # neighbour up/down transitions in the last LINK_CHANGES_WINDOW_S
    "if_errors_per_s",  # rx+tx errors and drops on mesh interfaces per second
    "fwd_ratio",  # forwarded packets / transit packets received (1.0 when there was no transit)
)
N_FEATURES = len(FEATURES)
K_NEIGHBOURS = 8
LINK_CHANGES_WINDOW_S = 300.0

# Pinned raw ranges (upper bounds; every lower bound is 0).
RAW_MAX = np.array([1.0, 1.0, 1.0, 1000.0, 1.0, 20.0, 10000.0, 1.0], dtype=np.float64)
LOG_SCALED = np.array([False, False, False, True, False, False, True, False])
NEUTRAL_RAW = np.array([0.2, 0.4, 0.2, 10.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float64)
_LOG_DEN = np.log1p(RAW_MAX)


def normalise(raw: np.ndarray) -> np.ndarray:
    """Raw feature values [..., 8] -> clipped, normalised float32 in [0, 1]."""
    x = np.array(raw, dtype=np.float64, copy=True)
    if x.shape[-1] != N_FEATURES:
        raise ValueError(f"expected {N_FEATURES} features, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        x[bad] = np.broadcast_to(NEUTRAL_RAW, x.shape)[bad]
    np.clip(x, 0.0, RAW_MAX, out=x)
    out = np.where(LOG_SCALED, np.log1p(x) / _LOG_DEN, x / RAW_MAX)
    return out.astype(np.float32)


def denormalise(norm: np.ndarray) -> np.ndarray:
    """Inverse of `normalise` (for reports and rules), float64."""
    z = np.clip(np.asarray(norm, dtype=np.float64), 0.0, 1.0)
    return np.where(LOG_SCALED, np.expm1(z * _LOG_DEN), z * RAW_MAX)


def raw_from_mapping(values: Mapping[str, object]) -> np.ndarray:
    """A raw vector from a name->value mapping; unknown names ignored, bad values -> neutral."""
    out = NEUTRAL_RAW.copy()
    for i, name in enumerate(FEATURES):
        v = values.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        fv = float(v)
        if np.isfinite(fv):
            out[i] = fv
    return out


def neighbour_block(
    x_norm: np.ndarray, neighbours: Sequence[Sequence[int]], k: int = K_NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray]:
    """Gather the (already sampled, <= k) neighbour rows for every node.

    x_norm: [n, 8] normalised features. neighbours[v]: indices into x_norm. Returns (x_nbr [n, k, 8],
    mask [n, k]) float32. Indices beyond k are ignored (callers sample first, see `sample_neighbours`).
    """
    n = x_norm.shape[0]
    idx = np.full((n, k), -1, dtype=np.int64)
    for v, nb in enumerate(neighbours):
        m = min(len(nb), k)
        if m:
            idx[v, :m] = np.asarray(nb[:m], dtype=np.int64)
    return gather_neighbours(x_norm, idx)


def gather_neighbours(x_norm: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x_norm [n, 8] (or [T, n, 8]) and a padded index table idx [n, k] (-1 = none) -> (x_nbr, mask)."""
    mask = (idx >= 0).astype(np.float32)
    safe = np.where(idx >= 0, idx, 0)
    x_nbr = x_norm[..., safe, :] * mask[..., None]
    return x_nbr.astype(np.float32), np.broadcast_to(mask, x_nbr.shape[:-1]).astype(np.float32)


def sample_neighbours(neighbours: Sequence[Sequence[int]], k: int, rng: np.random.Generator) -> np.ndarray:
    """Padded index table [n, k]: all neighbours when there are <= k, else k sampled without replacement."""
    n = len(neighbours)
    idx = np.full((n, k), -1, dtype=np.int64)
    for v, nb in enumerate(neighbours):
        nb_arr = np.asarray(nb, dtype=np.int64)
        if len(nb_arr) > k:
            nb_arr = rng.choice(nb_arr, size=k, replace=False)
        idx[v, : len(nb_arr)] = nb_arr
    return idx


N_AGGREGATES = 3 * N_FEATURES + 1


def neighbour_aggregates(x_nbr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Order-free summary of a masked neighbour block [B, K, 8] / [B, K]: per feature the mean, max and
    min over the present neighbours, then their count / K -> [B, N_AGGREGATES] float32 (all zero for
    a row without neighbours). What the tree models see of their neighbours."""
    xn = np.asarray(x_nbr, dtype=np.float64).reshape(-1, K_NEIGHBOURS, N_FEATURES)
    m = np.asarray(mask, dtype=np.float64).reshape(-1, K_NEIGHBOURS) > 0
    cnt = m.sum(axis=1)
    has = cnt > 0
    w = m[..., None]
    mean = np.where(has[:, None], (xn * w).sum(axis=1) / np.maximum(cnt, 1)[:, None], 0.0)
    mx = np.where(has[:, None], np.where(w, xn, -np.inf).max(axis=1), 0.0)
    mn = np.where(has[:, None], np.where(w, xn, np.inf).min(axis=1), 0.0)
    return np.concatenate([mean, mx, mn, (cnt / K_NEIGHBOURS)[:, None]], axis=1).astype(np.float32)


LINKS_DOWN_MAX = 8
"""`links_down` (collector.FeatureState.links_down: neighbours whose held loss counted in the window and
that are still not UP) is clipped to this and scaled to 0..1: the trees' one own-only input beside the
8 features. It is not in the shared vector (neighbours' records stay 8 values), so a peer's row gets 0."""


def links_down_input(links_down: Sequence[float] | np.ndarray) -> np.ndarray:
    """[B] neighbour counts -> [B, 1] float32 in 0..1 (missing or non-finite: 0)."""
    v = np.asarray(links_down, dtype=np.float64).reshape(-1)
    v = np.where(np.isfinite(v), v, 0.0)
    return (np.clip(v, 0.0, LINKS_DOWN_MAX) / LINKS_DOWN_MAX).astype(np.float32)[:, None]
