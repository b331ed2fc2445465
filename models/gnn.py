"""Keras definitions of the anomaly GraphSAGE (attention aggregator) and of the MLP baseline.

Training-only module (needs tensorflow-cpu, see models/requirements-train.txt); never imported on the
device. Invariants:
- Inputs: x_self [B, 8] and x_nbr [B, K, 8] normalised to [0, 1] (x0node/anomaly/features.py), mask
  [B, K] with 1 for a present neighbour. Inputs are clipped to [0, 1] inside the model too, so the
  int8 input range is pinned whatever the caller sends.
- GraphSAGE layer: h_self = relu(W_s x_self), h_nbr = relu(W_n x_nbr); 4-head dot-product attention
  with query from h_self over keys/values from h_nbr; scores are soft-bounded to +-SCORE_BOUND and
  masked neighbours get -MASK_PENALTY before the softmax (both chosen so int8 quantisation keeps a
  fine step); a node with no neighbour gets a zero aggregate. h = relu(W [h_self || agg]) (64 wide),
  one more 64-wide layer, one logit out, soft-bounded to +-LOGIT_BOUND (no sigmoid: callers apply it,
  rankings are preserved).
- MLP baseline: the same 8 self features, no neighbour input, ~the same number of weights.
"""

from __future__ import annotations

import numpy as np

HIDDEN = 64
HEADS = 4
SCORE_BOUND = 8.0
MASK_PENALTY = 24.0
LOGIT_BOUND = 12.0  # soft bound: keeps the int8 output step near LOGIT_BOUND / 64


def build_gnn(k: int, n_features: int, hidden: int = HIDDEN, heads: int = HEADS):
    import keras
    from keras import layers, ops

    head_dim = hidden // heads
    block = np.zeros((hidden, heads), dtype=np.float32)
    for h in range(heads):
        block[h * head_dim : (h + 1) * head_dim, h] = 1.0
    head_sum = (block / np.float32(np.sqrt(head_dim))).astype(np.float32)  # [64, 4]: scaled dot product
    head_expand = block.T.copy()  # [4, 64]

    x_self = keras.Input((n_features,), name="x_self")
    x_nbr = keras.Input((k, n_features), name="x_nbr")
    mask = keras.Input((k,), name="mask")
    xs = ops.clip(x_self, 0.0, 1.0)
    xn = ops.clip(x_nbr, 0.0, 1.0)
    m = ops.clip(mask, 0.0, 1.0)
    hs = layers.Dense(hidden, activation="relu", name="self_proj")(xs)  # [B, 64]
    hn = layers.Dense(hidden, activation="relu", name="nbr_proj")(xn)  # [B, K, 64]
    q = layers.Dense(hidden, name="query")(hs)
    key = layers.Dense(hidden, name="key")(hn)
    val = layers.Dense(hidden, name="value")(hn)
    prod = ops.expand_dims(q, 1) * key  # [B, K, 64]
    score = ops.matmul(prod, ops.convert_to_tensor(head_sum, dtype="float32"))  # [B, K, 4]
    score = SCORE_BOUND * ops.tanh(score / SCORE_BOUND)
    score = score + (ops.expand_dims(m, -1) - 1.0) * MASK_PENALTY
    alpha = ops.softmax(score, axis=1)  # over neighbours
    alpha64 = ops.matmul(alpha, ops.convert_to_tensor(head_expand, dtype="float32"))  # [B, K, 64]
    agg = ops.sum(alpha64 * val * ops.expand_dims(m, -1), axis=1)  # [B, 64]
    h = layers.Concatenate(name="sage_concat")([hs, agg])
    h = layers.Dense(hidden, activation="relu", name="sage_combine")(h)
    h = layers.Dense(hidden, activation="relu", name="head_hidden")(h)
    logit = layers.Dense(1, name="logit_raw")(h)
    logit = LOGIT_BOUND * ops.tanh(logit / LOGIT_BOUND)
    return keras.Model([x_self, x_nbr, mask], logit, name="graphsage_attn")


def build_mlp(n_features: int):
    import keras
    from keras import layers, ops

    x_self = keras.Input((n_features,), name="x_self")
    h = ops.clip(x_self, 0.0, 1.0)
    h = layers.Dense(128, activation="relu", name="mlp_1")(h)
    h = layers.Dense(128, activation="relu", name="mlp_2")(h)
    h = layers.Dense(32, activation="relu", name="mlp_3")(h)
    logit = layers.Dense(1, name="logit_raw")(h)
    logit = LOGIT_BOUND * ops.tanh(logit / LOGIT_BOUND)
    return keras.Model(x_self, logit, name="mlp")
