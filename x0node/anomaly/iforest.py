"""Isolation Forest (Liu, Ting, Zhou 2008) in numpy, fitted on the device from rows seen as normal.

Rules and invariants:
- Fit takes rows [n, d] (n >= MIN_FIT_ROWS) and a seeded `random.Random`; every tree is built on
  `SUBSAMPLE` rows drawn without replacement, split on a random feature at a uniform random point
  between that feature's min and max in the node, down to depth ceil(log2(SUBSAMPLE)) or a node of one
  row (or constant rows). The forest is stored as flat arrays [trees, nodes], so scoring walks all
  trees for all rows at once in `depth` vectorised steps.
- score(x) = 2 ** (-E[h(x)] / c(SUBSAMPLE)) in (0, 1]; higher is more anomalous. h counts edges to
  the leaf plus c(leaf size) for the rows a leaf stands for.
- The decision threshold is the (1 - target_fpr) quantile of the fitted rows' own scores.
- Row features: a node's own 8 normalised features. (Adding differences from the neighbour mean,
  `context_rows`, scored worse on the scenario suite: AUC 0.92 against 0.94 with own features.)
- Pure numpy plus the caller's rng; no I/O. State round-trips through `to_dict`/`from_dict`.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

N_TREES = 100
SUBSAMPLE = 256
MIN_FIT_ROWS = 64
DEFAULT_TARGET_FPR = 0.01
_EULER = 0.5772156649


def c_factor(n: np.ndarray | float) -> np.ndarray:
    """Average path length of an unsuccessful BST search over n points."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 2.0)
    out = 2.0 * (np.log(safe - 1.0) + _EULER) - 2.0 * (safe - 1.0) / safe
    return np.where(n > 2, out, np.where(n == 2, 1.0, 0.0))


def context_rows(x_self: np.ndarray, x_nbr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[n, 8] self features + [n, 8] differences from the neighbour mean -> [n, 16] float32."""
    cnt = mask.sum(axis=1, keepdims=True)
    mean = (x_nbr * mask[..., None]).sum(axis=1) / np.maximum(cnt, 1.0)
    diff = np.where(cnt > 0, x_self - mean, 0.0)
    return np.concatenate([x_self, diff], axis=1).astype(np.float32)


class IsolationForest:
    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        leaf_adj: np.ndarray,
        depth: int,
        subsample: int,
        decision: float,
    ) -> None:
        self.feature = feature  # [T, M] int16, -1 at leaves
        self.threshold = threshold  # [T, M] float32
        self.left = left  # [T, M] int32
        self.right = right
        self.leaf_adj = leaf_adj  # [T, M] float32: depth + c(size) at leaves
        self.depth = depth
        self.subsample = subsample
        self.decision = decision

    @classmethod
    def fit(
        cls,
        rows: np.ndarray,
        rng: random.Random,
        n_trees: int = N_TREES,
        subsample: int = SUBSAMPLE,
        target_fpr: float = DEFAULT_TARGET_FPR,
    ) -> IsolationForest:
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < MIN_FIT_ROWS or not np.isfinite(x).all():
            raise ValueError(f"need a finite [n>={MIN_FIT_ROWS}, d] array, got {x.shape}")
        g = np.random.default_rng(rng.getrandbits(64))
        psi = min(subsample, x.shape[0])
        depth = max(1, math.ceil(math.log2(psi)))
        m = 2 ** (depth + 1) - 1
        feat = np.full((n_trees, m), -1, dtype=np.int16)
        thr = np.zeros((n_trees, m), dtype=np.float32)
        left = np.zeros((n_trees, m), dtype=np.int32)
        right = np.zeros((n_trees, m), dtype=np.int32)
        leaf = np.zeros((n_trees, m), dtype=np.float32)
        for t in range(n_trees):
            sample = x[g.choice(x.shape[0], size=psi, replace=False)]
            nxt = 1
            stack: list[tuple[int, np.ndarray, int]] = [(0, sample, 0)]
            while stack:
                node, data, lvl = stack.pop()
                lo, hi = data.min(axis=0), data.max(axis=0)
                splittable = np.nonzero(hi > lo)[0]
                if lvl >= depth or len(data) <= 1 or len(splittable) == 0:
                    leaf[t, node] = lvl + float(c_factor(len(data)))
                    left[t, node] = right[t, node] = node
                    continue
                j = int(splittable[g.integers(len(splittable))])
                s = np.float32(g.uniform(lo[j], hi[j]))
                go_left = data[:, j] < s
                if not go_left.any():  # float rounding put the cut at the minimum
                    s = np.float32(hi[j])
                    go_left = data[:, j] < s
                feat[t, node], thr[t, node] = j, s
                left[t, node], right[t, node] = nxt, nxt + 1
                stack.append((nxt, data[go_left], lvl + 1))
                stack.append((nxt + 1, data[~go_left], lvl + 1))
                nxt += 2
        forest = cls(feat, thr, left, right, leaf, depth, psi, 1.0)
        own = forest.score(x)
        forest.decision = float(np.quantile(own, 1.0 - target_fpr))
        return forest

    def score(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float32)
        n = x.shape[0]
        t_n = self.feature.shape[0]
        node = np.zeros((t_n, n), dtype=np.int32)
        tree = np.arange(t_n)[:, None]
        cols = np.arange(n)[None, :]
        for _ in range(self.depth):
            f = self.feature[tree, node]
            inner = f >= 0
            val = x[cols, np.where(inner, f, 0)]
            go_left = val < self.threshold[tree, node]
            node = np.where(inner, np.where(go_left, self.left[tree, node], self.right[tree, node]), node)
        h = self.leaf_adj[tree, node].mean(axis=0)
        return np.power(2.0, -h / float(c_factor(self.subsample))).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "leaf_adj": self.leaf_adj.tolist(),
            "depth": self.depth,
            "subsample": self.subsample,
            "decision": self.decision,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsolationForest:
        return cls(
            np.asarray(d["feature"], dtype=np.int16),
            np.asarray(d["threshold"], dtype=np.float32),
            np.asarray(d["left"], dtype=np.int32),
            np.asarray(d["right"], dtype=np.int32),
            np.asarray(d["leaf_adj"], dtype=np.float32),
            int(d["depth"]),
            int(d["subsample"]),
            float(d["decision"]),
        )
