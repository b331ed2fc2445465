"""The detector chain: trained models by neighbour context, then Isolation Forest, then rules.

Rules and invariants:
- Model layers come in PAIRS, in order of preference: gradient-boosted trees trained on the fault
  lab's real faults (GBT with neighbour aggregates, GBT_SELF on the node's vector alone; trees.py),
  then the synthetic-trained int8 GraphSAGE (GNN, LiteRT) with its self-only MLP (SELF). Each row
  is scored by the first live layer of its case: a row with neighbour data (a non-empty mask) by a
  neighbour layer, a row without by the self-only layer of the same pair: never a neighbour model
  with an empty mask. A self-only layer also takes rows whose pair has no live neighbour layer. Rows
  no model layer could score go to the Isolation Forest, else the rules. `Evaluation.layer` is row
  0's layer (this node); `row_layers` names each row's when they differ.
- A model layer is usable when the bundle verified (checksums, metadata) and the model loaded; for
  the GNN also a LiteRT runtime imported and its self-test passed (stored vectors reproduce the
  stored logits within tolerance, and extreme inputs give finite logits); for the trees, their
  structure validated (trees.py). Any exception while scoring disables that layer for good with the
  reason recorded (counted), and its rows are scored by the next layer, so one evaluation always
  yields a verdict.
- The Isolation Forest is usable once fitted on-device from at least IFOREST_FIT_ROWS rows that the
  live layer judged normal (bounded buffer); until then the rules are live.
- The rules layer never fails.
- `status()` names the live layer and why each layer above it is not live.
- Scores: GBT/GNN/SELF = logit (sigmoid outside, `probability`), iForest = isolation score, rules = rule ratio;
  anomalous = score >= that layer's threshold.
- No I/O here except what `load_chain` delegates to bundle.py; fitting takes the caller's rng.
"""

from __future__ import annotations

import collections
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from x0node.anomaly.bundle import Bundle, BundleError, load_bundle
from x0node.anomaly.features import K_NEIGHBOURS, N_FEATURES
from x0node.anomaly.iforest import IsolationForest
from x0node.anomaly.rules import rule_scores
from x0node.anomaly.tflite_model import ModelError, TfliteModel, load_interpreter_class
from x0node.anomaly.trees import TreeError, TreeModel

log = logging.getLogger("x0node.anomaly")

GBT, GBT_SELF, GNN, SELF, IFOREST, RULES = "gbt", "gbt_self", "gnn", "self", "iforest", "rules"
PAIRS = ((GBT, GBT_SELF), (GNN, SELF))
"""Model layers in order of preference: (the model for rows with neighbour data, the one for rows without)."""
NEIGHBOUR_LAYERS = frozenset({GBT, GNN})
TREE_LAYERS = frozenset({GBT, GBT_SELF})
TREES_FILE = "trees"
"""The bundle file key of the tree models (JSON: {"nbr": model, "self": model}; thresholds gbt, gbt_self)."""
SELF_MODEL = "mlp"
"""The bundle file key of the self-only model."""
IFOREST_FIT_ROWS = 512
NORMAL_BUFFER_ROWS = 4096


@dataclass(frozen=True)
class Evaluation:
    layer: str
    scores: np.ndarray  # [n]
    anomalous: np.ndarray  # [n] bool
    threshold: float
    fallbacks: tuple[str, ...] = ()  # layers that failed during this evaluation
    row_layers: tuple[str, ...] = ()  # per row when rows were scored by different layers (else empty)

    def layer_of(self, i: int) -> str:
        return self.row_layers[i] if self.row_layers else self.layer


def probability(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))).astype(np.float32)


def self_test(model: TfliteModel, meta: dict[str, Any]) -> str | None:
    """None when the model reproduces the stored self-test logits; else the reason."""
    try:
        st = meta["self_test"]
        xs = np.asarray(st["x_self"], dtype=np.float32)
        xn = np.asarray(st["x_nbr"], dtype=np.float32)
        m = np.asarray(st["mask"], dtype=np.float32)
        want = np.asarray(st["logits"], dtype=np.float32)
        tol = float(st["tolerance"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"self-test vectors malformed: {exc}"
    try:
        got = model.logits(xs, xn, m)
        extremes = model.logits(
            np.stack([np.zeros(N_FEATURES), np.ones(N_FEATURES)]).astype(np.float32),
            np.stack([np.zeros((K_NEIGHBOURS, N_FEATURES)), np.ones((K_NEIGHBOURS, N_FEATURES))]).astype(np.float32),
            np.stack([np.zeros(K_NEIGHBOURS), np.ones(K_NEIGHBOURS)]).astype(np.float32),
        )
    except Exception as exc:  # noqa: BLE001 - any runtime failure fails the test
        return f"self-test raised {type(exc).__name__}: {exc}"
    if got.shape != want.shape or not np.isfinite(got).all() or not np.isfinite(extremes).all():
        return "self-test produced a wrong shape or non-finite logits"
    err = float(np.max(np.abs(got - want)))
    if err > tol:
        return f"self-test logits differ by {err:.4f} (tolerance {tol:.4f})"
    return None


@dataclass
class LayerState:
    live: bool
    reason: str | None = None
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class DetectorChain:
    def __init__(
        self,
        gnn: TfliteModel | None,
        gnn_threshold: float,
        gnn_reason: str | None = None,
        iforest_target_fpr: float = 0.01,
        self_model: TfliteModel | None = None,
        self_threshold: float = 0.0,
        self_reason: str | None = None,
        trees: tuple[Any, Any] | None = None,
        trees_thresholds: tuple[float, float] = (0.0, 0.0),
        trees_reason: str | None = None,
    ) -> None:
        self.gnn = gnn
        self.self_model = self_model
        self.self_threshold = self_threshold
        self.gnn_threshold = gnn_threshold
        self.shipped_gnn_threshold = gnn_threshold
        self.iforest: IsolationForest | None = None
        self.iforest_target_fpr = iforest_target_fpr
        self.models: dict[str, Any] = {GBT: trees[0] if trees else None, GBT_SELF: trees[1] if trees else None}
        self.thresholds: dict[str, float] = {GBT: trees_thresholds[0], GBT_SELF: trees_thresholds[1]}
        no_trees = trees_reason or "no tree models"
        self.layers: dict[str, LayerState] = {
            GBT: LayerState(trees is not None, None if trees else no_trees),
            GBT_SELF: LayerState(trees is not None, None if trees else no_trees),
            GNN: LayerState(gnn is not None, gnn_reason if gnn is None else None),
            SELF: LayerState(self_model is not None, (self_reason or "no self-only model") if self_model is None else None),
            IFOREST: LayerState(False, "not fitted yet"),
            RULES: LayerState(True),
        }
        self._normal: collections.deque[np.ndarray] = collections.deque(maxlen=NORMAL_BUFFER_ROWS)

    @property
    def live_layer(self) -> str:
        """The layer that scores a row with neighbour data (row 0 of a normal evaluation)."""
        for name in (GBT, GNN, SELF, GBT_SELF, IFOREST, RULES):
            if self.layers[name].live:
                return name
        return RULES

    # ---- Isolation Forest, fitted from rows seen as normal
    def add_normal(self, x_self: np.ndarray) -> None:
        for r in np.asarray(x_self, dtype=np.float32).reshape(-1, N_FEATURES):
            self._normal.append(r)

    @property
    def normal_rows(self) -> int:
        return len(self._normal)

    def fit_iforest(self, rng: random.Random) -> bool:
        if len(self._normal) < IFOREST_FIT_ROWS:
            return False
        self.set_iforest(IsolationForest.fit(np.stack(list(self._normal)), rng, target_fpr=self.iforest_target_fpr))
        return True

    def set_iforest(self, forest: IsolationForest) -> None:
        self.iforest = forest
        self.layers[IFOREST] = LayerState(True, None, self.layers[IFOREST].failures)

    def disable(self, layer: str, reason: str) -> None:
        st = self.layers[layer]
        st.live, st.reason = False, reason
        st.failures += 1
        if layer == IFOREST:
            self.iforest = None
        if layer == GNN:
            self.gnn = None
        if layer == SELF:
            self.self_model = None
        if layer in self.models:
            self.models[layer] = None
        log.warning("anomaly layer %s disabled: %s", layer, reason)

    def _model(self, layer: str) -> tuple[Any, float] | None:
        if not self.layers[layer].live:
            return None
        if layer == GNN:
            return (self.gnn, self.gnn_threshold) if self.gnn is not None else None
        if layer == SELF:
            return (self.self_model, self.self_threshold) if self.self_model is not None else None
        m = self.models.get(layer)
        return (m, self.thresholds[layer]) if m is not None else None

    # ---- scoring
    def evaluate(self, x_self: np.ndarray, x_nbr: np.ndarray, mask: np.ndarray,
                 x_down: np.ndarray | None = None) -> Evaluation:
        """Each row by the first live model layer of its case (PAIRS: with / without neighbours), rows
        left over by the Isolation Forest or the rules; a layer that raises is disabled and its rows go on.
        `x_down` [B, 1] (features.links_down_input; None: 0 for every row) reaches the tree models only."""
        x_self = np.asarray(x_self, dtype=np.float32).reshape(-1, N_FEATURES)
        n = len(x_self)
        x_down = np.zeros((n, 1), np.float32) if x_down is None else np.asarray(x_down, np.float32).reshape(n, 1)
        mask = np.asarray(mask, dtype=np.float32).reshape(n, -1)
        x_nbr = np.asarray(x_nbr, dtype=np.float32)
        has_nbr = mask.sum(axis=1) > 0
        scores = np.zeros(n, dtype=np.float32)
        anomalous = np.zeros(n, dtype=bool)
        thresholds = np.zeros(n, dtype=np.float32)
        layers = np.full(n, RULES, dtype=object)
        todo = np.ones(n, dtype=bool)
        fallbacks: list[str] = []
        for nbr_layer, self_layer in PAIRS:
            for layer in (nbr_layer, self_layer):
                rows = todo & has_nbr if layer in NEIGHBOUR_LAYERS else todo.copy()
                got = self._model(layer)
                if got is None or not rows.any():
                    continue
                model, thr = got
                try:
                    if layer in TREE_LAYERS:
                        s = model.logits(x_self[rows], x_nbr[rows], mask[rows], x_down[rows]) \
                            if layer in NEIGHBOUR_LAYERS else model.logits(x_self[rows], x_down=x_down[rows])
                    elif layer in NEIGHBOUR_LAYERS:
                        s = model.logits(x_self[rows], x_nbr[rows], mask[rows])
                    else:
                        s = model.logits(x_self[rows])
                    if not np.isfinite(s).all():
                        raise ModelError("non-finite logits")
                except Exception as exc:  # noqa: BLE001 - degrade, never crash
                    self.disable(layer, f"inference failed: {type(exc).__name__}: {exc}")
                    fallbacks.append(layer)
                    continue
                scores[rows], anomalous[rows], thresholds[rows], layers[rows] = s, s >= thr, thr, layer
                todo &= ~rows
        if todo.any():
            rest = self._evaluate_unsupervised(x_self[todo], fallbacks)
            scores[todo], anomalous[todo], thresholds[todo], layers[todo] = \
                rest.scores, rest.anomalous, rest.threshold, rest.layer
        row_layers = tuple(str(v) for v in layers)
        uniform = len(set(row_layers)) <= 1
        return Evaluation(row_layers[0] if n else RULES, scores, anomalous, float(thresholds[0]) if n else 1.0,
                          tuple(fallbacks), () if uniform else row_layers)

    def _evaluate_unsupervised(self, x_self: np.ndarray, fallbacks: list[str]) -> Evaluation:
        """Rows no trained model could score: the on-device Isolation Forest, then the rules."""
        if self.layers[IFOREST].live and self.iforest is not None:
            try:
                s = self.iforest.score(x_self)
                return Evaluation(IFOREST, s, s >= self.iforest.decision, self.iforest.decision, tuple(fallbacks))
            except Exception as exc:  # noqa: BLE001
                self.disable(IFOREST, f"scoring failed: {type(exc).__name__}: {exc}")
                fallbacks.append(IFOREST)
        s = rule_scores(x_self)
        return Evaluation(RULES, s, s >= 1.0, 1.0, tuple(fallbacks))

    def status(self) -> dict[str, Any]:
        return {
            "live_layer": self.live_layer,
            "gnn_threshold": round(self.gnn_threshold, 4),
            "self_threshold": round(self.self_threshold, 4),
            "trees_thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
            "normal_rows": len(self._normal),
            "layers": {
                name: {"live": st.live, "reason": st.reason, "failures": st.failures}
                for name, st in self.layers.items()
            },
        }


def load_chain(
    model_dir: str | None = None,
    interpreter_loader: Callable[[], tuple[type, str]] = load_interpreter_class,
    iforest_target_fpr: float = 0.01,
) -> tuple[DetectorChain, Bundle | None]:
    """Build the chain from the shipped bundle, degrading (with the reason) at each failed step."""
    bundle: Bundle | None = None
    reason: str | None = None
    model: TfliteModel | None = None
    threshold = 0.0
    try:
        bundle = load_bundle(model_dir)
        threshold = bundle.threshold("gnn_int8")
        data = bundle.read_model("gnn_int8")
        cls, runtime = interpreter_loader()
        model = TfliteModel(data, cls)
        if not model.uses_neighbours or not model.quantised:
            raise ModelError("gnn_int8 is not a quantised neighbour model")
        failed = self_test(model, bundle.meta)
        if failed:
            raise ModelError(failed)
        log.info("anomaly gnn loaded runtime=%s file=%s", runtime, bundle.path("gnn_int8"))
    except (BundleError, ModelError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        model = None
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"bundle metadata malformed: {exc}"
        model = None
    self_model, self_threshold, self_reason = _load_self_model(bundle, interpreter_loader)
    trees, trees_thr, trees_reason = _load_trees(bundle)
    chain = DetectorChain(model, threshold, reason, iforest_target_fpr, self_model, self_threshold, self_reason,
                          trees, trees_thr, trees_reason)
    return chain, bundle


def _load_trees(bundle: Bundle | None) -> tuple[tuple[TreeModel, TreeModel] | None, tuple[float, float], str | None]:
    """The bundle's tree models (neighbour, self-only) and their thresholds, when it ships them."""
    if bundle is None:
        return None, (0.0, 0.0), "no verified bundle"
    if TREES_FILE not in bundle.meta.get("files", {}):
        return None, (0.0, 0.0), "the bundle ships no tree models"
    try:
        doc = json.loads(bundle.read_model(TREES_FILE))
        nbr, own = TreeModel.from_dict(doc["nbr"]), TreeModel.from_dict(doc["self"])
        if not nbr.uses_neighbours or own.uses_neighbours:
            raise TreeError("the nbr model must take neighbour aggregates and the self model must not")
        thr = (bundle.threshold(GBT), bundle.threshold(GBT_SELF))
        x = np.stack([np.zeros(N_FEATURES), np.ones(N_FEATURES)]).astype(np.float32)
        got = nbr.logits(x, np.ones((2, K_NEIGHBOURS, N_FEATURES), np.float32), np.ones((2, K_NEIGHBOURS), np.float32))
        if not np.isfinite(got).all() or not np.isfinite(own.logits(x)).all() or not all(np.isfinite(thr)):
            raise TreeError("non-finite logits or thresholds")
        log.info("anomaly tree models loaded file=%s", bundle.path(TREES_FILE))
        return (nbr, own), thr, None
    except (BundleError, TreeError, KeyError, TypeError, ValueError) as exc:
        return None, (0.0, 0.0), f"{type(exc).__name__}: {exc}"


def _load_self_model(
    bundle: Bundle | None, interpreter_loader: Callable[[], tuple[type, str]]
) -> tuple[TfliteModel | None, float, str | None]:
    """The bundle's self-only model (trained without neighbours) for rows that have none."""
    if bundle is None:
        return None, 0.0, "no verified bundle"
    try:
        threshold = bundle.threshold(SELF_MODEL)
        model = TfliteModel(bundle.read_model(SELF_MODEL), interpreter_loader()[0])
        if model.uses_neighbours:
            raise ModelError(f"{SELF_MODEL} expects neighbours")
        got = model.logits(np.stack([np.zeros(N_FEATURES), np.ones(N_FEATURES)]).astype(np.float32))
        if not np.isfinite(got).all():
            raise ModelError("non-finite logits on extreme inputs")
        return model, threshold, None
    except (BundleError, ModelError, KeyError, TypeError, ValueError) as exc:
        return None, 0.0, f"{type(exc).__name__}: {exc}"
