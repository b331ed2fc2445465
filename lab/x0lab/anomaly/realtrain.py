"""Training the shipped tree detectors on the real-fault dataset and exporting them for the device.

Rules and invariants:
- Two models, both scikit-learn HistGradientBoostingClassifier with realeval's settings: `nbr` on the
  node's vector and its `links_down` plus neighbour aggregates (rows that had neighbour data), `self`
  on the node's vector and `links_down` alone (every row: the case of a node whose neighbours'
  vectors did not arrive).
- Shipping split: trained on every chaos run but those of the last topology kind (validation);
  each model's threshold first at its best row F1 on the validation runs, then the operating point
  as realeval chooses it (one margin added to both thresholds, and the alarm policy, for the best
  event F1 of the chain's alarms on the validation runs), shipped in anomaly_model.json
  (`thresholds`, `alarm`). Fault-free recordings are never trained on. The evaluation (realeval)
  is separate and by fold.
- `export_hgb` writes the trees as x0node.anomaly.trees reads them; `check_export` asserts that the
  numpy evaluator reproduces scikit-learn's decision function (it must, to 1e-4).
- The held-loss recipe (`held_loss_pair`, RECIPES): nothing is trained. Both models are one tree on
  the node's own `links_down` alone (neighbours whose held loss is still down): logit = min(count,
  HELD_LOSS_MAX) - 0.5, so a threshold between two counts is "at least that many neighbours down".
  It runs through the same tree layer, thresholds and alarm policy as the trained trees; its
  operating point (which count, which policy) is chosen on the validation runs like theirs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from x0lab.anomaly import realeval
from x0lab.anomaly.realdata import Table
from x0node.anomaly.features import FEATURES
from x0node.anomaly.trees import TreeModel


def export_hgb(clf: Any, width: int) -> dict[str, Any]:
    trees = []
    for (pred,) in clf._predictors:  # noqa: SLF001 - binary classifier: one predictor per iteration
        nodes = pred.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not exported")
        trees.append({
            "feature": nodes["feature_idx"].astype(int).tolist(),
            "threshold": [float(v) if not leaf else 0.0 for v, leaf in zip(nodes["num_threshold"], nodes["is_leaf"], strict=True)],
            "left": nodes["left"].astype(int).tolist(),
            "right": nodes["right"].astype(int).tolist(),
            "leaf": nodes["is_leaf"].astype(bool).tolist(),
            "value": [round(float(v), 7) for v in nodes["value"]],
        })
    return {"inputs": width, "baseline": float(np.asarray(clf._baseline_prediction).ravel()[0]),  # noqa: SLF001
            "trees": trees}


def check_export(clf: Any, doc: dict[str, Any], x: np.ndarray, xn: np.ndarray, mask: np.ndarray,
                 down: np.ndarray | None = None) -> float:
    model = TreeModel.from_dict(doc)
    got = model.logits(x, xn, mask, down) if model.uses_neighbours else model.logits(x, x_down=down)
    own = np.concatenate([x, down if down is not None else np.zeros((len(x), 1))], axis=1) \
        if model.uses_links_down else x
    ref = clf.decision_function(np.concatenate([own, realeval.neighbour_aggregates(xn, mask)], axis=1)
                                if model.uses_neighbours else own)
    err = float(np.max(np.abs(got - ref))) if len(x) else 0.0
    if err > 1e-4:
        raise AssertionError(f"exported trees differ from scikit-learn by {err}")
    return err


def train_pair(train: np.ndarray, val: np.ndarray, inp: realeval.Inputs, table: Table) -> dict[str, Any]:
    """The shipped recipe on given rows: {"nbr", "self": exported models, "thresholds", "val_f1"}."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    lab = table.label >= 0
    train, val = train[lab[train]], val[lab[val]]
    y = table.label == 1
    has = inp.mask.sum(axis=1) > 0
    out: dict[str, Any] = {"thresholds": {}, "val_f1": {}}
    for name, nbrs in (("nbr", True), ("self", False)):
        tr = train[has[train]] if nbrs else train
        va = val[has[val]] if nbrs else val
        x = inp.own_with_nbrs if nbrs else inp.own
        clf = HistGradientBoostingClassifier(max_iter=realeval.GBT_TREES, max_depth=realeval.GBT_DEPTH,
                                             learning_rate=0.1, max_leaf_nodes=realeval.GBT_LEAVES,
                                             l2_regularization=1.0, random_state=realeval.SEED)
        clf.fit(x[tr], y[tr].astype(int))
        doc = export_hgb(clf, x.shape[1])
        check_export(clf, doc, inp.xs[va], inp.xn[va], inp.mask[va], inp.own[va, -1:])
        thr, f1 = realeval.best_threshold(clf.decision_function(x[va]), y[va])
        out[name] = doc
        out["thresholds"][name] = thr
        out["val_f1"][name] = round(f1, 4)
    return out


HELD_LOSS_MAX = 3
"""The held-loss models' score stops growing at this many neighbours down."""


def _held_loss_tree(width: int, mesh_rtt_ms: float | None = None, loss_level: float | None = None,
                    fwd_level: float | None = None) -> dict[str, Any]:
    """One tree on the input right after the features (links_down_input = count / LINKS_DOWN_MAX;
    trees.py): leaf values count - 0.5 for count 0 .. HELD_LOSS_MAX (the last leaf: that many or more).
    With `mesh_rtt_ms` and neighbour aggregates in the input (width 34), a second tree subtracts
    MESH_DISCOUNT when the smallest hello RTT among the neighbours' vectors is above it; with
    `loss_level`, one more tree adds 1 when the node's `loss_max` (its worst neighbour's share of
    control packets missed in the tick) is at least that; with `fwd_level`, one adds 1 when its
    `fwd_ratio` (packets forwarded over transit packets in the tick) is at most that."""
    from x0node.anomaly.features import LINKS_DOWN_MAX, N_AGGREGATES, N_FEATURES

    feature, threshold, left, right, leaf, value = [], [], [], [], [], []
    for k in range(HELD_LOSS_MAX):  # node 2k: split "count <= k"; node 2k+1: leaf count k
        inner = len(feature)
        feature += [N_FEATURES, 0]
        threshold += [(k + 0.5) / LINKS_DOWN_MAX, 0.0]
        left += [inner + 1, inner + 1]
        right += [inner + 2, inner + 1]
        leaf += [False, True]
        value += [0.0, k - 0.5]
    feature.append(0)
    threshold.append(0.0)
    left.append(len(left))
    right.append(len(right))
    leaf.append(True)
    value.append(HELD_LOSS_MAX - 0.5)
    trees = [{"feature": feature, "threshold": threshold, "left": left, "right": right, "leaf": leaf,
              "value": value}]
    extra: dict[str, float] = {}
    if mesh_rtt_ms is not None and width == N_FEATURES + 1 + N_AGGREGATES:
        trees.append(_stump(MESH_RTT_MIN_INPUT, mesh_rtt_threshold(mesh_rtt_ms), 0.0, -MESH_DISCOUNT))
        extra["mesh_rtt_ms"] = mesh_rtt_ms
    if loss_level is not None:  # the node's worst neighbour lost this share of control packets this tick
        trees.append(_stump(FEATURES.index("loss_max"), _norm("loss_max", loss_level) - 1e-6, 0.0, 1.0))
        extra["loss_level"] = loss_level
    if fwd_level is not None:  # the node forwarded at most this share of its transit packets this tick
        trees.append(_stump(FEATURES.index("fwd_ratio"), _norm("fwd_ratio", fwd_level), 1.0, 0.0))
        extra["fwd_level"] = fwd_level
    return {"inputs": width, "baseline": 0.0, "recipe": "held_loss", "trees": trees, **extra}


def _stump(feature: int, threshold: float, at_most: float, above: float) -> dict[str, Any]:
    """A one-split tree: `at_most` where input <= threshold, else `above`."""
    return {"feature": [feature, 0, 0], "threshold": [threshold, 0.0, 0.0], "left": [1, 1, 2], "right": [2, 1, 2],
            "leaf": [False, True, True], "value": [0.0, at_most, above]}


def _norm(name: str, raw_value: float) -> float:
    """A raw value of feature `name` normalised as the features are (float32), for a tree split."""
    from x0node.anomaly.features import NEUTRAL_RAW, normalise

    raw = NEUTRAL_RAW.copy()
    raw[FEATURES.index(name)] = raw_value
    return float(normalise(raw)[FEATURES.index(name)])


MESH_DISCOUNT = 1.0
"""What a slow neighbourhood costs the held-loss score: one more neighbour must be down to alarm."""
MESH_RTT_CANDIDATES_MS: tuple[float, ...] = (400.0, 200.0, 100.0, 50.0, 25.0)
"""Where the neighbourhood may count as slow (smallest hello RTT over the neighbours' vectors above it).
The recipe takes the lowest candidate that loses no hard fault within 2 ticks on the rows it may
look at (training and validation runs), at its own operating point (>= 1 neighbour down, raise on
the first such tick); none when even the highest loses one."""


def _mesh_rtt_min_input() -> int:
    from x0node.anomaly.features import FEATURES, N_FEATURES

    # own 8 features, links_down, then the aggregates: mean[8], max[8], min[8], count
    return N_FEATURES + 1 + 2 * N_FEATURES + FEATURES.index("rtt_ms")


MESH_RTT_MIN_INPUT = _mesh_rtt_min_input()
"""The neighbour model's input holding the smallest normalised rtt_ms over the neighbours' vectors."""


def mesh_rtt_threshold(rtt_ms: float) -> float:
    """`rtt_ms` normalised as the features are (float32), for a tree split."""
    return _norm("rtt_ms", rtt_ms)


LOSS_LEVEL = 0.15
"""The held-loss recipe also alarms when the node's worst neighbour missed at least this share of its
control packets in the tick (features version 3; hard faults are >= 20 % loss: at 100 ms hellos a
3 s tick expects about 30 numbers, and 20 % loss leaves fewer than 15 % missed in about a quarter of
ticks, so 15 % catches most within 2 ticks)."""
FWD_LEVEL = 0.9
"""... and when it forwarded at most this share of its transit packets in the tick (a partial black hole
drops 20-60 %; packets in flight across the tick boundary move a healthy ratio by a few %)."""


def held_loss_pair(train: np.ndarray | None = None, val: np.ndarray | None = None, inp: Any = None,
                   table: Table | None = None, mesh_rtt_ms: float | None | str = "choose",
                   loss_level: float | None = LOSS_LEVEL, fwd_level: float | None = FWD_LEVEL) -> dict[str, Any]:
    """The held-loss recipe as a tree pair (nothing trained; same shape as `train_pair`'s). The
    neighbour model's slow-neighbourhood discount (`mesh_rtt_ms`) is given, or chosen on the training
    and validation rows (`choose_mesh_rtt`); without rows there is none. `loss_level` and `fwd_level`
    (None: not used) add the tick's control-packet loss and forwarding ratio (`_held_loss_tree`)."""
    from x0node.anomaly.features import N_AGGREGATES, N_FEATURES

    if mesh_rtt_ms == "choose":
        rows = np.concatenate([r for r in (train, val) if r is not None]) if train is not None or val is not None else None
        mesh_rtt_ms = choose_mesh_rtt(table, rows, inp, loss_level, fwd_level) \
            if rows is not None and len(rows) and inp is not None and table is not None else None
    rtt = float(mesh_rtt_ms) if isinstance(mesh_rtt_ms, float | int) else None
    return {"nbr": _held_loss_tree(N_FEATURES + 1 + N_AGGREGATES, rtt, loss_level, fwd_level),
            "self": _held_loss_tree(N_FEATURES + 1, None, loss_level, fwd_level),
            "thresholds": {"nbr": 0.0, "self": 0.0}, "val_f1": {}, "mesh_rtt_ms": rtt,
            "loss_level": loss_level, "fwd_level": fwd_level}


def choose_mesh_rtt(table: Table, rows: np.ndarray, inp: Any, loss_level: float | None = LOSS_LEVEL,
                    fwd_level: float | None = FWD_LEVEL) -> float | None:
    """The lowest MESH_RTT_CANDIDATES_MS whose discount keeps every hard fault these rows' runs caught
    within 2 ticks without it, at the recipe's own point (>= 1 neighbour down, raise at once)."""
    from x0node.anomaly.alarm import AlarmPolicy

    order = realeval.series_order(table, rows)
    hard = realeval.hard_events(table, rows)

    def recall(rtt: float | None) -> float:
        s = np.zeros(len(table))
        pair = held_loss_pair(mesh_rtt_ms=rtt, loss_level=loss_level, fwd_level=fwd_level)
        s[rows] = realeval.chain_scores(chain_of(pair), rows, inp)
        state = realeval.alarm_state(table, s >= 0.5 - 1e-9, AlarmPolicy(1, 1), order)
        return realeval.budget_objective(table, state, order, hard)[0]

    base, chosen = recall(None), None
    for rtt in MESH_RTT_CANDIDATES_MS:
        if recall(rtt) < base:
            break
        chosen = rtt
    return chosen


def held_loss_plain(train: np.ndarray | None = None, val: np.ndarray | None = None, inp: Any = None,
                    table: Table | None = None) -> dict[str, Any]:
    """The held-loss recipe without the slow-neighbourhood discount (what ships)."""
    return held_loss_pair(mesh_rtt_ms=None)


def held_loss_links_only(train: np.ndarray | None = None, val: np.ndarray | None = None, inp: Any = None,
                         table: Table | None = None) -> dict[str, Any]:
    """Neighbours held down alone (the recipe before the tick's loss and forwarding ratio)."""
    return held_loss_pair(mesh_rtt_ms=None, loss_level=None, fwd_level=None)


RECIPES = {"trees": train_pair, "held-loss": held_loss_plain, "held-loss-mesh": held_loss_pair,
           "held-loss-links": held_loss_links_only}
"""`x0node model fit-real --recipe`: the tree pair to ship."""


def chain_of(pair: dict[str, Any]) -> Any:
    """The device's DetectorChain holding only these tree models (no GNN, no bundle)."""
    from x0node.anomaly.chain import DetectorChain

    return DetectorChain(None, 0.0, "not used", trees=(TreeModel.from_dict(pair["nbr"]), TreeModel.from_dict(pair["self"])),
                         trees_thresholds=(pair["thresholds"]["nbr"], pair["thresholds"]["self"]))


def train_ship(table: Table, fa_budget: float | None = None, recipe: str = "held-loss") -> dict[str, Any]:
    """{"nbr": model, "self": model, "thresholds": {...}, "training": {...}} for models/anomaly_trees.json.
    With `fa_budget` the operating point is realeval.choose_budget_point's instead of the best event F1."""
    inp = realeval.inputs(table, "deployed")
    _test, _val, train, val, _te = realeval.folds(table)[-1] if table.fault_free.any() else _ship_split(table)
    pair = RECIPES[recipe](train, val, inp, table)
    margins = realeval.chain_scores(chain_of(pair), val, inp)  # logit minus its threshold
    if fa_budget is None:
        m, policy, vf = realeval.choose_operating_point(table, val, margins)
        objective: dict[str, Any] = {"objective": "event_f1", "val_event_f1": round(vf, 4)}
    else:
        m, policy, rec, fa = realeval.choose_budget_point(table, val, margins, fa_budget)
        objective = {"objective": "hard_within_2_under_fa_budget", "fa_budget": fa_budget,
                     "val_hard_within_2": round(rec, 4), "val_false_alarms_per_node_hour": round(fa, 3)}
    pair["thresholds"] = {k: v + m for k, v in pair["thresholds"].items()}
    pair["alarm"] = policy.as_dict()
    fitted: dict[str, Any] = {"trees": realeval.GBT_TREES, "max_depth": realeval.GBT_DEPTH,
                              "max_leaf_nodes": realeval.GBT_LEAVES, "val_f1": pair["val_f1"]} if recipe == "trees" \
        else {"held_loss_max": HELD_LOSS_MAX, "mesh_rtt_ms": pair.pop("mesh_rtt_ms", None),
              "mesh_discount": MESH_DISCOUNT, "loss_level": pair.pop("loss_level", None),
              "fwd_level": pair.pop("fwd_level", None)}
    pair.pop("val_f1")
    pair["training"] = {"recipe": recipe, "train_runs": sorted(set(table.run[train].tolist())),
                        "validation_runs": sorted(set(table.run[val].tolist())),
                        "rows_train": int((table.label[train] >= 0).sum()), "rows_val": int((table.label[val] >= 0).sum()),
                        **fitted, "operating_margin": round(m, 4), **objective}
    return pair


def _ship_split(table: Table) -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray]:
    """Without fault-free recordings: validation = the last topology kind, train = the rest."""
    kinds = np.array([realeval.topology_kind(t) for t in table.topo])
    val_kind = sorted(set(kinds.tolist()))[-1]
    return "", val_kind, np.flatnonzero(kinds != val_kind), np.flatnonzero(kinds == val_kind), np.zeros(0, dtype=int)


def ship(data_dir: Any, model_dir: Any, fa_budget: float | None = None, recipe: str = "held-loss") -> dict[str, Any]:
    """Train on the dataset and write anomaly_trees.json into the bundle, with its thresholds in
    anomaly_model.json and both files' sums in SHA256SUMS."""
    import hashlib
    import json
    import pathlib

    from x0lab.anomaly.realdata import load
    from x0node.anomaly.chain import GBT, GBT_SELF, TREES_FILE
    from x0node.io.atomicfile import write_atomic

    model_dir = pathlib.Path(model_dir)
    doc = train_ship(load(pathlib.Path(data_dir)), fa_budget, recipe)
    name = "anomaly_trees.json"
    write_atomic(model_dir / name, json.dumps({"nbr": doc["nbr"], "self": doc["self"]},
                                              separators=(",", ":")).encode(), 0o644)
    meta_path = model_dir / "anomaly_model.json"
    meta = json.loads(meta_path.read_text())
    meta["files"][TREES_FILE] = name
    meta["thresholds"][GBT] = doc["thresholds"]["nbr"]
    meta["thresholds"][GBT_SELF] = doc["thresholds"]["self"]
    meta["alarm"] = doc["alarm"]
    meta["trees_training"] = doc["training"]
    write_atomic(meta_path, (json.dumps(meta, indent=1) + "\n").encode(), 0o644)
    sums_path = model_dir / "SHA256SUMS"
    lines = [ln for ln in sums_path.read_text().splitlines() if ln.strip() and not ln.endswith(" " + name)]
    lines.append(f"0  {name}")
    for i, ln in enumerate(lines):
        f = ln.split()[-1]
        if f in (name, "anomaly_model.json"):
            lines[i] = f"{hashlib.sha256((model_dir / f).read_bytes()).hexdigest()}  {f}"
    write_atomic(sums_path, ("\n".join(lines) + "\n").encode(), 0o644)
    return doc["training"] | {"thresholds": doc["thresholds"], "alarm": doc["alarm"]}


def cmd_fit_real(args: Any) -> int:
    import json

    from x0lab.anomaly.realeval import default_data_dir
    from x0node.anomaly.bundle import SOURCE_MODEL_DIR

    info = ship(args.data or default_data_dir(), args.model_dir or SOURCE_MODEL_DIR, getattr(args, "fa_budget", None),
                getattr(args, "recipe", "held-loss"))
    print(json.dumps(info, indent=1))
    return 0
