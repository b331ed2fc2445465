"""Judging detectors on the real-fault dataset (realdata.py): split by run and topology, CIs, baselines.

Protocol (the model card, docs/anomaly.md, repeats it):
- Folds by topology kind (every chaos run is one topology; ring, grid, ladder, random): fold k tests
  on every run of kind k, picks the operating point (and nothing else) on the runs of kind k+1
  (validation), trains on the remaining runs. Fault-free recordings (realdata.collect_fault_free)
  are only ever judged: one more fold tests them with the shipping split (train on every chaos
  run but the last kind's, validation on that kind). Every row is scored exactly once, by a model
  that never saw its run or its topology kind; the pooled test predictions are judged.
- Alarms, as a router acts on them: per-tick verdicts (score >= threshold) go through the runtime's
  alarm policy (x0node.anomaly.alarm: raise after r anomalous ticks in a row, clear after c normal
  ones). The operating point (threshold, policy from POLICIES) of every detector is the one with
  the best event F1 on its validation runs: event recall and alarm precision (raised alarms that
  were a fault / all raised alarms). `per_tick` rows keep the old recipe for comparison: threshold
  at the best row F1 on validation, every anomalous tick an alarm. The shipped detector also gets a
  second operating point from the same validation scores (`choose_budget_point`: the best hard-fault
  recall within MAX_DETECT_TICKS under FA_BUDGET false alarms per node-hour), and two trade-offs
  described but never used to choose (thresholds moved by an offset; each policy of
  TRADEOFF_POLICIES in place of the chosen one), and its false alarms per fault-free recording.
- Inputs per row (host-wide features neutral, HOST_WIDE): the node's own normalised vector, and aggregates of its neighbours' normalised
  vectors (mean, max, min, count / K) — those its state layer delivered (`deployed`, what the daemon
  really had) or, for the reference row, those every testbed neighbour recorded at the nearest tick
  (`full`). Models are trained on deployed inputs.
- Metrics on rows with label 0/1 (label -1 ignored, realdata.py): precision, recall, F1; event recall
  (an event is detected when an alarm is raised on one of its rows between its start and end; an
  alarm already up does not count), also for hard faults and within MAX_DETECT_TICKS; detect ticks
  (ticks from the fault's start to that raise, p50); false alarms per node-hour (alarms raised on
  label-0 ticks, per node-hour of label-0 ticks): `false_alarms_per_node_hour` on the fault-free recordings (None
  without them), `false_alarms_between_faults_per_node_hour` on the label-0 ticks of chaos runs
  (within a minute or so of some fault in the same small mesh), and
  `false_alarms_per_node_hour_after_start` on the fault-free recordings without each daemon's first
  LINK_CHANGES_WINDOW_S (its adjacencies forming are in its link-change count until then). Row F1 and every event figure are
  on the chaos runs. 95 % CIs by percentile bootstrap (BOOTSTRAP resamples, seeded): events
  resampled for event recall and detect ticks, (run, node) series resampled for F1 and false alarms.
Pure numpy + scikit-learn (development dependency, pinned); no I/O.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from x0lab.anomaly.realdata import INTERVAL_S, Table
from x0node.anomaly.alarm import AlarmPolicy, alarm_series
from x0node.anomaly.features import (
    FEATURES,
    K_NEIGHBOURS,
    LINK_CHANGES_WINDOW_S,
    N_FEATURES,
    NEUTRAL_RAW,
    links_down_input,
    neighbour_aggregates,
    normalise,
)

BOOTSTRAP = 1000
MAX_DETECT_TICKS = 2
EWMA_ALPHA = 0.1
EWMA_WARMUP = 10
SEED = 16
POLICIES = tuple(AlarmPolicy(r, c) for r in (1, 2, 3) for c in (1, 3, 10))
"""Alarm policies an operating point may pick (raise after r anomalous ticks, clear after c normal)."""
PER_TICK = AlarmPolicy()
N_THRESHOLDS = 64
"""Candidate thresholds per operating-point search: quantiles of the validation scores."""


# ------------------------------------------------------------------------------------------- inputs
HOST_WIDE = np.array([FEATURES.index("cpu_util"), FEATURES.index("mem_util")])
"""Features that on the namespace testbed are the shared host's, not the node's (every namespace reads
the same /proc/stat and /proc/meminfo; the host was saturated while recording). Every detector sees
them at their neutral value, so no model learns the host's state at recording time; a tree never
splits on a constant column, so on a device the shipped trees ignore them too."""


def node_raw(raw: np.ndarray) -> np.ndarray:
    """Raw vectors [..., 8] with the host-wide features set to neutral."""
    out = np.array(raw, dtype=np.float64, copy=True)
    out[..., HOST_WIDE] = NEUTRAL_RAW[HOST_WIDE]
    return out


def neighbour_block(nbrs: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's inputs: x_nbr [R, K, 8] and mask [R, K] (neighbours in id order, at most K)."""
    xn = np.zeros((len(nbrs), K_NEIGHBOURS, N_FEATURES), dtype=np.float32)
    m = np.zeros((len(nbrs), K_NEIGHBOURS), dtype=np.float32)
    for i, d in enumerate(nbrs):
        keys = sorted(d)[:K_NEIGHBOURS]
        if keys:
            xn[i, : len(keys)] = normalise(node_raw(np.stack([d[k] for k in keys])))
            m[i, : len(keys)] = 1.0
    return xn, m


@dataclass
class Inputs:
    xs: np.ndarray  # [R, 8] normalised own vector
    agg: np.ndarray  # [R, 25] neighbour aggregates
    xn: np.ndarray  # [R, K, 8]
    mask: np.ndarray  # [R, K]
    down: np.ndarray | None = None  # [R, 1] features.links_down_input of the node's own links_down

    @property
    def with_nbrs(self) -> np.ndarray:
        return np.concatenate([self.xs, self.agg], axis=1)

    @property
    def own(self) -> np.ndarray:
        """The tree models' own inputs: the 8 features and links_down (trees.py)."""
        down = self.down if self.down is not None else np.zeros((len(self.xs), 1), np.float32)
        return np.concatenate([self.xs, down], axis=1)

    @property
    def own_with_nbrs(self) -> np.ndarray:
        return np.concatenate([self.own, self.agg], axis=1)


def inputs(table: Table, which: str) -> Inputs:
    nbrs = table.deployed if which == "deployed" else table.full
    xn, m = neighbour_block(nbrs)
    down = links_down_input(table.links_down) if len(table.links_down) == len(table) else None
    return Inputs(normalise(node_raw(table.x)), neighbour_aggregates(xn, m), xn, m, down)


# ------------------------------------------------------------------------------------------- detectors
# A detector: fit(train_rows, validation_rows, inputs, table) -> score(rows, inputs) (larger = more
# anomalous). Only the shipped chain uses the validation rows (its per-model thresholds).
Fit = Callable[[np.ndarray, np.ndarray, Inputs, Table], Callable[[np.ndarray, Inputs], np.ndarray]]


def _labelled(rows: np.ndarray, table: Table) -> np.ndarray:
    return rows[table.label[rows] >= 0]


def fit_rules_shipped(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    from x0node.anomaly.rules import rule_scores

    return lambda rows, i: rule_scores(i.xs[rows])


# direction of each feature when it goes bad: +1 high is bad, -1 low is bad (fwd_ratio)
_DIRECTION = np.array([1, 1, 1, 1, 1, 1, 1, -1], dtype=np.float64)


def fit_rules_tuned(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """One threshold per feature, each the one that maximises that feature's own F1 on training rows;
    score = the largest margin past its threshold, in units of the feature's normal spread (so the
    global threshold chosen on validation moves every rule together)."""
    rows = _labelled(train, table)
    y = table.label[rows] == 1
    z = inp.xs[rows] * _DIRECTION
    thr = np.zeros(N_FEATURES)
    spread = np.zeros(N_FEATURES)
    for f in range(N_FEATURES):
        thr[f] = best_threshold(z[:, f], y)[0]
        spread[f] = max(float(np.std(z[~y, f])), 1e-3)
    return lambda r, i: np.max((i.xs[r] * _DIRECTION - thr) / spread, axis=1)


def fit_ewma(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """Per node, against its own history: |z| of each feature against an EWMA mean/variance of the
    node's earlier ticks (updated every tick, alpha EWMA_ALPHA), max over features. Nothing trained."""
    def score(rows: np.ndarray, i: Inputs) -> np.ndarray:
        out = np.zeros(len(rows))
        keys = np.char.add(table.run[rows], table.node[rows])
        for key in np.unique(keys):
            sel = np.flatnonzero(keys == key)
            order = sel[np.argsort(table.t[rows[sel]])]
            x = i.xs[rows[order]].astype(np.float64)
            mean, var = x[0].copy(), np.full(N_FEATURES, 1e-3)
            for n, j in enumerate(order):
                zz = np.abs(x[n] - mean) / np.sqrt(var + 1e-4)
                out[j] = float(zz.max()) if n >= EWMA_WARMUP else 0.0
                d = x[n] - mean
                mean += EWMA_ALPHA * d
                var = (1 - EWMA_ALPHA) * (var + EWMA_ALPHA * d * d)
        return out
    return score


def _xy(train: np.ndarray, inp: Inputs, table: Table, nbrs: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = _labelled(train, table)
    x = inp.with_nbrs[rows] if nbrs else inp.xs[rows]
    return x, (table.label[rows] == 1).astype(np.int64)


def _tree_x(inp: Inputs, nbrs: bool) -> np.ndarray:
    """The tree detectors' inputs: own features and links_down, plus the neighbour aggregates."""
    return inp.own_with_nbrs if nbrs else inp.own


def fit_gbt(nbrs: bool) -> Fit:
    def fit(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
        from sklearn.ensemble import HistGradientBoostingClassifier

        rows = _labelled(train, table)
        x, y = _tree_x(inp, nbrs)[rows], (table.label[rows] == 1).astype(np.int64)
        clf = HistGradientBoostingClassifier(max_iter=GBT_TREES, max_depth=GBT_DEPTH, learning_rate=0.1,
                                             max_leaf_nodes=GBT_LEAVES, l2_regularization=1.0, random_state=SEED)
        clf.fit(x, y)
        return lambda r, i: clf.decision_function(_tree_x(i, nbrs)[r])
    return fit


GBT_TREES, GBT_DEPTH, GBT_LEAVES = 100, 4, 15


def fit_mlp(nbrs: bool) -> Fit:
    def fit(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
        from sklearn.neural_network import MLPClassifier

        x, y = _xy(train, inp, table, nbrs)
        clf = MLPClassifier(hidden_layer_sizes=(32, 16), alpha=1e-3, max_iter=200, random_state=SEED,
                            early_stopping=True)
        clf.fit(x, y)
        return lambda r, i: clf.predict_proba(i.with_nbrs[r] if nbrs else i.xs[r])[:, 1]
    return fit


def fit_iforest(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    from sklearn.ensemble import IsolationForest

    rows = train[table.label[train] == 0]
    clf = IsolationForest(n_estimators=200, random_state=SEED).fit(inp.with_nbrs[rows])
    return lambda r, i: -clf.score_samples(i.with_nbrs[r])


def chain_scores(chain: Any, rows: np.ndarray, i: Inputs) -> np.ndarray:
    """Rows through DetectorChain.evaluate (the runtime code); score = logit minus its layer's threshold."""
    from x0node.anomaly.chain import GBT, GBT_SELF, GNN, SELF

    thr = {GNN: chain.gnn_threshold, SELF: chain.self_threshold, GBT: chain.thresholds[GBT],
           GBT_SELF: chain.thresholds[GBT_SELF]}
    out = np.zeros(len(rows))
    for lo in range(0, len(rows), 2048):
        r = rows[lo:lo + 2048]
        ev = chain.evaluate(i.xs[r], i.xn[r], i.mask[r], None if i.down is None else i.down[r])
        out[lo:lo + len(r)] = ev.scores - np.array([thr.get(ev.layer_of(j), ev.threshold) for j in range(len(r))])
    return out


def fit_shipped_gnn(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """The synthetic-trained int8 GNN (the self-only MLP for rows without neighbours) from the bundle,
    through the device chain with the tree layers switched off. Nothing trained here."""
    from x0node.anomaly.chain import GBT, GBT_SELF, load_chain

    chain, _ = load_chain()
    for layer in (GBT, GBT_SELF):
        chain.layers[layer].live = False
    return lambda rows, i: chain_scores(chain, rows, i)


def fit_recipe(recipe: str) -> Fit:
    """A tree recipe of `x0node model fit-real` (realtrain.RECIPES) as the device runs it: the fold's tree
    pair (trained, or for the held-loss recipes built with nothing trained) loaded by trees.py into a
    DetectorChain, each row scored by the neighbour model or, without neighbour data, the self model; the
    thresholds and operating point chosen on the validation runs like every detector's.
    - "trees" (chain_gbt): the gradient-boosted pair;
    - "held-loss" (what ships): one tree on the node's own links_down, the tick's loss and forwarding;
    - "held-loss-links": neighbours held down alone (the recipe before the tick's loss and forwarding);
    - "held-loss-mesh": with the slow-neighbourhood discount (one neighbour more must be down while the
      smallest hello RTT among the neighbours' vectors is above a level chosen on the training and
      validation runs, realtrain.choose_mesh_rtt): a host stall delays every link at once, a local
      fault does not."""
    def fit(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
        from x0lab.anomaly import realtrain

        chain = realtrain.chain_of(realtrain.RECIPES[recipe](train, val, inp, table))
        return lambda rows, i: chain_scores(chain, rows, i)
    return fit


FED_ROUNDS: list[dict[str, Any]] = []
"""What each fitted fold of `federated` did (clients, rows, rounds, which rounds passed the gate); a
fold read back from the cache appends nothing."""


def fit_federated(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table,
                  gate: str = "own") -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """Federated fine-tuning of the final layer (x0node.anomaly.federated) on top of the shipped
    detector, as the mesh would run it: the clients are the nodes of the training runs, each with its
    own labelled rows in time order (labelled by the fault schedule, as a node labels from verified
    incidents); each keeps its newest HOLDOUT_SHARE for the gate. The rounds are the device's own
    (federated.Federation): every round each client trains locally from the current head
    (Federation.begin, Federation.local, rng seeded per client and round), the first closes the round
    with the others' updates for it offered to it (Federation.offer; FedAvg in client order), MAX_ROUNDS
    rounds: every client averages the same set each round, as the live schedule has it. A round's
    head is put in use only if it passes the gate (federated.no_worse in Federation.close_round) on
    the clients' pooled held-out rows; the last head that passed scores the fold's validation and test
    rows (those nodes never trained), and with none the shipped detector's margin does. The validation
    runs choose the operating point like every detector's; they are not used otherwise. With
    gate="validation" (a stricter offline check, not what a node can do: described, not the row) the
    gate judges on the validation runs' labelled rows, another topology, instead."""
    from x0lab.anomaly import realtrain
    from x0node.anomaly import federated as fed

    chain = realtrain.chain_of(realtrain.RECIPES["held-loss"](train, val, inp, table))
    rows = _labelled(train, table)
    margin = chain_scores(chain, rows, inp)
    x_all = fed.head_inputs(margin, inp.own[rows], inp.agg[rows])
    y_all = (table.label[rows] == 1).astype(np.int64)
    keys = np.char.add(np.char.add(table.run[rows].astype(str), "|"), table.node[rows].astype(str))
    clients, hold = [], []
    for key in sorted(set(keys.tolist())):
        sel = np.flatnonzero(keys == key)
        sel = sel[np.argsort(table.t[rows[sel]], kind="stable")]
        tr, ho = fed.holdout_split(len(sel))
        clients.append(sel[tr])
        hold.append(sel[ho])
    ho_all = np.concatenate(hold) if hold else np.zeros(0, dtype=np.int64)
    if gate == "validation":
        vrows = _labelled(val, table)
        val_m = chain_scores(chain, vrows, inp)
        val_x = fed.head_inputs(val_m, inp.own[vrows], inp.agg[vrows])
        val_y = (table.label[vrows] == 1).astype(np.int64)
    if gate == "validation":
        gx, gy, gm = val_x, val_y, val_m
    else:
        gx, gy, gm = x_all[ho_all], y_all[ho_all], margin[ho_all]
    # the device's own rounds (Federation): the first client closes each round with its own update,
    # the others' are offered to it like peers' updates from the state layer, in client order
    federation = fed.Federation()
    passed = []
    for r in range(1, fed.MAX_ROUNDS + 1):  # the schedule's rounds 1, 2, ...; every client in each
        federation.begin(r)
        ups = [federation.local(x_all[c], y_all[c], np.random.default_rng([SEED, r, i]))
               for i, c in enumerate(clients[: fed.MAX_UPDATES_PER_ROUND]) if len(c)]
        for i, u in enumerate(ups[1:], start=1):
            federation.offer(i.to_bytes(4, "big"), u, r, r)  # sequence number r, offered in round r
        if federation.close_round(ups[0] if ups else None, gx, gy, gm):
            passed.append(r)
    in_use = federation.in_use
    FED_ROUNDS.append({"clients": len(clients), "train_rows": int(sum(len(c) for c in clients)),
                       "held_out_rows": int(len(ho_all)), "gate": gate, "rounds": fed.MAX_ROUNDS, "passed_gate": passed,
                       "in_use": in_use is not None})

    def score(r: np.ndarray, i: Inputs) -> np.ndarray:
        m = chain_scores(chain, r, i)
        if in_use is None:
            return m
        return fed.logits(in_use, fed.head_inputs(m, i.own[r], i.agg[r]))
    return score


LINKS_DOWN_DETECTORS = frozenset({"gbt_self", "gbt_nbr", "chain_gbt", "held_loss", "held_loss_mesh", "held_loss_links",
                                  "federated"})
"""Detectors whose inputs include the node's own links_down (the tree recipe); their cached fold
scores are keyed by it too."""
FULL_REFERENCE = frozenset({"held_loss", "chain_gbt", "gbt_nbr", "mlp_nbr", "gnn_shipped"})
"""Detectors also scored, with the same fold models, on the full-neighbour inputs."""
DETECTORS: dict[str, Fit] = {
    "held_loss": fit_recipe("held-loss"),
    "held_loss_mesh": fit_recipe("held-loss-mesh"),
    "held_loss_links": fit_recipe("held-loss-links"),
    "rules": fit_rules_shipped,
    "rules_tuned": fit_rules_tuned,
    "ewma_z": fit_ewma,
    "iforest": fit_iforest,
    "mlp_self": fit_mlp(False),
    "mlp_nbr": fit_mlp(True),
    "gbt_self": fit_gbt(False),
    "gbt_nbr": fit_gbt(True),
    "gnn_shipped": fit_shipped_gnn,
    "chain_gbt": fit_recipe("trees"),
    "federated": fit_federated,
}


# ------------------------------------------------------------------------------------------- thresholds, metrics
def best_threshold(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of score >= threshold."""
    y = np.asarray(y, dtype=bool)
    if not y.any() or len(score) == 0:
        return float(np.max(score, initial=0.0)) + 1e-9, 0.0
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    f1 = np.where(last, 2 * tp / (tp + fp + y.sum()), -1.0)
    k = int(np.argmax(f1))
    return float(s[k]), float(f1[k])


def topology_kind(topo: str) -> str:
    return topo.split(":")[0]


def folds(table: Table) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """(test topology, validation topology, train rows, validation rows, test rows): each topology
    kind (ring, grid, ladder, random) of the chaos runs in turn is the test fold with all its runs,
    the next one the validation fold, the rest train; then, when there are fault-free recordings,
    they are the test fold of the shipping split (validation = the last kind, train = the rest)."""
    kinds = np.array([topology_kind(t) for t in table.topo])
    quiet = table.fault_free
    names = sorted(set(kinds[~quiet].tolist()))
    out = []
    for k, test in enumerate(names):
        val = names[(k + 1) % len(names)]
        out.append((test, val, np.flatnonzero(~quiet & (kinds != test) & (kinds != val)),
                    np.flatnonzero(~quiet & (kinds == val)), np.flatnonzero(~quiet & (kinds == test))))
    if quiet.any():
        val = names[-1]
        out.append(("fault-free", val, np.flatnonzero(~quiet & (kinds != val)), np.flatnonzero(~quiet & (kinds == val)),
                    np.flatnonzero(quiet)))
    return out


def series_order(table: Table, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows (default all) ordered by (run, node, time), and where each node's series starts."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    keys = np.char.add(np.char.add(table.run[rows], "/"), table.node[rows])
    o = np.lexsort((table.t[rows], keys))
    k = keys[o]
    return rows[o], np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, dtype=bool)


def alarm_state(table: Table, alarms: np.ndarray, policy: AlarmPolicy,
                order: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per-tick verdicts -> the raised alarm after each tick (the runtime's AlarmState machine), per
    node series; rows outside `order` stay False."""
    rows, starts = order if order is not None else series_order(table)
    out = np.zeros(len(table), dtype=bool)
    out[rows] = alarm_series(policy, table.t[rows], alarms[rows], starts)
    return out


def _onsets(table: Table, state: np.ndarray, order: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(raised alarms, false alarms) as row masks. A raise is a tick whose alarm is up and was not on the
    node's previous tick: what a router acts on. A false alarm is a raise on a fault-free (label 0)
    tick. An alarm held on does not count again, but it detects nothing either (`_event_hits`), so
    holding an alarm never pays."""
    rows, starts = order
    s = state[rows]
    raises = np.zeros(len(table), dtype=bool)
    raises[rows] = s & (starts | ~np.r_[False, s[:-1]])
    return raises, raises & (table.label == 0)


def event_objective(table: Table, state: np.ndarray, order: tuple[np.ndarray, np.ndarray],
                    event_rows: list[np.ndarray]) -> tuple[float, float, float]:
    """(event F1, event recall, alarm precision) of an alarm state on the rows of `order`."""
    raises, false = _onsets(table, state, order)
    hits = sum(bool(raises[r].any()) for r in event_rows)
    recall = hits / len(event_rows) if event_rows else 0.0
    true = int((raises & (table.label != 0)).sum())
    nf = int(false.sum())
    prec = true / (true + nf) if true + nf else 0.0
    return (2 * recall * prec / (recall + prec) if recall + prec else 0.0), recall, prec


def _timely_rows(table: Table, i: int) -> np.ndarray:
    """The rows of event i whose raise detects it for the operating-point objective: a hard fault's
    rows within MAX_DETECT_TICKS ticks of its start (ticks as `_event_hits` counts them), any other's all."""
    rows = np.flatnonzero(table.event == i)
    e = table.events[i]
    return rows[table.t[rows] - e.start <= MAX_DETECT_TICKS * INTERVAL_S] if e.hard else rows


def choose_operating_point(table: Table, rows: np.ndarray, scores: np.ndarray,
                           policies: tuple[AlarmPolicy, ...] = POLICIES,
                           held_out_kind: str | None = None) -> tuple[float, AlarmPolicy, float]:
    """(threshold, policy, validation event F1) with the best event F1 on these (validation) rows;
    ties go to the higher threshold, then the earlier policy. Events of `held_out_kind` do not count.
    A hard fault counts as detected only by a raise within MAX_DETECT_TICKS of its start (the goal's
    own terms: a policy that waits for persistence pays for it here); any other fault by a raise at
    any time during it."""
    full = np.zeros(len(table))
    full[rows] = scores
    order = series_order(table, rows)
    runs = set(table.run[rows].tolist())
    event_rows = [_timely_rows(table, i) for i, e in enumerate(table.events)
                  if e.run in runs and e.kind != held_out_kind]
    cands = np.unique(np.quantile(scores, np.linspace(0.5, 1.0, N_THRESHOLDS)))[::-1] if len(scores) else np.zeros(1)
    best = (-1.0, float(cands[0]), policies[0])
    in_rows = np.zeros(len(table), dtype=bool)
    in_rows[rows] = True
    for thr in cands:
        alarms = (full >= thr) & in_rows
        for pol in policies:
            f, _, _ = event_objective(table, alarm_state(table, alarms, pol, order), order, event_rows)
            if f > best[0]:
                best = (f, float(thr), pol)
    return best[1], best[2], best[0]


@dataclass
class Predictions:
    scores: np.ndarray  # [R] every row's score from the fold that held its run out
    state: np.ndarray  # [R] alarm raised after the tick (operating point chosen on validation)
    per_tick: np.ndarray  # [R] the old recipe: score >= best-row-F1 threshold, every tick an alarm
    also: np.ndarray | None  # [R] the same fold models and operating points on the `also` inputs
    points: list[dict[str, Any]]  # per fold: threshold, policy, validation event F1
    val: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per fold: (validation rows, scores)


def _fold_key(table: Table, name: str, rows: tuple[np.ndarray, ...]) -> str:
    """What a fold's scores depend on: the detector, the training constants and every row of its train,
    validation and test sets (run, node, time, label, raw vector)."""
    import hashlib

    h = hashlib.sha256(f"{name}|{HOST_WIDE.tolist()}|{GBT_TREES}|{SEED}".encode())
    if name in LINKS_DOWN_DETECTORS:  # their inputs include links_down (replayed or recorded)
        h.update(b"links_down|" + np.ascontiguousarray(table.links_down, dtype=np.float64).tobytes())
    if name.startswith("held_loss") or name == "federated":  # the recipe's own choices
        from x0lab.anomaly import realtrain

        h.update(repr((realtrain.HELD_LOSS_MAX, realtrain.MESH_DISCOUNT, realtrain.MESH_RTT_CANDIDATES_MS,
                       realtrain.LOSS_LEVEL, realtrain.FWD_LEVEL)).encode())
    if name == "federated":
        from x0node.anomaly import federated as fed

        h.update(repr((fed.MARGIN_CLIP, fed.LEARNING_RATE, fed.LOCAL_STEPS, fed.MAX_LOCAL_ROWS, fed.MAX_UPDATE_NORM,
                       fed.MAX_WEIGHT_ROWS, fed.MAX_UPDATES_PER_ROUND, fed.MAX_ROUNDS, fed.MIN_HOLDOUT_ROWS,
                       fed.HOLDOUT_SHARE)).encode())
    for r in rows:
        r = np.sort(r)
        for a in (table.run[r], table.node[r]):
            h.update("\0".join(a.tolist()).encode())
        for a in (table.t[r], table.label[r].astype(np.float64), table.x[r]):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:24]


def cross_predict(table: Table, fit: Fit, train_inp: Inputs, test_inp: Inputs,
                  also: Inputs | None = None, cache: Any = None, name: str = "",
                  held_out_kind: str | None = None) -> Predictions:
    """Every row scored by the fold that held its run out; alarms through the fold's operating point
    (chosen on its validation runs); with `also`, the same fold models and operating points applied to
    those inputs too (the full-neighbour reference). With `cache` (a directory), the validation and
    test scores of a fold whose rows and detector are unchanged are read back instead of refitted
    (adding fault-free recordings refits only their fold); operating points are always chosen anew."""
    import pathlib

    n = len(table)
    p = Predictions(np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                    np.zeros(n, dtype=bool) if also is not None else None, [])
    for test, val, tr, va, te in folds(table):
        path = None
        if cache is not None and name:
            path = pathlib.Path(cache) / f"{name}-{test}-{'full' if also is not None else 'dep'}-" \
                f"{_fold_key(table, name, (tr, va, te))}.npz"
        if path is not None and path.exists():
            z = np.load(path, allow_pickle=False)
            sv, s, s_also = z["val"], z["scores"], z["also"] if also is not None else None
        else:
            score = fit(tr, va, train_inp, table)
            sv = score(va, train_inp)
            s = score(te, test_inp)
            s_also = score(te, also) if also is not None else None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, val=sv, scores=s, also=s_also if s_also is not None else np.zeros(0))
        lab = table.label[va] >= 0
        thr_tick, _ = best_threshold(sv[lab], table.label[va][lab] == 1)
        thr, pol, vf = choose_operating_point(table, va, sv, held_out_kind=held_out_kind)
        point = {"test": test, "validation": val, "threshold": thr, "policy": pol.as_dict(),
                 "validation_event_f1": round(vf, 4)}
        p.points.append({**point, "threshold": round(thr, 4)})
        p.val.append((va, sv))
        p.scores[te] = s
        order = series_order(table, te)
        tick = np.zeros(n, dtype=bool)
        tick[te] = s >= thr
        p.state |= alarm_state(table, tick, pol, order)
        p.per_tick[te] = s >= thr_tick
        if s_also is not None and p.also is not None:
            tick_also = np.zeros(n, dtype=bool)
            tick_also[te] = s_also >= thr
            p.also |= alarm_state(table, tick_also, pol, order)
    return p


FA_BUDGET = 1.0
"""False alarms per node-hour allowed by the budget operating point on the validation runs' fault-free
ticks (about one node-hour per topology kind: one false alarm there is already ~1 per node-hour, so a
lower budget could not be resolved on validation)."""


def budget_objective(table: Table, state: np.ndarray, order: tuple[np.ndarray, np.ndarray],
                     hard_events: list[tuple[float, np.ndarray]]) -> tuple[float, float]:
    """(hard-fault recall within MAX_DETECT_TICKS, false alarms per node-hour) of an alarm state on the
    rows of `order` (validation)."""
    raises, false = _onsets(table, state, order)
    hits = 0
    for start, rows in hard_events:
        fired = rows[raises[rows]]
        hits += bool(len(fired)) and float(table.t[fired].min()) - start <= MAX_DETECT_TICKS * INTERVAL_S
    clean = np.zeros(len(table), dtype=bool)
    clean[order[0]] = table.label[order[0]] == 0
    h = clean.sum() * INTERVAL_S / 3600.0
    return (hits / len(hard_events) if hard_events else 0.0), (float(false.sum()) / h if h else 0.0)


def hard_events(table: Table, rows: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(start, rows) of every hard fault in the runs these rows belong to."""
    runs = set(table.run[rows].tolist())
    return [(e.start, np.flatnonzero(table.event == i)) for i, e in enumerate(table.events) if e.run in runs and e.hard]


def choose_budget_point(table: Table, rows: np.ndarray, scores: np.ndarray, budget: float = FA_BUDGET,
                        policies: tuple[AlarmPolicy, ...] = POLICIES) -> tuple[float, AlarmPolicy, float, float]:
    """(threshold, policy, validation hard recall within 2 ticks, validation false alarms per node-hour):
    the best hard-fault recall within MAX_DETECT_TICKS among the operating points whose false alarms
    on these (validation) rows stay within `budget` per node-hour; the fewest false alarms when none
    does. Ties go to the higher threshold, then the earlier policy."""
    full = np.zeros(len(table))
    full[rows] = scores
    order = series_order(table, rows)
    hard = hard_events(table, rows)
    cands = np.unique(np.quantile(scores, np.linspace(0.5, 1.0, N_THRESHOLDS)))[::-1] if len(scores) else np.zeros(1)
    in_rows = np.zeros(len(table), dtype=bool)
    in_rows[rows] = True
    best: tuple[tuple[float, float], float, AlarmPolicy, float, float] | None = None
    for thr in cands:
        alarms = (full >= thr) & in_rows
        for pol in policies:
            rec, fa = budget_objective(table, alarm_state(table, alarms, pol, order), order, hard)
            key = (rec, -fa) if fa <= budget else (-1.0, -fa)
            if best is None or key > best[0]:
                best = (key, float(thr), pol, rec, fa)
    assert best is not None
    return best[1], best[2], best[3], best[4]


def rechoose_budget(table: Table, pred: Predictions, budget: float = FA_BUDGET) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The same fold scores with every fold's operating point chosen by `choose_budget_point` on its
    validation runs: (alarm state, points)."""
    state = np.zeros(len(table), dtype=bool)
    points = []
    for (test, val, _tr, _va, te), (va, sv) in zip(folds(table), pred.val, strict=True):
        thr, pol, rec, fa = choose_budget_point(table, va, sv, budget)
        tick = np.zeros(len(table), dtype=bool)
        tick[te] = pred.scores[te] >= thr
        state |= alarm_state(table, tick, pol, series_order(table, te))
        points.append({"test": test, "validation": val, "threshold": round(thr, 4), "policy": pol.as_dict(),
                       "validation_hard_within_2": round(rec, 4), "validation_false_alarms_per_node_hour": round(fa, 3)})
    return state, points


TRADEOFF_OFFSETS = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0)


TRADEOFF_POLICIES = (AlarmPolicy(1, 1), AlarmPolicy(1, 10), AlarmPolicy(2, 1), AlarmPolicy(2, 10), AlarmPolicy(3, 10))
"""Alarm policies of the persistence/hysteresis trade-off (raise after r anomalous ticks, clear after c)."""
POLICY_OFFSETS = (0.0, 1.0, 2.0, 3.0)
TRADEOFF_KEYS = ("event_recall", "hard_event_recall", "hard_recall_within_2", "false_alarms_per_node_hour",
                 "false_alarms_per_node_hour_after_start", "false_alarms_between_faults_per_node_hour")


def _moved(table: Table, pred: Predictions, off: float, policy: AlarmPolicy | None) -> np.ndarray:
    """The alarm state with every fold's threshold moved by `off` and, given one, this policy instead
    of each fold's own."""
    state = np.zeros(len(table), dtype=bool)
    for (_t, _v, _tr, _va, te), pt in zip(folds(table), pred.points, strict=True):
        tick = np.zeros(len(table), dtype=bool)
        tick[te] = pred.scores[te] >= float(pt["threshold"]) + off
        state |= alarm_state(table, tick, policy or AlarmPolicy.from_dict(pt["policy"]), series_order(table, te))
    return state


def tradeoff(table: Table, pred: Predictions, offsets: tuple[float, ...] = TRADEOFF_OFFSETS) -> list[dict[str, Any]]:
    """The shipped recipe's trade-off, described (never used to choose): every fold's threshold moved by
    the same offset (alarm policies kept), judged on the test folds as usual."""
    out = []
    for off in offsets:
        r = judge(table, _moved(table, pred, off, None), boot=False)
        out.append({"offset": off, **{k: r[k] for k in TRADEOFF_KEYS}})
    return out


def policy_tradeoff(table: Table, pred: Predictions, policies: tuple[AlarmPolicy, ...] = TRADEOFF_POLICIES,
                    offsets: tuple[float, ...] = POLICY_OFFSETS) -> list[dict[str, Any]]:
    """Persistence and hysteresis against false alarms, described (never used to choose): each policy
    in place of every fold's own, at every fold's threshold moved by each offset, on the test folds."""
    out = []
    for pol in policies:
        for off in offsets:
            r = judge(table, _moved(table, pred, off, pol), boot=False)
            out.append({"raise_ticks": pol.raise_ticks, "clear_ticks": pol.clear_ticks, "offset": off,
                        **{k: r[k] for k in TRADEOFF_KEYS}})
    return out


def _subset(table: Table, keep: np.ndarray) -> Table:
    idx = np.flatnonzero(keep)
    n = len(table)
    cols = {k: v if len(v) != n else (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx])
            for k, v in table.__dict__.items() if k != "events"}  # a column not kept (empty) stays empty
    return Table(**cols, events=table.events)


def leave_one_kind_out(table: Table, name: str = "chain_gbt", cache: Any = None) -> dict[str, dict[str, Any]]:
    """Per fault kind: the usual folds, with that kind's fault rows ignored in training and its events
    left out of the validation objective, so no model or operating point has seen the kind; judged on
    that kind's events in the test folds (raise during the fault), beside the same kind's figures
    from the normal protocol."""
    from threadpoolctl import threadpool_limits

    table = _subset(table, ~table.fault_free)  # recall only: the fault-free recordings play no part
    dep = inputs(table, "deployed")
    out: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=1):
        base = cross_predict(table, DETECTORS[name], dep, dep, cache=cache, name=name)
        hit0, ticks0 = _event_hits(table, base.state)
        for kind in sorted({e.kind for e in table.events}):
            idx = np.array([i for i, e in enumerate(table.events) if e.kind == kind])
            masked = Table(**{**table.__dict__, "label": np.where(np.isin(table.event, idx), -1, table.label)})
            pred = cross_predict(masked, DETECTORS[name], dep, dep, cache=cache, name=f"{name}-without-{kind}",
                                 held_out_kind=kind)
            hit, ticks = _event_hits(table, pred.state)
            within = hit & (np.nan_to_num(ticks, nan=1e9) <= MAX_DETECT_TICKS)
            within0 = hit0 & (np.nan_to_num(ticks0, nan=1e9) <= MAX_DETECT_TICKS)
            out[kind] = {"events": int(len(idx)), "recall_held_out": round(float(hit[idx].mean()), 3),
                         "within_2_held_out": round(float(within[idx].mean()), 3),
                         "recall_seen": round(float(hit0[idx].mean()), 3),
                         "within_2_seen": round(float(within0[idx].mean()), 3)}
    return out


def _first_raises(table: Table, raises: np.ndarray) -> np.ndarray:
    """Per event: the row of its first raise (the earliest of its rows that raised), -1 when missed."""
    first = np.full(len(table.events), -1)
    for ei in range(len(table.events)):
        rows = np.flatnonzero(table.event == ei)
        fired = rows[raises[rows]]
        if len(fired):
            first[ei] = fired[np.argmin(table.t[fired])]
    return first


def _event_hits(table: Table, alarms: np.ndarray, raises: np.ndarray | None = None,
                interval_s: float = INTERVAL_S) -> tuple[np.ndarray, np.ndarray]:
    """Per event: detected (an alarm raised on one of its rows between its start and end; an alarm
    already up when it began does not count) and ticks to that first raise (nan when missed)."""
    if raises is None:
        raises, _ = _onsets(table, alarms, series_order(table))
    first = _first_raises(table, raises)
    hit = first >= 0
    ticks = np.full(len(first), np.nan)
    for ei in np.flatnonzero(hit):
        ticks[ei] = max(1.0, np.ceil((float(table.t[first[ei]]) - table.events[ei].start) / interval_s))
    return hit, ticks


def _evaluations_to_raise(table: Table, raises: np.ndarray) -> np.ndarray:
    """Per event: how many of the raising node's own evaluations (ticks) there were from the fault's
    start up to and including its first raise (nan when missed). `_event_hits` counts ticks as
    elapsed time / the nominal tick; on a loaded host a daemon's ticks come later than that (jitter
    and delays), so this is the same detection counted in the evaluations the node really made."""
    first = _first_raises(table, raises)
    out = np.full(len(table.events), np.nan)
    for ei in np.flatnonzero(first >= 0):
        f = first[ei]
        mine = (table.run == table.run[f]) & (table.node == table.node[f])
        out[ei] = float((mine & (table.t > table.events[ei].start) & (table.t <= table.t[f])).sum())
    return out


def _row_f1(y: np.ndarray, a: np.ndarray) -> tuple[float, float, float]:
    tp = int((y & a).sum())
    fp = int((~y & a).sum())
    fn = int((y & ~a).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def judge(table: Table, alarms: np.ndarray, rng: np.random.Generator | None = None, boot: bool = True,
          interval_s: float = INTERVAL_S) -> dict[str, Any]:
    """The figures of one alarm series (raised state per row; a per-tick verdict is the per-tick policy);
    `boot=False` skips the bootstrap CIs (trade-off tables); `interval_s`: the tick the rows stand for."""
    rng = rng or np.random.default_rng(SEED)
    quiet = table.fault_free
    chaos = ~quiet
    lab = (table.label >= 0) & chaos
    y = table.label == 1
    clean = table.label == 0
    order = series_order(table)
    raises, onsets = _onsets(table, alarms, order)
    hit, ticks = _event_hits(table, alarms, raises, interval_s)
    hard = np.array([e.hard for e in table.events], dtype=bool)
    within = hit & (np.nan_to_num(ticks, nan=1e9) <= MAX_DETECT_TICKS)
    evals = _evaluations_to_raise(table, raises)
    within_evals = hit & (np.nan_to_num(evals, nan=1e9) <= MAX_DETECT_TICKS)

    def hours(mask: np.ndarray) -> float:
        return float(mask.sum() * interval_s / 3600.0)

    def rate(mask: np.ndarray) -> float | None:
        h = hours(clean & mask)
        return round(float((onsets & mask).sum() / h), 4) if h else None

    since = np.zeros(len(table))
    rows_o, starts_o = order
    first_t = table.t[rows_o][np.maximum.accumulate(np.where(starts_o, np.arange(len(rows_o)), 0))]
    since[rows_o] = table.t[rows_o] - first_t
    settled = since >= LINK_CHANGES_WINDOW_S  # the daemon's start has left the link-change window
    true_raises = int((raises & chaos & (table.label != 0)).sum())
    false_chaos = int((onsets & chaos).sum())
    p, r, f1 = _row_f1(y[lab], alarms[lab])
    out: dict[str, Any] = {
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
        "event_recall": round(float(hit.mean()) if len(hit) else 0.0, 4),
        "hard_event_recall": round(float(hit[hard].mean()) if hard.any() else 0.0, 4),
        "hard_recall_within_2": round(float(within[hard].mean()) if hard.any() else 0.0, 4),
        "hard_recall_within_2_evaluations": round(float(within_evals[hard].mean()) if hard.any() else 0.0, 4),
        "detect_ticks_p50": float(np.nanmedian(ticks)) if hit.any() else None,
        "false_alarms_per_node_hour": rate(quiet),
        "false_alarms_between_faults_per_node_hour": rate(chaos),
        "false_alarms_per_node_hour_after_start": rate(quiet & settled),
        "alarm_precision": round(true_raises / (true_raises + false_chaos), 4) if true_raises + false_chaos else 0.0,
        "false_alarms_fault_free": int((onsets & quiet).sum()),
        "fault_free_node_hours": round(hours(clean & quiet), 3),
        "between_faults_node_hours": round(hours(clean & chaos), 3),
        "events": int(len(hit)), "hard_events": int(hard.sum()),
    }
    if not boot:
        return out
    # bootstrap: events for recall/ticks; (run, node) series for F1 and false alarms, chaos and
    # fault-free series resampled separately (per-series counts, so a resample is one matrix product)
    keys = np.char.add(np.char.add(table.run, "/"), table.node)
    _, series = np.unique(keys, return_inverse=True)
    g = int(series.max()) + 1 if len(series) else 0
    per = np.zeros((g, 6))
    for j, m in enumerate((y & alarms & lab, ~y & alarms & lab, y & ~alarms & lab, onsets & chaos, clean & chaos,
                           onsets & quiet)):
        np.add.at(per, (series, j), m.astype(float))
    clean_q = np.bincount(series, weights=(clean & quiet).astype(float), minlength=g)
    is_quiet = np.zeros(g, dtype=bool)
    is_quiet[series[quiet]] = True

    def resample(sel: np.ndarray) -> np.ndarray:
        k = int(sel.sum())
        w = np.zeros((BOOTSTRAP, g))
        if k:
            w[:, sel] = rng.multinomial(k, np.full(k, 1.0 / k), size=BOOTSTRAP)
        return w

    wc, wq = resample(~is_quiet), resample(is_quiet)
    tp, fp, fn, on_c, clean_c, _ = (wc @ per).T
    on_q = wq @ per[:, 5]
    h_q = wq @ clean_q * interval_s / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1s = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        fa_c = np.where(clean_c > 0, on_c / (clean_c * interval_s / 3600.0), np.nan)
        fa_q = np.where(h_q > 0, on_q / h_q, np.nan)
    ne = len(hit)
    ev = rng.integers(0, ne, (BOOTSTRAP, ne)) if ne else np.zeros((BOOTSTRAP, 0), dtype=int)
    hits = hit[ev]
    hards = hard[ev]
    tks = np.where(hits, ticks[ev], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = {
            "f1": f1s, "event_recall": hits.mean(axis=1) if ne else np.zeros(BOOTSTRAP),
            "hard_event_recall": np.where(hards.sum(axis=1) > 0, (hits & hards).sum(axis=1) / np.maximum(hards.sum(axis=1), 1), 0.0),
            "hard_recall_within_2": np.where(hards.sum(axis=1) > 0, (within[ev] & hards).sum(axis=1)
                                             / np.maximum(hards.sum(axis=1), 1), 0.0),
            "hard_recall_within_2_evaluations": np.where(hards.sum(axis=1) > 0, (within_evals[ev] & hards).sum(axis=1)
                                                         / np.maximum(hards.sum(axis=1), 1), 0.0),
            "detect_ticks_p50": np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in tks]),
            "false_alarms_per_node_hour": fa_q,
            "false_alarms_between_faults_per_node_hour": fa_c,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no detection in a resample: NaN ticks
        out["ci95"] = {k: ([_r(np.nanpercentile(v, 2.5)), _r(np.nanpercentile(v, 97.5))] if np.isfinite(v).any()
                           else None) for k, v in boots.items()}
    if out["false_alarms_fault_free"] == 0 and out["fault_free_node_hours"]:
        # none seen: the one-sided 95 % upper bound of a Poisson rate is 3 / exposure (rule of three)
        out["ci95"]["false_alarms_per_node_hour"] = [0.0, round(3.0 / out["fault_free_node_hours"], 4)]
    return out


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def per_kind(table: Table, alarms: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per fault kind (loss split at 20 %, the hard-fault line): events, recall, ticks p50, recall
    within MAX_DETECT_TICKS, and `held_down_2`: the share of its events with a neighbour held down
    (links_down > 0) on one of their rows within MAX_DETECT_TICKS of the start, whatever any detector
    said (what the held-loss signal could catch in time)."""
    hit, ticks = _event_hits(table, alarms)
    within = hit & (np.nan_to_num(ticks, nan=1e9) <= MAX_DETECT_TICKS)
    has_down = len(table.links_down) == len(table)
    out: dict[str, dict[str, Any]] = {}

    def name(e: Any) -> str:
        return e.kind if e.kind != "loss" else ("loss>=20%" if e.hard else "loss<20%")

    for kind in sorted({name(e) for e in table.events}):
        idx = [i for i, e in enumerate(table.events) if name(e) == kind]
        visible = []
        for i in idx:
            rows = _timely_rows(table, i) if table.events[i].hard else np.flatnonzero(table.event == i)
            rows = rows[table.t[rows] - table.events[i].start <= MAX_DETECT_TICKS * INTERVAL_S]
            visible.append(bool(has_down and (table.links_down[rows] > 0).any()))
        out[kind] = {"events": len(idx), "recall": round(float(hit[idx].mean()), 3),
                     "ticks_p50": float(np.nanmedian(ticks[idx])) if hit[idx].any() else None,
                     "within_2": round(float(within[idx].mean()), 3), "held_down_2": round(float(np.mean(visible)), 3)}
    return out


def evaluate(table: Table, names: list[str] | None = None, cache: Any = None) -> dict[str, Any]:
    """Every detector through the protocol; plus the shipped-on-device rows (live verdicts recorded by
    the daemons) and, for every detector that uses neighbours, the full-neighbour reference. One
    thread for scikit-learn's OpenMP pools: on a loaded shared host their spinning threads made the
    evaluation many times slower than single-threaded."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _evaluate(table, names, cache)


def fault_free_by_run(table: Table, alarms: np.ndarray) -> dict[str, dict[str, Any]]:
    """False alarms per node-hour of each fault-free recording apart (hosts differ in load)."""
    _, onsets = _onsets(table, alarms, series_order(table))
    out = {}
    for run in sorted(set(table.run[table.fault_free].tolist())):
        m = (table.run == run) & (table.label == 0)
        h = float(m.sum() * INTERVAL_S / 3600.0)
        n = int((onsets & m).sum())
        out[run] = {"node_hours": round(h, 3), "false_alarms": n, "per_node_hour": round(n / h, 4) if h else None}
    return out


def judge_recorded_with(table: Table, alarms: np.ndarray, version: int = 3) -> dict[str, Any] | None:
    """`judge` on the rows recorded by daemons of features version >= `version` alone (their runs' events
    only; bootstrap CIs as everywhere); None when there are none."""
    if len(table.version) != len(table):
        return None
    keep = table.version >= version
    if not keep.any():
        return None
    runs = set(table.run[keep].tolist())
    keep = np.isin(table.run, list(runs))  # whole runs: every row of a run that has such rows
    idx = np.flatnonzero(keep)
    new_index = {i: j for j, i in enumerate(k for k, e in enumerate(table.events) if e.run in runs)}
    sub = _subset(table, keep)
    sub.events = [e for e in table.events if e.run in runs]
    sub.event = np.array([new_index.get(int(v), -1) for v in table.event[idx]], dtype=np.int64)
    r = judge(sub, alarms[idx])
    return {**{k: r[k] for k in KEYS}, "ci95": r["ci95"], "events": len(sub.events),
            "hard_events": sum(e.hard for e in sub.events), "runs": sorted(runs),
            "fault_free_node_hours": r.get("fault_free_node_hours")}


DEVICE_TICK_EVERY = 10
"""The device's default tick (30 s) is every 10th recorded tick (3 s)."""


def at_device_tick(table: Table, pred: Predictions, every: int = DEVICE_TICK_EVERY, phase: int = 0) -> dict[str, Any]:
    """The same fold scores, operating points and policies judged on every `every`-th tick of each
    node's series (from its `phase`-th), each standing for `every` recorded ticks: the detector as
    a node ticking that much slower would run it. Valid only for a detector whose inputs do not
    depend on the tick (held_loss: links_down is the link state machine's, sampled every 3 s
    whatever the tick); RTT and loss are averaged since the previous tick, so other detectors'
    inputs would differ."""
    rows, starts = series_order(table)
    idx = np.arange(len(rows))
    k = idx - np.maximum.accumulate(np.where(starts, idx, 0))
    keep = np.zeros(len(table), dtype=bool)
    keep[rows[k % every == phase]] = True
    state = np.zeros(len(table), dtype=bool)
    for (_t, _v, _tr, _va, te), pt in zip(folds(table), pred.points, strict=True):
        te = te[keep[te]]
        tick = np.zeros(len(table), dtype=bool)
        tick[te] = pred.scores[te] >= float(pt["threshold"])
        state |= alarm_state(table, tick, AlarmPolicy.from_dict(pt["policy"]), series_order(table, te))
    sub = _subset(table, keep)
    return {"every": every, "interval_s": INTERVAL_S * every,
            **judge(sub, state[keep], interval_s=INTERVAL_S * every)}


SOURCE_WINDOW_S = 6.0
"""Another node's false alarm within this many seconds (same recording) makes one "mesh-wide"."""


def false_alarm_sources(table: Table, alarms: np.ndarray, inp: Inputs) -> dict[str, Any]:
    """Where the false alarms on the fault-free recordings come from: how many were raised while a
    neighbour's held loss was still down (links_down > 0), with the node's RTT, worst hello loss or
    link-change count above its fault-free median, within the daemon's first LINK_CHANGES_WINDOW_S,
    together with another node of the same recording (within SOURCE_WINDOW_S: the shared host
    stalling every daemon, not one node), and how many lasted a single tick."""
    order = series_order(table)
    _, onsets = _onsets(table, alarms, order)
    idx = np.flatnonzero(onsets & table.fault_free)
    n = len(idx)
    if not n:
        return {"false_alarms": 0}
    quiet = table.fault_free
    rows_o, starts_o = order
    pos = np.empty(len(table), dtype=np.int64)
    pos[rows_o] = np.arange(len(rows_o))
    first_t = table.t[rows_o][np.maximum.accumulate(np.where(starts_o, np.arange(len(rows_o)), 0))]
    since = np.zeros(len(table))
    since[rows_o] = table.t[rows_o] - first_t
    together = 0
    for i in idx:
        same = idx[(table.run[idx] == table.run[i]) & (table.node[idx] != table.node[i])]
        together += bool((np.abs(table.t[same] - table.t[i]) <= SOURCE_WINDOW_S).any())
    nxt = pos[idx] + 1
    one_tick = np.ones(n, dtype=bool)
    ok = nxt < len(rows_o)
    one_tick[ok] = starts_o[nxt[ok]] | ~alarms[rows_o[np.minimum(nxt, len(rows_o) - 1)]][ok]
    out: dict[str, Any] = {"false_alarms": n}
    for f in ("rtt_ms", "loss_max", "link_changes"):
        j = FEATURES.index(f)
        out[f"{f}_above_median"] = round(float((inp.xs[idx, j] > np.median(inp.xs[quiet, j])).mean()), 3)
    out |= {"links_down": round(float((table.links_down[idx] > 0).mean()), 3) if len(table.links_down) else None,
            "first_300_s": round(float((since[idx] < LINK_CHANGES_WINDOW_S).mean()), 3),
            "with_another_node": round(together / n, 3), "single_tick": round(float(one_tick.mean()), 3)}
    return out


def _evaluate(table: Table, names: list[str] | None, cache: Any) -> dict[str, Any]:
    dep = inputs(table, "deployed")
    full = inputs(table, "full")
    rows: dict[str, Any] = {}
    alarms_by: dict[str, np.ndarray] = {}
    ref: dict[str, Any] = {}
    points: dict[str, Any] = {}
    trade: list[dict[str, Any]] = []
    ptrade: list[dict[str, Any]] = []
    by_run: dict[str, Any] = {}
    recorded_v3: dict[str, Any] | None = None
    sources: dict[str, Any] = {}
    FED_ROUNDS.clear()
    fed_folds: list[dict[str, Any]] = []
    for name in names or list(DETECTORS):
        # federated: always fitted (about 30 s), so what each fold's rounds did is known
        pred = cross_predict(table, DETECTORS[name], dep, dep, full if name in FULL_REFERENCE else None,
                             cache=None if name == FEDERATED else cache, name=name)
        if name == FEDERATED:
            fed_folds = [{**pt, **info} for pt, info in zip(pred.points, FED_ROUNDS, strict=False)]
        if name in (SHIPPED, FEDERATED):  # also at the point the device would use (gate_point_state)
            rows[name + GATE_POINT_SUFFIX] = judge(table, gate_point_state(table, pred.scores))
        rows[name] = judge(table, pred.state)
        alarms_by[name] = pred.state
        if name in (SHIPPED, "chain_gbt"):
            sources[name] = false_alarm_sources(table, pred.state, dep)
        points[name] = pred.points
        if name == SHIPPED:  # before: the old recipe (best row-F1 threshold, every anomalous tick an alarm)
            rows[SHIPPED + PER_TICK_SUFFIX] = judge(table, pred.per_tick)
            trade = tradeoff(table, pred)
            ptrade = policy_tradeoff(table, pred)
            by_run = fault_free_by_run(table, pred.state)
            recorded_v3 = judge_recorded_with(table, pred.state, 3)
            budget_state, points[SHIPPED + BUDGET_SUFFIX] = rechoose_budget(table, pred)
            if SHIPPED == "held_loss":
                rows[SHIPPED + DEVICE_TICK_SUFFIX] = at_device_tick(table, pred)
            rows[SHIPPED + BUDGET_SUFFIX] = judge(table, budget_state)
        if pred.also is not None:
            ref[name] = judge(table, pred.also)
    # the verdicts the running daemons gave, every anomalous tick an alarm (chaos runs: the GNN chain
    # shipped when they were recorded; fault-free recordings: the tree chain shipped then)
    rows["daemon_live"] = judge(table, table.live_alarm.copy())
    # observe mode as the device runs it (observe.py), judged by the schedule: where these alarms would take it
    from x0lab.anomaly.observe_replay import replay

    observe = {"daemon_live": replay(table, table.live_alarm)}
    if SHIPPED in alarms_by:
        observe[SHIPPED] = replay(table, alarms_by[SHIPPED])
    no_nbr = float(np.mean(dep.mask.sum(axis=1) == 0))
    return {"rows": rows, "full_neighbour": ref, "alarms": alarms_by, "operating_points": points,
            "tradeoff": trade, "policy_tradeoff": ptrade, "fault_free_by_run": by_run, "observe_mode": observe,
            "recorded_v3": recorded_v3,
            "false_alarm_sources": sources, "federated_folds": fed_folds,
            "per_kind": per_kind(table, alarms_by[SHIPPED]) if SHIPPED in alarms_by else {},
            "dataset": {"rows": int(len(table)), "fault_free_rows": int(table.fault_free.sum()), "labelled": int((table.label >= 0).sum()),
                        "positive": int((table.label == 1).sum()), "runs": sorted(set(table.run.tolist())),
                        "topologies": sorted(set(table.topo.tolist())), "events": len(table.events),
                        "rows_without_neighbour_data": round(no_nbr, 4), "interval_s": INTERVAL_S,
                        "features": list(FEATURES)}}


# ------------------------------------------------------------------------------------------- command line
SHIPPED = "held_loss"
"""The detector the bundle ships (trees.py; `x0node model fit-real`): its row is the headline."""
PER_TICK_SUFFIX = "_per_tick"
BUDGET_SUFFIX = "_fa_budget"
"""The shipped detector's scores with the operating point chosen for hard-fault recall within 2 ticks
under a false-alarm budget (choose_budget_point) instead of event F1."""
DEVICE_TICK_SUFFIX = "_at_30s_tick"
"""The shipped detector judged at the device's default 30 s tick (at_device_tick)."""
KEYS = ("f1", "event_recall", "hard_event_recall", "hard_recall_within_2", "hard_recall_within_2_evaluations",
        "detect_ticks_p50",
        "false_alarms_per_node_hour", "false_alarms_per_node_hour_after_start",
        "false_alarms_between_faults_per_node_hour", "alarm_precision")


FEDERATED = "federated"
"""Federated fine-tuning of the final layer on top of the shipped detector (fit_federated)."""
GATE_POINT_SUFFIX = "_at_gate_point"
"""A detector's fold scores judged at 0 (the shipped margin's own threshold, the federated gate's
point: what a device running the head would use) with the shipped bundle's alarm policy, instead of
the operating point chosen on validation. Computed for the shipped detector and `federated`."""


def gate_point_state(table: Table, scores: np.ndarray) -> np.ndarray:
    """Alarms of scores >= 0 through the shipped bundle's alarm policy (per-tick when it has none)."""
    from x0node.anomaly.bundle import load_bundle

    doc = load_bundle().meta.get("alarm")
    policy = AlarmPolicy.from_dict(doc) if doc is not None else PER_TICK
    return alarm_state(table, scores >= 0.0, policy, series_order(table))
FED_COMPARE = ("f1", "hard_recall_within_2", "event_recall", "false_alarms_per_node_hour")
"""What `federated` must not lose against the shipped detector to count as an improvement (it must also
win on one of them): F1, hard faults within 2 ticks, event recall, fault-free false alarms (lower)."""


def _compare(f: dict[str, Any], s: dict[str, Any]) -> tuple[dict[str, float], bool]:
    delta = {}
    for k in FED_COMPARE:
        if f[k] is not None and s[k] is not None:
            delta[k] = round(f[k] - s[k], 4)
    better = {k: (d < 0 if k == "false_alarms_per_node_hour" else d > 0) for k, d in delta.items()}
    worse = {k: (d > 0 if k == "false_alarms_per_node_hour" else d < 0) for k, d in delta.items()}
    return delta, bool(any(better.values()) and not any(worse.values()))


def federated_verdict(rows: dict[str, Any]) -> dict[str, Any] | None:
    """The `federated` object of the last-line JSON: its figures, the deltas against the shipped
    detector and whether it improves on it (no worse on FED_COMPARE and better on one), both at the
    operating points chosen on validation and at the gate's point (GATE_POINT_SUFFIX); `improves` only
    when it does at both."""
    if FEDERATED not in rows or SHIPPED not in rows:
        return None
    f, s = rows[FEDERATED], rows[SHIPPED]
    delta, better = _compare(f, s)
    out = {**{k: f[k] for k in KEYS}, "ci95": f["ci95"], "delta_vs_shipped": delta, "improves": better}
    fg, sg = rows.get(FEDERATED + GATE_POINT_SUFFIX), rows.get(SHIPPED + GATE_POINT_SUFFIX)
    if fg is not None and sg is not None:
        dg, bg = _compare(fg, sg)
        out["at_gate_point"] = {**{k: fg[k] for k in KEYS}, "ci95": fg["ci95"], "delta_vs_shipped": dg,
                                "improves": bg}
        out["improves"] = better and bg
    return out


def default_data_dir() -> Any:
    from x0node.anomaly.bundle import SOURCE_MODEL_DIR

    return SOURCE_MODEL_DIR / "realfaults"


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The last-line JSON: the shipped detector's figures, then one object per baseline and the
    as-deployed / full-neighbour pair."""
    rows = res["rows"]
    head = rows[SHIPPED]
    out: dict[str, Any] = {"detector": SHIPPED, **{k: head[k] for k in KEYS}, "precision": head["precision"],
                           "recall": head["recall"], "ci95": head["ci95"],
                           "false_alarms_fault_free": head["false_alarms_fault_free"],
                           "fault_free_node_hours": head["fault_free_node_hours"],
                           "between_faults_node_hours": head["between_faults_node_hours"], "events": head["events"],
                           "operating_points": res.get("operating_points", {}).get(SHIPPED),
                           "operating_points" + BUDGET_SUFFIX: res.get("operating_points", {}).get(SHIPPED + BUDGET_SUFFIX),
                           "fault_free_by_run": res.get("fault_free_by_run"),
                           "recorded_v3": res.get("recorded_v3"),
                           "false_alarm_sources": res.get("false_alarm_sources"), "per_kind": res.get("per_kind"),
                           "tradeoff": res.get("tradeoff"), "policy_tradeoff": res.get("policy_tradeoff"),
                           "observe_mode": res.get("observe_mode")}
    out["baselines"] = {name: {**{k: r[k] for k in KEYS}, "ci95": r["ci95"]} for name, r in rows.items()
                        if name != SHIPPED}
    fv = federated_verdict(rows)
    if fv is not None:
        out["federated"] = {**fv, "folds": res.get("federated_folds")}
    full = res["full_neighbour"].get(SHIPPED)
    if full is not None:
        out["as_deployed_f1"] = head["f1"]
        out["full_neighbour_f1"] = full["f1"]
        out["as_deployed_gap_f1"] = round(full["f1"] - head["f1"], 4)
    out["dataset"] = {k: v for k, v in res["dataset"].items() if k != "features"}
    return out


def print_table(res: dict[str, Any]) -> None:
    ds = res["dataset"]
    for name, o in (res.get("observe_mode") or {}).items():
        print(f"observe mode judged by the schedule, {name}: {o['alarms_judged']} alarms judged "
              f"({o['alarms_real']} real, precision {o['precision']}), {o['alarms_unjudged']} unjudged; "
              f"{o['faults_detected']} of {o['faults']} node-faults detected (recall {o['recall']}); "
              f"phases reached {o['phases']}")
    print(f"real-fault dataset: {ds['rows']} node-ticks ({ds['fault_free_rows']} from fault-free recordings; "
          f"{ds['labelled']} labelled, {ds['positive']} under a fault) from {len(ds['runs'])} runs on "
          f"{', '.join(ds['topologies'])}; {ds['events']} fault events; tick {ds['interval_s']:.0f} s; "
          f"{ds['rows_without_neighbour_data'] * 100:.1f} % of rows had no neighbour data")
    print("folds by topology kind: test = one kind, operating point (threshold, alarm policy) on the next, train on "
          "the rest; fault-free recordings only judged; 95 % bootstrap CIs")
    print("FA/node-h: false alarms per fault-free node-hour (fault-free recordings); between: on the fault-free "
          "ticks of the chaos runs; alarm prec.: raised alarms that were a fault")
    hdr = (f"{'detector':<26} {'f1':>6} {'f1 95% CI':>15} {'ev.recall':>9} {'CI':>15} {'hard':>6} {'hard<=2':>7} "
           f"{'ticks':>5} {'FA/node-h':>9} {'CI':>15} {'between':>8} {'CI':>13} {'alarm prec.':>11}")
    print(hdr)

    def line(name: str, r: dict[str, Any]) -> None:
        ci = r["ci95"]
        tk = "-" if r["detect_ticks_p50"] is None else f"{r['detect_ticks_p50']:.0f}"
        fa = "-" if r["false_alarms_per_node_hour"] is None else f"{r['false_alarms_per_node_hour']:.2f}"
        bt = "-" if r["false_alarms_between_faults_per_node_hour"] is None \
            else f"{r['false_alarms_between_faults_per_node_hour']:.1f}"
        print(f"{name:<26} {r['f1']:>6.3f} {_ci(ci['f1']):>15} {r['event_recall']:>9.3f} {_ci(ci['event_recall']):>15} "
              f"{r['hard_event_recall']:>6.3f} {r['hard_recall_within_2']:>7.3f} {tk:>5} "
              f"{fa:>9} {_ci(ci['false_alarms_per_node_hour'], 2):>15} {bt:>8} "
              f"{_ci(ci['false_alarms_between_faults_per_node_hour'], 1):>13} {r['alarm_precision']:>11.3f}")

    for name, r in res["rows"].items():
        line(name + (" (shipped)" if name == SHIPPED else ""), r)
    for name, r in res["full_neighbour"].items():
        line(name + " full-nbr", r)
    head = res["rows"][SHIPPED]
    print(f"{SHIPPED}: hard faults raised within 2 of the node's own evaluations after the start "
          f"{head['hard_recall_within_2_evaluations']:.3f} {_ci(head['ci95'].get('hard_recall_within_2_evaluations'))} "
          f"(within 2 ticks of elapsed time, the goal's figure: {head['hard_recall_within_2']:.3f}); chain_gbt "
          f"{res['rows'].get('chain_gbt', {}).get('hard_recall_within_2_evaluations', '-')}")
    print(f"fault-free node-hours judged: {head['fault_free_node_hours']:.2f} (false alarms there: "
          f"{head['false_alarms_fault_free']}); fault-free ticks between faults: {head['between_faults_node_hours']:.2f} "
          "node-hours")
    v3 = res.get("recorded_v3")
    if v3:
        print(f"{SHIPPED} on the runs recorded by features-version-3 daemons ({', '.join(v3['runs'])}; {v3['events']} "
              f"events, {v3['hard_events']} hard): hard within 2 ticks {v3['hard_recall_within_2']:.3f} "
              f"{_ci(v3['ci95'].get('hard_recall_within_2'))}, event recall {v3['event_recall']:.3f}, F1 {v3['f1']:.3f} "
              f"{_ci(v3['ci95'].get('f1'))}, false alarms per fault-free node-hour {v3['false_alarms_per_node_hour']} "
              f"{_ci(v3['ci95'].get('false_alarms_per_node_hour'), 2)} over {v3['fault_free_node_hours']} node-hours, "
              f"between faults {v3['false_alarms_between_faults_per_node_hour']}")
    for run, d in (res.get("fault_free_by_run") or {}).items():
        rate = "-" if d["per_node_hour"] is None else f"{d['per_node_hour']:.2f}"
        print(f"  {SHIPPED} on {run}: {d['false_alarms']} false alarms in {d['node_hours']:.2f} node-hours ({rate} per node-hour)")
    for name, d in (res.get("false_alarm_sources") or {}).items():
        if d.get("false_alarms"):
            print(f"  where {name}'s {d['false_alarms']} fault-free false alarms came from (share): neighbour held down "
                  f"{d['links_down']}, RTT above the fault-free median {d['rtt_ms_above_median']}, worst hello loss "
                  f"above it {d['loss_max_above_median']}, link changes above it {d['link_changes_above_median']}; "
                  f"in the daemon's first 300 s {d['first_300_s']}; with another node's within "
                  f"{SOURCE_WINDOW_S:.0f} s {d['with_another_node']}; a single tick {d['single_tick']}")
    if res.get("tradeoff"):
        print(f"trade-off of {SHIPPED} (every fold's threshold moved by the offset; described, not used to choose):")
        for t in res["tradeoff"]:
            fa = t["false_alarms_per_node_hour"]
            fs = t["false_alarms_per_node_hour_after_start"]
            print(f"  offset {t['offset']:+.1f}: event recall {t['event_recall']:.3f}, hard {t['hard_event_recall']:.3f}, "
                  f"hard within 2 ticks {t['hard_recall_within_2']:.3f}; false alarms per node-hour: fault-free "
                  f"{'-' if fa is None else f'{fa:.2f}'} (after start {'-' if fs is None else f'{fs:.2f}'}), "
                  f"between faults {t['false_alarms_between_faults_per_node_hour']:.1f}")
    if res.get("policy_tradeoff"):
        print(f"alarm policy trade-off of {SHIPPED} (the policy in place of every fold's own, thresholds moved by "
              "the offset; described, not used to choose):")
        for t in res["policy_tradeoff"]:
            fa = t["false_alarms_per_node_hour"]
            print(f"  raise {t['raise_ticks']} clear {t['clear_ticks']:>2} offset {t['offset']:+.1f}: hard "
                  f"{t['hard_event_recall']:.3f}, hard within 2 ticks {t['hard_recall_within_2']:.3f}, event recall "
                  f"{t['event_recall']:.3f}; false alarms per fault-free node-hour {'-' if fa is None else f'{fa:.2f}'}, "
                  f"between faults {t['false_alarms_between_faults_per_node_hour']:.1f}")
    fv = federated_verdict(res["rows"])
    if fv is not None:
        print(f"{FEDERATED} (FedAvg of a logistic head over the shipped margin and the trees' inputs) against {SHIPPED}: "
              + ", ".join(f"{k} {d:+.4f}" for k, d in fv["delta_vs_shipped"].items())
              + ("; at the gate's point (0, the bundle's alarm policy): "
                 + ", ".join(f"{k} {d:+.4f}" for k, d in fv["at_gate_point"]["delta_vs_shipped"].items())
                 if "at_gate_point" in fv else "")
              + f"; improves: {'yes' if fv['improves'] else 'no'}")
        for fo in res.get("federated_folds") or []:
            print(f"  {FEDERATED} fold test={fo['test']:<10} clients {fo['clients']}, {fo['train_rows']} training rows, "
                  f"{fo['held_out_rows']} held out; rounds that passed the gate {fo['passed_gate'] or 'none'}; "
                  f"{'a head' if fo['in_use'] else 'the shipped detector'} scored the fold")
    for pt in res.get("operating_points", {}).get(SHIPPED + BUDGET_SUFFIX) or []:
        print(f"  {SHIPPED + BUDGET_SUFFIX} fold test={pt['test']:<10} validation={pt['validation']:<7} threshold "
              f"{pt['threshold']:+.3f} policy raise {pt['policy']['raise_ticks']} clear {pt['policy']['clear_ticks']} "
              f"(validation: hard within 2 ticks {pt['validation_hard_within_2']:.3f}, "
              f"{pt['validation_false_alarms_per_node_hour']:.2f} false alarms per node-hour)")
    for pt in res.get("operating_points", {}).get(SHIPPED) or []:
        print(f"  {SHIPPED} fold test={pt['test']:<10} validation={pt['validation']:<7} threshold {pt['threshold']:+.3f} "
              f"policy raise {pt['policy']['raise_ticks']} clear {pt['policy']['clear_ticks']} "
              f"(validation event F1 {pt['validation_event_f1']:.3f})")


def _ci(v: list[float | None] | None, nd: int = 3) -> str:
    if v is None or v[0] is None or v[1] is None:
        return "-"
    return f"[{v[0]:.{nd}f},{v[1]:.{nd}f}]"


def cmd_eval_real(args: Any) -> int:
    import json
    import pathlib
    import time

    from x0lab.anomaly.realdata import load

    data = pathlib.Path(args.data) if args.data else default_data_dir()
    if not any(data.rglob("truth.json")):
        print(f"no real-fault dataset in {data} (x0node model collect --seed N --out {data})")
        return 2
    t0 = time.perf_counter()
    table = load(data)
    res = evaluate(table, cache=getattr(args, "cache", None))
    print_table(res)
    print("\nevent recall per fault kind (shipped detector; held down <= 2: a neighbour held down within 2 ticks)")
    for kind, d in res["per_kind"].items():
        print(f"  {kind:<18} events {d['events']:>3}  recall {d['recall']:.3f}  ticks p50 {d['ticks_p50']}  "
              f"within 2 ticks {d['within_2']:.3f}  held down <= 2 {d['held_down_2']:.3f}")
    if getattr(args, "leave_one_kind_out", False):
        print(f"\nleave one fault kind out ({SHIPPED}: the kind's fault rows ignored in training, its events out of "
              "the validation objective; recall = an alarm raised during the fault)")
        for kind, d in leave_one_kind_out(table, SHIPPED, getattr(args, "cache", None)).items():
            print(f"  {kind:<18} events {d['events']:>3}  recall held out {d['recall_held_out']:.3f} (seen "
                  f"{d['recall_seen']:.3f})  within 2 ticks held out {d['within_2_held_out']:.3f} (seen "
                  f"{d['within_2_seen']:.3f})")
    print(f"(eval took {time.perf_counter() - t0:.1f}s)")
    print(json.dumps(summary(res), separators=(",", ":")))
    return 0
