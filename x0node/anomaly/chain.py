"""The detector fallback chain: int8 GraphSAGE (LiteRT) -> Isolation Forest -> rules.

Rules and invariants:
- The live layer is the first usable one. The GNN is usable when the bundle verified (checksums,
  metadata), a LiteRT runtime imported, the model loaded and its self-test passed (stored vectors
  reproduce the stored logits within tolerance, and extreme inputs give finite logits). Any exception
  while scoring disables it for good with the reason recorded (counted), and the same rows are scored
  by the next layer, so one evaluation always yields a verdict.
- The Isolation Forest is usable once fitted on-device from at least IFOREST_FIT_ROWS rows that the
  live layer judged normal (bounded buffer); until then the rules are live.
- The rules layer never fails.
- `status()` names the live layer and why each layer above it is not live.
- Scores: GNN = logit (sigmoid outside, `probability`), iForest = isolation score, rules = rule ratio;
  anomalous = score >= that layer's threshold.
- No I/O here except what `load_chain` delegates to bundle.py; fitting takes the caller's rng.
"""

from __future__ import annotations

import collections
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

log = logging.getLogger("x0node.anomaly")

GNN, IFOREST, RULES = "gnn", "iforest", "rules"
IFOREST_FIT_ROWS = 512
NORMAL_BUFFER_ROWS = 4096


@dataclass(frozen=True)
class Evaluation:
    layer: str
    scores: np.ndarray  # [n]
    anomalous: np.ndarray  # [n] bool
    threshold: float
    fallbacks: tuple[str, ...] = ()  # layers that failed during this evaluation


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
    ) -> None:
        self.gnn = gnn
        self.gnn_threshold = gnn_threshold
        self.shipped_gnn_threshold = gnn_threshold
        self.iforest: IsolationForest | None = None
        self.iforest_target_fpr = iforest_target_fpr
        self.layers: dict[str, LayerState] = {
            GNN: LayerState(gnn is not None, gnn_reason if gnn is None else None),
            IFOREST: LayerState(False, "not fitted yet"),
            RULES: LayerState(True),
        }
        self._normal: collections.deque[np.ndarray] = collections.deque(maxlen=NORMAL_BUFFER_ROWS)

    @property
    def live_layer(self) -> str:
        for name in (GNN, IFOREST, RULES):
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
        log.warning("anomaly layer %s disabled: %s", layer, reason)

    # ---- scoring
    def evaluate(self, x_self: np.ndarray, x_nbr: np.ndarray, mask: np.ndarray) -> Evaluation:
        fallbacks: list[str] = []
        if self.layers[GNN].live and self.gnn is not None:
            try:
                s = self.gnn.logits(x_self, x_nbr, mask)
                if not np.isfinite(s).all():
                    raise ModelError("non-finite logits")
                return Evaluation(GNN, s, s >= self.gnn_threshold, self.gnn_threshold)
            except Exception as exc:  # noqa: BLE001 - degrade, never crash
                self.disable(GNN, f"inference failed: {type(exc).__name__}: {exc}")
                fallbacks.append(GNN)
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
    chain = DetectorChain(model, threshold, reason, iforest_target_fpr)
    return chain, bundle
