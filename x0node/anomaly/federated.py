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
- Rounds follow one schedule every node computes alone from its wall clock (`round_at`): round k
  covers [k*R, (k+1)*R) with R = the round length (`[anomaly] federated_round_s`), so nodes agree
  on the round number without talking. A node enters round k at its first step in it (`begin`),
  trains and publishes its update for k then, and closes k at its first step after k ends
  (`close_round`), averaging its own update with the peers' it holds for k. A node runs at most
  MAX_ROUNDS rounds (rounds with no update at all are not counted).
- Offers (`Federation.offer`): a peer's update comes with the signed sequence number of the record
  that carried it (the state layer's version) and the schedule's round at the receiver. A sequence
  number at or below the last one accepted from that origin, or a round below its last accepted
  round, is refused ("replay"): a signed sequence number is never accepted twice under one key. A
  newer update from the same origin for the same round replaces the held one (counted in
  `replaced`, not a refusal): each origin counts at most once per round. An update for a round
  already closed or begun past is dropped ("stale"; so are held updates of a round the node did not
  close when it begins a later one), one for a round beyond the next ("early"). At most
  MAX_UPDATES_PER_ROUND - 1 peers' updates per round and MAX_PENDING in all are held, and at most
  MAX_ORIGINS origins are remembered ("round_full" beyond). Refusals are counted by reason (REASONS).
- Acceptance gate (`no_worse`): an averaged head replaces the one in use only if, on the node's own
  held-out rows (never trained on), its verdicts at 0 are no worse than the shipped detector's: row F1
  at least the shipped F1 and no more false positives. Without at least MIN_HOLDOUT_ROWS held-out rows
  of which one is a fault, nothing can be judged and the shipped detector stays in use.
- State survives restarts (`Federation.to_dict` / `from_dict`; the service writes it temp + fsync +
  rename): the round in progress and the last closed, the head trained from and the head in use, each
  origin's last accepted (round, sequence number) and the updates held, so an update already taken is
  refused after a restart too. `from_dict` validates everything
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
MAX_PENDING = 2 * (MAX_UPDATES_PER_ROUND - 1)
"""Most peers' updates held at once (the round in progress and the next)."""
MAX_ROUND_NUMBER = (1 << 32) - 1
"""Round numbers are the schedule's (round_at) and travel as u32."""
MAX_SEQ = (1 << 64) - 1
"""Sequence numbers are the state records' versions (u64)."""
REASONS = ("bad_params", "no_rows", "replay", "stale", "early", "round_full", "rounds_done")


def round_at(wall: float, round_s: float) -> int:
    """The shared schedule: the round k whose interval [k*round_s, (k+1)*round_s) holds wall-clock
    time `wall` (s); 0 when there is none (a non-finite time or length, or k outside 1..MAX_ROUND_NUMBER)."""
    if not (math.isfinite(wall) and math.isfinite(round_s) and round_s > 0):
        return 0
    k = math.floor(wall / round_s)
    return k if 1 <= k <= MAX_ROUND_NUMBER else 0


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
    """One node's rounds on the shared schedule: its own update, the peers' updates offered for the
    round in progress (and the next), the gate.

    `params` is the head the federation trains from (the last averaged one); `in_use` is the head
    the detector uses, None while the shipped detector is better or unjudged. `round` is the
    schedule's round in progress (0 before the first), `closed_round` the last one closed, `last`
    each origin's (round, sequence number) last accepted, `pending` the updates held by (round, origin)."""
    params: np.ndarray = field(default_factory=initial_params)
    round: int = 0
    closed_round: int = 0
    rounds_closed: int = 0
    in_use: np.ndarray | None = None
    last: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    pending: dict[tuple[int, bytes], Update] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    accepted_rounds: int = 0
    replaced: int = 0

    @property
    def done(self) -> bool:
        return self.rounds_closed >= MAX_ROUNDS

    def refuse(self, reason: str) -> str:
        """Count a refused update under `reason` (one of REASONS) and return it."""
        self.refused[reason] += 1
        return reason

    def peers_of(self, round_: int) -> list[bytes]:
        """The origins whose updates for `round_` are held, in origin order."""
        return sorted(o for r, o in self.pending if r == round_)

    def offer(self, origin: bytes, update: Update, seq: int, now_round: int) -> str | None:
        """A peer's update carried under its signed sequence number `seq`, at the schedule's round
        `now_round` (round_at of this node's wall time); None when held, else the reason it was refused."""
        if self.done:
            return self.refuse("rounds_done")
        if not valid_params(update.params) or not 1 <= update.round <= MAX_ROUND_NUMBER \
                or isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
            return self.refuse("bad_params")
        if update.rows <= 0:
            return self.refuse("no_rows")
        prev = self.last.get(origin)
        if prev is not None and (seq <= prev[1] or update.round < prev[0]):
            return self.refuse("replay")
        if update.round < max(self.round or now_round, self.closed_round + 1):
            return self.refuse("stale")
        if update.round > max(self.round, now_round) + 1:
            return self.refuse("early")
        key = (update.round, origin)
        if key in self.pending:
            self.replaced += 1
        elif (sum(r == update.round for r, _ in self.pending) >= MAX_UPDATES_PER_ROUND - 1
              or len(self.pending) >= MAX_PENDING
              or (prev is None and len(self.last) >= MAX_ORIGINS)):
            return self.refuse("round_full")
        self.last[origin] = (update.round, seq)
        self.pending[key] = update
        return None

    def begin(self, round_: int) -> bool:
        """Enter the schedule's round `round_` (the caller closed the one in progress first); updates
        held for earlier rounds are dropped and counted ("stale"). False when it is not later."""
        if round_ <= self.round or not 1 <= round_ <= MAX_ROUND_NUMBER:
            return False
        self.round = round_
        for key in [k for k in self.pending if k[0] < round_]:
            del self.pending[key]
            self.refuse("stale")
        return True

    def local(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Update:
        """This node's update for the round in progress from its own training rows (to publish)."""
        return local_update(self.params, x, y, rng, self.round)

    def close_round(self, own: Update | None, x_hold: np.ndarray, y_hold: np.ndarray,
                    shipped_hold: np.ndarray) -> bool:
        """Close the round in progress: average its updates (own first, then the peers' held for it in
        origin order) and put the average in use if the gate passes on the held-out rows (True when it
        did). A round with no update at all is marked closed without counting towards MAX_ROUNDS."""
        if self.done or self.round == 0 or self.closed_round >= self.round:
            return False
        peers = self.peers_of(self.round)
        ups = ([own] if own is not None else []) + [self.pending.pop((self.round, o)) for o in peers]
        self.closed_round = self.round
        if not ups:
            return False
        self.params = fedavg(self.params, ups)
        self.rounds_closed += 1
        if no_worse(self.params, x_hold, y_hold, shipped_hold):
            self.in_use = self.params.copy()
            self.accepted_rounds += 1
            return True
        return False

    def to_dict(self) -> dict[str, object]:
        return {"round": self.round, "closed_round": self.closed_round, "rounds_closed": self.rounds_closed,
                "params": [float(v) for v in self.params],
                "in_use": None if self.in_use is None else [float(v) for v in self.in_use],
                "last": {o.hex(): [r, q] for o, (r, q) in sorted(self.last.items())},
                "pending": [[r, o.hex(), u.rows, [float(v) for v in u.params]]
                            for (r, o), u in sorted(self.pending.items())],
                "accepted_rounds": self.accepted_rounds}

    @classmethod
    def from_dict(cls, d: object) -> Federation:
        """The state `to_dict` wrote; ValueError when anything in it is malformed or out of range."""
        if not isinstance(d, dict):
            raise ValueError("federation state must be an object")
        ints = {k: d.get(k) for k in ("round", "closed_round", "rounds_closed", "accepted_rounds")}
        for k, hi in (("round", MAX_ROUND_NUMBER), ("closed_round", MAX_ROUND_NUMBER),
                      ("rounds_closed", MAX_ROUNDS), ("accepted_rounds", MAX_ROUNDS)):
            if not _int_in(ints[k], 0, hi):
                raise ValueError(f"{k} out of range")
        if ints["closed_round"] > ints["round"] or ints["accepted_rounds"] > ints["rounds_closed"]:
            raise ValueError("round out of range")
        last, pending = d.get("last"), d.get("pending")
        if not isinstance(last, dict) or len(last) > MAX_ORIGINS:
            raise ValueError("last malformed")
        if not isinstance(pending, list) or len(pending) > MAX_PENDING:
            raise ValueError("pending malformed")
        seen: dict[bytes, tuple[int, int]] = {}
        for o, rq in last.items():
            if not isinstance(rq, list) or len(rq) != 2 or not _int_in(rq[0], 1, MAX_ROUND_NUMBER) \
                    or not _int_in(rq[1], 1, MAX_SEQ):
                raise ValueError("last malformed")
            seen[_origin(o)] = (rq[0], rq[1])
        held: dict[tuple[int, bytes], Update] = {}
        for item in pending:
            if not isinstance(item, list) or len(item) != 4 or not _int_in(item[0], 1, MAX_ROUND_NUMBER) \
                    or not _int_in(item[2], 1, MAX_WEIGHT_ROWS * 256):
                raise ValueError("pending malformed")
            origin = _origin(item[1])
            u = Update(item[0], tuple(_params(item[3])), item[2])
            if seen.get(origin, (0, 0))[0] < u.round:
                raise ValueError("pending malformed")
            held[(u.round, origin)] = u
        in_use = d.get("in_use")
        return cls(params=_params(d.get("params")), round=ints["round"], closed_round=ints["closed_round"],
                   rounds_closed=ints["rounds_closed"], in_use=None if in_use is None else _params(in_use),
                   last=seen, pending=held, accepted_rounds=ints["accepted_rounds"])


def _int_in(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _origin(o: object) -> bytes:
    if not isinstance(o, str) or len(o) > 256:
        raise ValueError("origin malformed")
    try:
        return bytes.fromhex(o)
    except ValueError:
        raise ValueError("origin not hex") from None


def _params(v: object) -> np.ndarray:
    try:
        p = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("parameters malformed") from None
    if not valid_params(p):
        raise ValueError("parameters malformed")
    return p
