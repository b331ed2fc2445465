"""Judging detectors on the real-fault dataset (realdata.py): split by run and topology, CIs, baselines.

Protocol (the model card, docs/anomaly.md, repeats it):
- Folds by topology kind (every run is one topology; ring, grid, ladder, random): fold k tests on
  every run of kind k, picks thresholds (and nothing else) on the runs of kind k+1 (validation),
  trains on the remaining runs. Every row is scored exactly once, by a model that never saw its
  run or its topology kind; the pooled test predictions are judged.
- Inputs per row: the node's own normalised vector, and aggregates of its neighbours' normalised
  vectors (mean, max, min, count / K) — those its state layer delivered (`deployed`, what the daemon
  really had) or, for the reference row, those every testbed neighbour recorded at the nearest tick
  (`full`). Models are trained on deployed inputs.
- Metrics on rows with label 0/1 (label -1 ignored, realdata.py): precision, recall, F1; event recall
  (an event is detected when an alarm is raised on one of its rows between its start and end),
  also for hard faults and within MAX_DETECT_TICKS; detect ticks (ticks from the fault's start to the
  first alarm, p50); false alarms per node-hour (maximal runs of alarmed label-0 ticks on a node, per
  node-hour of label-0 ticks). 95 % CIs by percentile bootstrap (BOOTSTRAP resamples, seeded): events resampled for event
  recall and detect ticks, (run, node) series resampled for F1 and false alarms.
- Thresholds: the value that maximises F1 on the validation run (a detector's score only).
Pure numpy + scikit-learn (development dependency, pinned); no I/O.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from x0lab.anomaly.realdata import INTERVAL_S, Table
from x0node.anomaly.features import FEATURES, K_NEIGHBOURS, N_FEATURES, neighbour_aggregates, normalise

BOOTSTRAP = 1000
MAX_DETECT_TICKS = 2
EWMA_ALPHA = 0.1
EWMA_WARMUP = 10
SEED = 16


# ------------------------------------------------------------------------------------------- inputs
def neighbour_block(nbrs: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's inputs: x_nbr [R, K, 8] and mask [R, K] (neighbours in id order, at most K)."""
    xn = np.zeros((len(nbrs), K_NEIGHBOURS, N_FEATURES), dtype=np.float32)
    m = np.zeros((len(nbrs), K_NEIGHBOURS), dtype=np.float32)
    for i, d in enumerate(nbrs):
        keys = sorted(d)[:K_NEIGHBOURS]
        if keys:
            xn[i, : len(keys)] = normalise(np.stack([d[k] for k in keys]))
            m[i, : len(keys)] = 1.0
    return xn, m


@dataclass
class Inputs:
    xs: np.ndarray  # [R, 8] normalised own vector
    agg: np.ndarray  # [R, 25] neighbour aggregates
    xn: np.ndarray  # [R, K, 8]
    mask: np.ndarray  # [R, K]

    @property
    def with_nbrs(self) -> np.ndarray:
        return np.concatenate([self.xs, self.agg], axis=1)


def inputs(table: Table, which: str) -> Inputs:
    nbrs = table.deployed if which == "deployed" else table.full
    xn, m = neighbour_block(nbrs)
    return Inputs(normalise(table.x), neighbour_aggregates(xn, m), xn, m)


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


def fit_gbt(nbrs: bool) -> Fit:
    def fit(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
        from sklearn.ensemble import HistGradientBoostingClassifier

        x, y = _xy(train, inp, table, nbrs)
        clf = HistGradientBoostingClassifier(max_iter=GBT_TREES, max_depth=GBT_DEPTH, learning_rate=0.1,
                                             max_leaf_nodes=GBT_LEAVES, l2_regularization=1.0, random_state=SEED)
        clf.fit(x, y)
        return lambda r, i: clf.decision_function(i.with_nbrs[r] if nbrs else i.xs[r])
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


def _chain_scores(chain: Any, rows: np.ndarray, i: Inputs) -> np.ndarray:
    """Rows through DetectorChain.evaluate (the runtime code); score = logit minus its layer's threshold."""
    from x0node.anomaly.chain import GBT, GBT_SELF, GNN, SELF

    thr = {GNN: chain.gnn_threshold, SELF: chain.self_threshold, GBT: chain.thresholds[GBT],
           GBT_SELF: chain.thresholds[GBT_SELF]}
    out = np.zeros(len(rows))
    for lo in range(0, len(rows), 2048):
        r = rows[lo:lo + 2048]
        ev = chain.evaluate(i.xs[r], i.xn[r], i.mask[r])
        out[lo:lo + len(r)] = ev.scores - np.array([thr.get(ev.layer_of(j), ev.threshold) for j in range(len(r))])
    return out


def fit_shipped_gnn(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """The synthetic-trained int8 GNN (the self-only MLP for rows without neighbours) from the bundle,
    through the device chain with the tree layers switched off. Nothing trained here."""
    from x0node.anomaly.chain import GBT, GBT_SELF, load_chain

    chain, _ = load_chain()
    for layer in (GBT, GBT_SELF):
        chain.layers[layer].live = False
    return lambda rows, i: _chain_scores(chain, rows, i)


def fit_chain_gbt(train: np.ndarray, val: np.ndarray, inp: Inputs, table: Table) -> Callable[[np.ndarray, Inputs], np.ndarray]:
    """The shipped recipe as the device runs it: the fold's tree pair exported, loaded by trees.py into a
    DetectorChain, each row scored by the neighbour model or, without neighbour data, the self model;
    each model's threshold chosen on the validation runs."""
    from x0lab.anomaly import realtrain

    chain = realtrain.chain_of(realtrain.train_pair(train, val, inp, table))
    return lambda rows, i: _chain_scores(chain, rows, i)


FULL_REFERENCE = frozenset({"chain_gbt", "gbt_nbr", "mlp_nbr", "gnn_shipped"})
"""Detectors also scored, with the same fold models, on the full-neighbour inputs."""
DETECTORS: dict[str, Fit] = {
    "rules": fit_rules_shipped,
    "rules_tuned": fit_rules_tuned,
    "ewma_z": fit_ewma,
    "iforest": fit_iforest,
    "mlp_self": fit_mlp(False),
    "mlp_nbr": fit_mlp(True),
    "gbt_self": fit_gbt(False),
    "gbt_nbr": fit_gbt(True),
    "gnn_shipped": fit_shipped_gnn,
    "chain_gbt": fit_chain_gbt,
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
    kind (ring, grid, ladder, random) in turn is the test fold with all its runs, the next one the
    validation fold, the rest train."""
    kinds = np.array([topology_kind(t) for t in table.topo])
    names = sorted(set(kinds.tolist()))
    out = []
    for k, test in enumerate(names):
        val = names[(k + 1) % len(names)]
        out.append((test, val, np.flatnonzero((kinds != test) & (kinds != val)),
                    np.flatnonzero(kinds == val), np.flatnonzero(kinds == test)))
    return out


def cross_predict(table: Table, fit: Fit, train_inp: Inputs, test_inp: Inputs,
                  also: Inputs | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(scores, alarms) for every row, each from the fold that held its run out; with `also`, the same
    fold models and thresholds applied to those inputs too (the full-neighbour reference)."""
    scores = np.zeros(len(table))
    alarms = np.zeros(len(table), dtype=bool)
    alarms_also = np.zeros(len(table), dtype=bool) if also is not None else None
    for _test, _val, tr, va, te in folds(table):
        score = fit(tr, va, train_inp, table)
        vrows = _labelled(va, table)
        thr, _ = best_threshold(score(vrows, train_inp), table.label[vrows] == 1)
        s = score(te, test_inp)
        scores[te], alarms[te] = s, s >= thr
        if also is not None and alarms_also is not None:
            alarms_also[te] = score(te, also) >= thr
    return scores, alarms, alarms_also


def _false_alarms(table: Table, alarms: np.ndarray) -> np.ndarray:
    """Rows that start a false alarm: an alarmed fault-free (label 0) tick whose previous tick on the
    same node was not one (not alarmed, or not fault-free). An alarm that stays on counts once per
    fault-free stretch it covers."""
    bad = alarms & (table.label == 0)
    out = np.zeros(len(alarms), dtype=bool)
    keys = np.char.add(table.run, table.node)
    for key in np.unique(keys):
        sel = np.flatnonzero(keys == key)
        sel = sel[np.argsort(table.t[sel])]
        b = bad[sel]
        out[sel] = b & ~np.r_[False, b[:-1]]
    return out


def _event_hits(table: Table, alarms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per event: detected (bool) and ticks to the first alarm (nan when missed)."""
    n = len(table.events)
    hit = np.zeros(n, dtype=bool)
    ticks = np.full(n, np.nan)
    for ei in range(n):
        rows = np.flatnonzero(table.event == ei)
        fired = rows[alarms[rows]]
        if len(fired):
            hit[ei] = True
            first = float(table.t[fired].min())
            ticks[ei] = max(1.0, np.ceil((first - table.events[ei].start) / INTERVAL_S))
    return hit, ticks


def _row_f1(y: np.ndarray, a: np.ndarray) -> tuple[float, float, float]:
    tp = int((y & a).sum())
    fp = int((~y & a).sum())
    fn = int((y & ~a).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def judge(table: Table, alarms: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, Any]:
    rng = rng or np.random.default_rng(SEED)
    lab = table.label >= 0
    y = table.label == 1
    onsets = _false_alarms(table, alarms)
    hit, ticks = _event_hits(table, alarms)
    hard = np.array([e.hard for e in table.events], dtype=bool)
    within = hit & (np.nan_to_num(ticks, nan=1e9) <= MAX_DETECT_TICKS)
    clean_rows = table.label == 0
    hours = clean_rows.sum() * INTERVAL_S / 3600.0

    def fa(mask: np.ndarray) -> float:
        h = (clean_rows & mask).sum() * INTERVAL_S / 3600.0
        return float((onsets & clean_rows & mask).sum() / h) if h else 0.0

    p, r, f1 = _row_f1(y[lab], alarms[lab])
    out: dict[str, Any] = {
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
        "event_recall": round(float(hit.mean()) if len(hit) else 0.0, 4),
        "hard_event_recall": round(float(hit[hard].mean()) if hard.any() else 0.0, 4),
        "hard_recall_within_2": round(float(within[hard].mean()) if hard.any() else 0.0, 4),
        "detect_ticks_p50": float(np.nanmedian(ticks)) if hit.any() else None,
        "false_alarms_per_node_hour": round(fa(np.ones(len(table), dtype=bool)), 4),
        "fault_free_node_hours": round(float(hours), 3),
        "events": int(len(hit)), "hard_events": int(hard.sum()),
    }
    # bootstrap: events for recall/ticks; (run, node) series for F1 and false alarms (resampled as
    # per-series counts, so a resample is one matrix product)
    keys = np.char.add(table.run, table.node)
    _, series = np.unique(keys, return_inverse=True)
    g = int(series.max()) + 1 if len(series) else 0
    per = np.zeros((g, 4))
    np.add.at(per, (series, 0), (y & alarms & lab).astype(float))
    np.add.at(per, (series, 1), (~y & alarms & lab).astype(float))
    np.add.at(per, (series, 2), (y & ~alarms & lab).astype(float))
    np.add.at(per, (series, 3), (onsets & clean_rows).astype(float))
    clean_per = np.bincount(series, weights=clean_rows.astype(float), minlength=g)
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=BOOTSTRAP) if g else np.zeros((BOOTSTRAP, 0))
    tp, fp, fn, on = (counts @ per).T
    clean_h = counts @ clean_per * INTERVAL_S / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1s = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        fas = np.where(clean_h > 0, on / clean_h, 0.0)
    ne = len(hit)
    ev = rng.integers(0, ne, (BOOTSTRAP, ne)) if ne else np.zeros((BOOTSTRAP, 0), dtype=int)
    hits = hit[ev]
    hards = hard[ev]
    tks = np.where(hits, ticks[ev], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = {
            "f1": f1s, "event_recall": hits.mean(axis=1) if ne else np.zeros(BOOTSTRAP),
            "hard_event_recall": np.where(hards.sum(axis=1) > 0, (hits & hards).sum(axis=1) / np.maximum(hards.sum(axis=1), 1), 0.0),
            "detect_ticks_p50": np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in tks]),
            "false_alarms_per_node_hour": fas,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no detection in a resample: NaN ticks
        out["ci95"] = {k: [_r(np.nanpercentile(v, 2.5)), _r(np.nanpercentile(v, 97.5))] for k, v in boots.items()}
    return out


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def per_kind(table: Table, alarms: np.ndarray) -> dict[str, dict[str, Any]]:
    hit, ticks = _event_hits(table, alarms)
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({e.kind for e in table.events}):
        idx = [i for i, e in enumerate(table.events) if e.kind == kind]
        out[kind] = {"events": len(idx), "recall": round(float(hit[idx].mean()), 3),
                     "ticks_p50": float(np.nanmedian(ticks[idx])) if hit[idx].any() else None}
    return out


def evaluate(table: Table, names: list[str] | None = None) -> dict[str, Any]:
    """Every detector through the protocol; plus the shipped-on-device rows (live verdicts recorded by
    the daemons) and, for every detector that uses neighbours, the full-neighbour reference. One
    thread for scikit-learn's OpenMP pools: on a loaded shared host their spinning threads made the
    evaluation many times slower than single-threaded."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _evaluate(table, names)


def _evaluate(table: Table, names: list[str] | None) -> dict[str, Any]:
    dep = inputs(table, "deployed")
    full = inputs(table, "full")
    rows: dict[str, Any] = {}
    alarms_by: dict[str, np.ndarray] = {}
    ref: dict[str, Any] = {}
    for name in names or list(DETECTORS):
        _, alarms, alarms_full = cross_predict(table, DETECTORS[name], dep, dep,
                                               full if name in FULL_REFERENCE else None)
        rows[name] = judge(table, alarms)
        alarms_by[name] = alarms
        if alarms_full is not None:
            ref[name] = judge(table, alarms_full)
    live = table.live_alarm.copy()
    rows["daemon_live"] = judge(table, live)  # the verdicts the running daemons gave (shipped chain)
    no_nbr = float(np.mean(dep.mask.sum(axis=1) == 0))
    return {"rows": rows, "full_neighbour": ref, "alarms": alarms_by,
            "dataset": {"rows": int(len(table)), "labelled": int((table.label >= 0).sum()),
                        "positive": int((table.label == 1).sum()), "runs": sorted(set(table.run.tolist())),
                        "topologies": sorted(set(table.topo.tolist())), "events": len(table.events),
                        "rows_without_neighbour_data": round(no_nbr, 4), "interval_s": INTERVAL_S,
                        "features": list(FEATURES)}}


# ------------------------------------------------------------------------------------------- command line
SHIPPED = "chain_gbt"
"""The detector the bundle ships (trees.py; `x0node model fit-real`): its row is the headline."""
KEYS = ("f1", "event_recall", "hard_event_recall", "hard_recall_within_2", "detect_ticks_p50",
        "false_alarms_per_node_hour")


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
                           "fault_free_node_hours": head["fault_free_node_hours"], "events": head["events"]}
    out["baselines"] = {name: {**{k: r[k] for k in KEYS}, "ci95": r["ci95"]} for name, r in rows.items()
                        if name != SHIPPED}
    full = res["full_neighbour"].get(SHIPPED)
    if full is not None:
        out["as_deployed_f1"] = head["f1"]
        out["full_neighbour_f1"] = full["f1"]
        out["as_deployed_gap_f1"] = round(full["f1"] - head["f1"], 4)
    out["dataset"] = {k: v for k, v in res["dataset"].items() if k != "features"}
    return out


def print_table(res: dict[str, Any]) -> None:
    ds = res["dataset"]
    print(f"real-fault dataset: {ds['rows']} node-ticks ({ds['labelled']} labelled, {ds['positive']} under a fault) "
          f"from {len(ds['runs'])} runs on {', '.join(ds['topologies'])}; {ds['events']} fault events; "
          f"tick {ds['interval_s']:.0f} s; {ds['rows_without_neighbour_data'] * 100:.1f} % of rows had no "
          "neighbour data")
    print("folds by topology kind: test = one kind, thresholds on the next, train on the rest; 95 % bootstrap CIs")
    hdr = (f"{'detector':<22} {'f1':>6} {'f1 95% CI':>15} {'ev.recall':>9} {'CI':>15} {'hard':>6} {'hard<=2':>7} "
           f"{'ticks':>5} {'FA/node-h':>9} {'CI':>15}")
    print(hdr)

    def line(name: str, r: dict[str, Any]) -> None:
        ci = r["ci95"]
        tk = "-" if r["detect_ticks_p50"] is None else f"{r['detect_ticks_p50']:.0f}"
        print(f"{name:<22} {r['f1']:>6.3f} {_ci(ci['f1']):>15} {r['event_recall']:>9.3f} {_ci(ci['event_recall']):>15} "
              f"{r['hard_event_recall']:>6.3f} {r['hard_recall_within_2']:>7.3f} {tk:>5} "
              f"{r['false_alarms_per_node_hour']:>9.2f} {_ci(ci['false_alarms_per_node_hour'], 1):>15}")

    for name, r in res["rows"].items():
        line(name + (" (shipped)" if name == SHIPPED else ""), r)
    for name, r in res["full_neighbour"].items():
        line(name + " full-nbr", r)
    print(f"fault-free node-hours judged: {res['rows'][SHIPPED]['fault_free_node_hours']:.2f}")


def _ci(v: list[float], nd: int = 3) -> str:
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
    res = evaluate(table)
    print_table(res)
    print("\nevent recall per fault kind (shipped detector)")
    for kind, d in per_kind(table, res["alarms"][SHIPPED]).items():
        print(f"  {kind:<18} events {d['events']:>3}  recall {d['recall']:.3f}  ticks p50 {d['ticks_p50']}")
    print(f"(eval took {time.perf_counter() - t0:.1f}s)")
    print(json.dumps(summary(res), separators=(",", ":")))
    return 0
