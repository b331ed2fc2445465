"""Federated fine-tuning of the detector's final layer across the mesh (FedAvg), sans-I/O.

What it is: a small logistic head on top of the shipped tree layer. Its inputs, per scored row, are the
shipped layer's margin (its logit minus its threshold, clipped to +-MARGIN_CLIP and scaled to +-1),
the node's own tree inputs (the 8 normalised features and links_down) and the order-free aggregates of
its neighbours' vectors (features.neighbour_aggregates): WIDTH values, all in [-1, 1]. The head starts
as the shipped detector itself (`initial_params`: weight 1 on the unscaled margin, 0 elsewhere), so
before any round its verdict at 0 is exactly the shipped verdict.

Rules and invariants:
- Local training (`local_update`): plain full-batch gradient descent of the logistic loss on the
  node's own labelled rows (label 1 under a verified fault, 0 outside), LOCAL_STEPS steps at the fixed
  LEARNING_RATE, at most MAX_LOCAL_ROWS rows (a sample drawn with the rng passed in when there are more).
  The update (new params - base) is clipped to MAX_UPDATE_NORM (L2) before it leaves the node.
- FedAvg (`fedavg`): the next head is base + the mean of the updates, each weighted by its row count
  (capped at MAX_WEIGHT_ROWS, so one node cannot outweigh the mesh), each clipped again to
  MAX_UPDATE_NORM by the receiver (a peer's update is never trusted to be bounded). At most
  MAX_UPDATES_PER_ROUND updates per round; an update with non-finite or out-of-range parameters,
  zero rows or the wrong width is refused.
- Rounds (`Federation`): a node runs at most MAX_ROUNDS rounds, numbered 1, 2, ...; a peer's update is
  counted at most once per round and a round number from one origin is never accepted twice or out of
  order (each origin's last accepted round only grows). Refusals are counted by reason (REASONS).
- Acceptance gate (`no_worse`): an averaged head replaces the one in use only if, on the node's own
  held-out rows (never trained on), its verdicts at 0 are no worse than the shipped detector's: row F1
  at least the shipped F1 and no more false positives. Without at least MIN_HOLDOUT_ROWS held-out rows
  of which one is a fault, nothing can be judged and the shipped detector stays in use.
- State survives restarts (`Federation.to_dict` / `from_dict`; the service writes it temp + fsync +
  rename): the round, the head trained from and the head in use, and each origin's last accepted
  round, so a round already taken is refused after a restart too. `from_dict` validates everything
  (bounded origins, rounds in range, finite bounded parameters) and raises ValueError otherwise.
- Deterministic given the rng passed in (`numpy.random.Generator`); no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from x0node.anomaly.features import N_AGGREGATES, N_FEATURES

MARGIN_CLIP = 4.0
"""The shipped margin enters the head clipped to +-this (held-loss margins run -0.5..+4.5)."""
WIDTH = 1 + N_FEATURES + 1 + N_AGGREGATES
"""shipped margin, 8 features, links_down, 25 neighbour aggregates."""
N_PARAMS = WIDTH + 1
"""WIDTH weights and a bias."""
LEARNING_RATE = 0.5
LOCAL_STEPS = 20
MAX_LOCAL_ROWS = 4096
MAX_UPDATE_NORM = 1.0
"""L2 bound of one node's update in one round (applied by the sender and again by every receiver)."""
MAX_WEIGHT_ROWS = 4096
MAX_UPDATES_PER_ROUND = 64
MAX_ROUNDS = 20
MAX_ABS_PARAM = 64.0
"""A parameter beyond this is absurd (inputs are in [-1, 1]; the start is MARGIN_CLIP)."""
MIN_HOLDOUT_ROWS = 20
HOLDOUT_SHARE = 0.25
"""The newest share of a node's labelled rows it keeps for the acceptance gate (never trained on)."""
MAX_ORIGINS = 1024
"""Most origins whose last round a node remembers (a new origin beyond them is refused, round_full)."""
REASONS = ("bad_params", "no_rows", "replay", "duplicate", "round_full", "rounds_done")


def head_inputs(margin: np.ndarray, own: np.ndarray, agg: np.ndarray) -> np.ndarray:
    """[B] shipped margins, [B, 9] own tree inputs, [B, 25] aggregates -> [B, WIDTH] float64 in [-1, 1]."""
    m = np.asarray(margin, dtype=np.float64).reshape(-1, 1)
    m = np.where(np.isfinite(m), m, 0.0)
    x = np.concatenate([np.clip(m, -MARGIN_CLIP, MARGIN_CLIP) / MARGIN_CLIP,
                        np.asarray(own, dtype=np.float64).reshape(len(m), -1),
                        np.asarray(agg, dtype=np.float64).reshape(len(m), -1)], axis=1)
    if x.shape[1] != WIDTH:
        raise ValueError(f"expected {WIDTH} head inputs, got {x.shape[1]}")
    return np.clip(np.where(np.isfinite(x), x, 0.0), -1.0, 1.0)


def initial_params() -> np.ndarray:
    """The head that is the shipped detector: logit = the shipped margin (within +-MARGIN_CLIP)."""
    p = np.zeros(N_PARAMS)
    p[0] = MARGIN_CLIP
    return p


def logits(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = np.asarray(params, dtype=np.float64)
    return np.asarray(x, dtype=np.float64) @ p[:WIDTH] + p[WIDTH]


def valid_params(params: Sequence[float] | np.ndarray) -> bool:
    p = np.asarray(params, dtype=np.float64)
    return p.shape == (N_PARAMS,) and bool(np.isfinite(p).all()) and bool((np.abs(p) <= MAX_ABS_PARAM).all())


def clip_update(base: np.ndarray, params: np.ndarray, bound: float = MAX_UPDATE_NORM) -> np.ndarray:
    """base + (params - base) scaled down to L2 norm <= bound."""
    d = np.asarray(params, dtype=np.float64) - base
    n = float(np.linalg.norm(d))
    return base + (d * (bound / n) if n > bound else d)


@dataclass(frozen=True)
class Update:
    """One node's contribution to one round: its locally trained parameters and how many rows it used."""
    round: int
    params: tuple[float, ...]
    rows: int


def local_update(base: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, round_: int = 1) -> Update:
    """LOCAL_STEPS steps of gradient descent from `base` on rows x [R, WIDTH], labels y [R] (0/1)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(x) > MAX_LOCAL_ROWS:
        pick = np.sort(rng.choice(len(x), size=MAX_LOCAL_ROWS, replace=False))
        x, y = x[pick], y[pick]
    p = np.array(base, dtype=np.float64)
    if len(x):
        for _ in range(LOCAL_STEPS):
            z = np.clip(logits(p, x), -30.0, 30.0)
            err = 1.0 / (1.0 + np.exp(-z)) - y
            p[:WIDTH] -= LEARNING_RATE * (x.T @ err) / len(x)
            p[WIDTH] -= LEARNING_RATE * float(err.mean())
    p = np.clip(clip_update(np.asarray(base, dtype=np.float64), p), -MAX_ABS_PARAM, MAX_ABS_PARAM)
    return Update(round_, tuple(float(v) for v in p), len(x))


def fedavg(base: np.ndarray, updates: Sequence[Update]) -> np.ndarray:
    """base + the row-weighted mean of the (receiver-clipped) updates; base when there is none."""
    base = np.asarray(base, dtype=np.float64)
    acc = np.zeros(N_PARAMS)
    total = 0.0
    for u in updates[:MAX_UPDATES_PER_ROUND]:
        if u.rows <= 0 or not valid_params(u.params):
            continue
        w = float(min(u.rows, MAX_WEIGHT_ROWS))
        acc += w * (clip_update(base, np.asarray(u.params)) - base)
        total += w
    return base if total == 0 else np.clip(base + acc / total, -MAX_ABS_PARAM, MAX_ABS_PARAM)


def _f1_fp(verdict: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    tp = int((verdict & y).sum())
    fp = int((verdict & ~y).sum())
    fn = int((~verdict & y).sum())
    return (2 * tp / (2 * tp + fp + fn) if tp else 0.0), fp


def no_worse(params: np.ndarray, x: np.ndarray, y: np.ndarray, shipped_margin: np.ndarray) -> bool:
    """The acceptance gate on held-out rows: head F1 >= shipped F1 and head false positives <= shipped
    false positives, both at 0; False when the rows cannot judge (too few, or no fault among them)."""
    y = np.asarray(y).reshape(-1) == 1
    if len(y) < MIN_HOLDOUT_ROWS or not y.any():
        return False
    f_head, fp_head = _f1_fp(logits(params, x) >= 0.0, y)
    f_ship, fp_ship = _f1_fp(np.asarray(shipped_margin).reshape(-1) >= 0.0, y)
    return f_head >= f_ship and fp_head <= fp_ship


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a node's time-ordered labelled rows: (train, held out = the newest HOLDOUT_SHARE)."""
    k = int(math.floor(n * HOLDOUT_SHARE))
    return np.arange(n - k), np.arange(n - k, n)


@dataclass
class Federation:
    """One node's rounds: its own update, the peers' updates offered for the current round, the gate.

    `params` is the head the federation trains from (the last averaged one); `in_use` is the head
    the detector uses, None while the shipped detector is better or unjudged."""
    params: np.ndarray = field(default_factory=initial_params)
    round: int = 1
    in_use: np.ndarray | None = None
    last_round: dict[bytes, int] = field(default_factory=dict)
    pending: dict[bytes, Update] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    accepted_rounds: int = 0

    @property
    def done(self) -> bool:
        return self.round > MAX_ROUNDS

    def refuse(self, reason: str) -> str:
        """Count a refused update under `reason` (one of REASONS) and return it."""
        self.refused[reason] += 1
        return reason

    def offer(self, origin: bytes, update: Update) -> str | None:
        """A peer's update for the current round; None when taken, else the reason it was refused."""
        if self.done:
            return self.refuse("rounds_done")
        if not valid_params(update.params) or not 1 <= update.round <= MAX_ROUNDS:
            return self.refuse("bad_params")
        if update.rows <= 0:
            return self.refuse("no_rows")
        if update.round <= self.last_round.get(origin, 0):
            return self.refuse("replay")
        if origin in self.pending:
            return self.refuse("duplicate")
        if len(self.pending) >= MAX_UPDATES_PER_ROUND - 1 or (
                origin not in self.last_round and len(self.last_round) >= MAX_ORIGINS):
            return self.refuse("round_full")
        self.last_round[origin] = update.round
        self.pending[origin] = update
        return None

    def local(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Update:
        """This node's update for the current round from its own training rows (to publish)."""
        return local_update(self.params, x, y, rng, self.round)

    def to_dict(self) -> dict[str, object]:
        return {"round": self.round, "params": [float(v) for v in self.params],
                "in_use": None if self.in_use is None else [float(v) for v in self.in_use],
                "last_round": {o.hex(): r for o, r in sorted(self.last_round.items())},
                "accepted_rounds": self.accepted_rounds}

    @classmethod
    def from_dict(cls, d: object) -> Federation:
        """The state `to_dict` wrote; ValueError when anything in it is malformed or out of range."""
        if not isinstance(d, dict):
            raise ValueError("federation state must be an object")
        round_, accepted, last = d.get("round"), d.get("accepted_rounds", 0), d.get("last_round", {})
        for v, hi in ((round_, MAX_ROUNDS + 1), (accepted, MAX_ROUNDS)):
            if isinstance(v, bool) or not isinstance(v, int) or not (0 <= v <= hi):
                raise ValueError("round out of range")
        if round_ < 1:
            raise ValueError("round out of range")
        if not isinstance(last, dict) or len(last) > MAX_ORIGINS:
            raise ValueError("last_round malformed")
        seen: dict[bytes, int] = {}
        for o, r in last.items():
            if not isinstance(o, str) or len(o) > 256 or isinstance(r, bool) or not isinstance(r, int) \
                    or not 1 <= r <= MAX_ROUNDS:
                raise ValueError("last_round malformed")
            try:
                seen[bytes.fromhex(o)] = r
            except ValueError:
                raise ValueError("last_round origin not hex") from None
        params = d.get("params")
        in_use = d.get("in_use")
        try:
            p = np.asarray(params, dtype=np.float64)
            u = None if in_use is None else np.asarray(in_use, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("parameters malformed") from None
        if not valid_params(p) or (u is not None and not valid_params(u)):
            raise ValueError("parameters malformed")
        return cls(params=p, round=round_, in_use=u, last_round=seen, accepted_rounds=accepted)

    def close_round(self, own: Update | None, x_hold: np.ndarray, y_hold: np.ndarray,
                    shipped_hold: np.ndarray) -> bool:
        """Average this round's updates (own first, then the peers' in origin order), move to the next
        round, and put the average in use if the gate passes on the held-out rows. True when it did."""
        if self.done:
            return False
        ups = ([own] if own is not None else []) + [self.pending[o] for o in sorted(self.pending)]
        self.params = fedavg(self.params, ups)
        self.pending = {}
        self.round += 1
        if no_worse(self.params, x_hold, y_hold, shipped_hold):
            self.in_use = self.params.copy()
            self.accepted_rounds += 1
            return True
        return False
