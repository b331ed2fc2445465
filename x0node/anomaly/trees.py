"""Gradient-boosted decision trees evaluated with numpy (the detector trained on real faults).

Rules and invariants:
- A model is a baseline logit plus the sum of its trees' leaf values; a tree is flat arrays (feature,
  threshold, left, right, leaf flag, value). At an inner node a row goes left when
  `x[feature] <= threshold`. Training (scikit-learn, development machines only) and export live in
  x0lab.anomaly.realtrain; the device needs nothing but numpy.
- `TreeModel.from_dict` validates everything before use: at most MAX_TREES trees of at most
  MAX_NODES nodes, feature indices below the declared input width, finite thresholds and values,
  children strictly after their parent (no cycles, bounded depth). Anything else raises TreeError.
- Inputs: the self model takes the node's normalised vector [B, 8]; the neighbour model takes it plus
  `features.neighbour_aggregates` of the masked neighbour block ([B, 8 + 25]). A model one wider
  (9 or 34: `"inputs"` in its file) also takes `links_down` (features.links_down_input) right after
  the 8 features; rows given none get 0. `logits` raises TreeError on a width mismatch. Pure; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from x0node.anomaly.features import N_AGGREGATES, N_FEATURES, neighbour_aggregates

WIDTHS = (N_FEATURES, N_FEATURES + 1, N_FEATURES + N_AGGREGATES, N_FEATURES + 1 + N_AGGREGATES)
"""self, self + links_down, self + aggregates, self + links_down + aggregates."""

MAX_TREES = 512
MAX_NODES = 1024
MAX_DEPTH = 32


class TreeError(ValueError):
    """A tree model that is malformed or used with the wrong inputs."""


@dataclass(frozen=True)
class _Tree:
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    depth: int


def _tree(d: Any, width: int) -> _Tree:
    if not isinstance(d, dict):
        raise TreeError("a tree must be an object")
    try:
        f = np.asarray(d["feature"], dtype=np.int64)
        t = np.asarray(d["threshold"], dtype=np.float64)
        lo = np.asarray(d["left"], dtype=np.int64)
        hi = np.asarray(d["right"], dtype=np.int64)
        leaf = np.asarray(d["leaf"], dtype=bool)
        v = np.asarray(d["value"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise TreeError(f"tree arrays malformed: {exc}") from None
    n = len(f)
    if not 1 <= n <= MAX_NODES or any(a.shape != (n,) for a in (t, lo, hi, leaf, v)):
        raise TreeError(f"a tree needs 1..{MAX_NODES} nodes and equal-length arrays")
    if not np.isfinite(v).all() or not np.isfinite(t[~leaf]).all():
        raise TreeError("non-finite threshold or value")
    inner = np.flatnonzero(~leaf)
    idx = np.arange(n)
    if ((f[inner] < 0) | (f[inner] >= width)).any():
        raise TreeError("feature index out of range")
    if ((lo[inner] <= idx[inner]) | (hi[inner] <= idx[inner]) | (lo[inner] >= n) | (hi[inner] >= n)).any():
        raise TreeError("children must come after their parent")
    depth = np.zeros(n, dtype=np.int64)
    for i in inner:  # parents precede children, so one pass gives every depth
        depth[lo[i]] = depth[hi[i]] = depth[i] + 1
    if depth.max() > MAX_DEPTH:
        raise TreeError("tree too deep")
    return _Tree(np.where(leaf, 0, f), np.where(leaf, 0.0, t), np.where(leaf, idx, lo), np.where(leaf, idx, hi),
                 leaf, v, int(depth.max()))


class TreeModel:
    def __init__(self, baseline: float, trees: list[_Tree], width: int) -> None:
        self.baseline = baseline
        self.trees = trees
        self.width = width
        self.uses_neighbours = width >= N_FEATURES + N_AGGREGATES
        self.uses_links_down = width in (N_FEATURES + 1, N_FEATURES + 1 + N_AGGREGATES)
        # every tree padded into one [T, N] table so all trees descend together, one level per step
        t, n = len(trees), max(len(tr.feature) for tr in trees)
        self._feature = np.zeros((t, n), dtype=np.int64)
        self._threshold = np.zeros((t, n))
        self._left = np.tile(np.arange(n), (t, 1))
        self._right = self._left.copy()
        self._value = np.zeros((t, n))
        for i, tr in enumerate(trees):
            k = len(tr.feature)
            self._feature[i, :k], self._threshold[i, :k] = tr.feature, tr.threshold
            self._left[i, :k], self._right[i, :k], self._value[i, :k] = tr.left, tr.right, tr.value
        self._depth = max(tr.depth for tr in trees)
        self._tree_idx = np.arange(t)[None, :]

    @classmethod
    def from_dict(cls, d: Any) -> TreeModel:
        if not isinstance(d, dict):
            raise TreeError("a tree model must be an object")
        width = d.get("inputs")
        if width not in WIDTHS:
            raise TreeError(f"inputs must be one of {WIDTHS}")
        trees = d.get("trees")
        if not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
            raise TreeError(f"a model needs 1..{MAX_TREES} trees")
        base = d.get("baseline")
        if isinstance(base, bool) or not isinstance(base, int | float) or not math.isfinite(base):
            raise TreeError("baseline must be a finite number")
        return cls(float(base), [_tree(t, width) for t in trees], width)

    def logits(self, x_self: np.ndarray, x_nbr: np.ndarray | None = None, mask: np.ndarray | None = None,
               x_down: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x_self, dtype=np.float64).reshape(-1, N_FEATURES)
        if self.uses_links_down:
            down = np.zeros((len(x), 1)) if x_down is None else np.asarray(x_down, dtype=np.float64).reshape(len(x), 1)
            x = np.concatenate([x, down], axis=1)
        if self.uses_neighbours:
            if x_nbr is None or mask is None:
                raise TreeError("the neighbour model needs the neighbour block")
            x = np.concatenate([x, neighbour_aggregates(x_nbr, mask)], axis=1)
        if x.shape[1] != self.width:
            raise TreeError(f"expected {self.width} inputs, got {x.shape[1]}")
        ti = self._tree_idx
        node = np.zeros((len(x), ti.shape[1]), dtype=np.int64)  # [B, T]; a leaf points at itself
        rows = np.arange(len(x))[:, None]
        for _ in range(self._depth):
            go_left = x[rows, self._feature[ti, node]] <= self._threshold[ti, node]
            node = np.where(go_left, self._left[ti, node], self._right[ti, node])
        return (self.baseline + self._value[ti, node].sum(axis=1)).astype(np.float32)
