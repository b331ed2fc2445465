"""Rule-based detector: the last layer of the fallback chain, always available.

Rules and invariants:
- Thresholds on raw features. Link thresholds come from the routing core's link-quality classes
  (x0node/proto/quality.py): a worst link whose loss or RTT puts it in class BAD (loss >= the POOR
  loss bound, RTT >= the POOR RTT bound) is anomalous. Node thresholds are named constants below.
- score = max over rules of value / threshold (for `fwd_ratio`: (1 - value) / (1 - FWD_RATIO_MIN));
  a node is anomalous when score >= 1. The score is continuous so rankings (AUC) are meaningful.
- Pure numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

from x0node.anomaly.features import FEATURES, denormalise

try:  # the link-quality classes of the routing core
    from x0node.proto.quality import QUALITY_THRESHOLDS, Quality

    _POOR = next(t for t in QUALITY_THRESHOLDS if t[0] == Quality.POOR)
    LOSS_BAD = float(_POOR[1])
    RTT_BAD_MS = float(_POOR[2])
except Exception:  # noqa: BLE001 - keep the rules usable in a build without the routing core
    LOSS_BAD = 0.05
    RTT_BAD_MS = 200.0

CPU_MAX = 0.9
MEM_MAX = 0.9
LINK_CHANGES_MAX = 3.0  # neighbour transitions per LINK_CHANGES_WINDOW_S
IF_ERRORS_MAX_PER_S = 10.0
FWD_RATIO_MIN = 0.5

_I = {name: i for i, name in enumerate(FEATURES)}


def rule_scores(x_norm: np.ndarray) -> np.ndarray:
    """[n, 8] normalised features -> [n] scores (>= 1 means anomalous)."""
    raw = denormalise(np.asarray(x_norm).reshape(-1, len(FEATURES)))
    parts = [
        raw[:, _I["cpu_util"]] / CPU_MAX,
        raw[:, _I["mem_util"]] / MEM_MAX,
        raw[:, _I["rtt_ms"]] / RTT_BAD_MS,
        raw[:, _I["loss_max"]] / LOSS_BAD,
        raw[:, _I["link_changes"]] / LINK_CHANGES_MAX,
        raw[:, _I["if_errors_per_s"]] / IF_ERRORS_MAX_PER_S,
        (1.0 - raw[:, _I["fwd_ratio"]]) / (1.0 - FWD_RATIO_MIN),
    ]
    return np.max(np.stack(parts, axis=1), axis=1).astype(np.float32)


def rule_reasons(x_norm_row: np.ndarray) -> list[str]:
    """Names of the rules one node trips (for events and the UI)."""
    raw = denormalise(np.asarray(x_norm_row).reshape(1, -1))[0]
    out = []
    if raw[_I["cpu_util"]] >= CPU_MAX:
        out.append("cpu")
    if raw[_I["mem_util"]] >= MEM_MAX:
        out.append("memory")
    if raw[_I["rtt_ms"]] >= RTT_BAD_MS:
        out.append("rtt")
    if raw[_I["loss_max"]] >= LOSS_BAD:
        out.append("loss")
    if raw[_I["link_changes"]] >= LINK_CHANGES_MAX:
        out.append("flapping")
    if raw[_I["if_errors_per_s"]] >= IF_ERRORS_MAX_PER_S:
        out.append("interface_errors")
    if raw[_I["fwd_ratio"]] <= FWD_RATIO_MIN:
        out.append("not_forwarding")
    return out
