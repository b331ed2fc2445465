"""Running an exported anomaly model (.tflite) with LiteRT.

Rules and invariants:
- The interpreter is imported lazily, on the first model load, in this order: ai_edge_litert
  (the device runtime), tflite_runtime (older images), tensorflow.lite (development machines only).
  `RuntimeMissing` is raised when none imports, so the fallback chain can degrade.
- A model's inputs are found by name (`x_self`, `x_nbr`, `mask`); a model without `x_nbr` is a
  self-only model (the MLP). Quantised (int8) inputs are quantised here with the model's own
  scale/zero point after clipping to [0, 1]; int8 outputs are dequantised, so callers always see float
  logits.
- Batches of any size are accepted; the interpreter is resized only when the batch size changes and
  large batches are cut into chunks of `MAX_BATCH`.
- Anything wrong with the file (unreadable, not a flatbuffer, wrong signature) raises `ModelError`.
"""

from __future__ import annotations

import hashlib
import importlib
import pathlib
from typing import Any

import numpy as np

from x0node.anomaly.features import K_NEIGHBOURS, N_FEATURES

MAX_BATCH = 4096
MAX_MODEL_BYTES = 4 * 1024 * 1024


class ModelError(Exception):
    """The model file is missing, corrupt or does not have the expected inputs/outputs."""


class RuntimeMissing(ModelError):
    """No TFLite interpreter could be imported."""


_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow.lite", "Interpreter"),
)


def load_interpreter_class(modules: tuple[tuple[str, str], ...] = _RUNTIMES) -> tuple[type, str]:
    """(Interpreter class, module name) of the first runtime that imports."""
    errors = []
    for mod_name, attr in modules:
        try:
            mod = importlib.import_module(mod_name)
            return getattr(mod, attr), mod_name
        except Exception as exc:  # noqa: BLE001 - any import failure means "not this runtime"
            errors.append(f"{mod_name}: {type(exc).__name__}")
    raise RuntimeMissing("no TFLite runtime: " + ", ".join(errors))


def sha256_file(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TfliteModel:
    """One loaded .tflite anomaly model producing float logits."""

    def __init__(self, model: bytes, interpreter_cls: type | None = None, num_threads: int = 1) -> None:
        if not isinstance(model, bytes | bytearray) or len(model) < 16 or len(model) > MAX_MODEL_BYTES:
            raise ModelError("model is empty, too small or too large")
        if model[4:8] != b"TFL3":
            raise ModelError("not a TFLite flatbuffer (missing TFL3 identifier)")
        cls = interpreter_cls if interpreter_cls is not None else load_interpreter_class()[0]
        try:
            self._it: Any = cls(model_content=bytes(model), num_threads=num_threads)
            self._it.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - the runtime raises various types on bad files
            raise ModelError(f"runtime rejected the model: {exc}") from exc
        self._inputs: dict[str, dict[str, Any]] = {}
        for d in self._it.get_input_details():
            name = d["name"]
            for key in ("x_self", "x_nbr", "mask"):
                if key in name:
                    self._inputs[key] = d
        outs = self._it.get_output_details()
        if "x_self" not in self._inputs or len(outs) != 1:
            raise ModelError("model lacks an x_self input or a single output")
        if ("x_nbr" in self._inputs) != ("mask" in self._inputs):
            raise ModelError("model has only one of x_nbr/mask")
        self._out = outs[0]
        self.uses_neighbours = "x_nbr" in self._inputs
        self.quantised = self._inputs["x_self"]["dtype"] == np.int8
        self._batch = -1
        if self._inputs["x_self"]["shape"][-1] != N_FEATURES:
            raise ModelError("model feature width differs from features.N_FEATURES")
        if self.uses_neighbours and tuple(self._inputs["x_nbr"]["shape"][-2:]) != (K_NEIGHBOURS, N_FEATURES):
            raise ModelError("model neighbour block differs from K_NEIGHBOURS x N_FEATURES")

    @classmethod
    def from_file(cls, path: pathlib.Path, interpreter_cls: type | None = None) -> TfliteModel:
        try:
            data = pathlib.Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc}") from exc
        return cls(data, interpreter_cls)

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        for key, d in self._inputs.items():
            shape = list(d["shape"])
            shape[0] = batch
            self._it.resize_tensor_input(d["index"], shape)
            del key
        self._it.allocate_tensors()
        self._batch = batch

    @staticmethod
    def _feed(d: dict[str, Any], x: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
        if d["dtype"] == np.int8:
            scale, zp = d["quantization"]
            return np.clip(np.round(x / scale + zp), -128, 127).astype(np.int8)
        return x.astype(d["dtype"])

    def logits(
        self, x_self: np.ndarray, x_nbr: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Float logits [B] for normalised inputs (neighbour inputs ignored by self-only models)."""
        x_self = np.asarray(x_self, dtype=np.float32).reshape(-1, N_FEATURES)
        b = x_self.shape[0]
        if self.uses_neighbours:
            if x_nbr is None or mask is None:
                x_nbr = np.zeros((b, K_NEIGHBOURS, N_FEATURES), np.float32)
                mask = np.zeros((b, K_NEIGHBOURS), np.float32)
            x_nbr = np.asarray(x_nbr, dtype=np.float32).reshape(b, K_NEIGHBOURS, N_FEATURES)
            mask = np.asarray(mask, dtype=np.float32).reshape(b, K_NEIGHBOURS)
        out = np.empty(b, dtype=np.float32)
        for lo in range(0, b, MAX_BATCH):
            hi = min(b, lo + MAX_BATCH)
            self._resize(hi - lo)
            self._it.set_tensor(self._inputs["x_self"]["index"], self._feed(self._inputs["x_self"], x_self[lo:hi]))
            if self.uses_neighbours:
                assert x_nbr is not None and mask is not None
                self._it.set_tensor(self._inputs["x_nbr"]["index"], self._feed(self._inputs["x_nbr"], x_nbr[lo:hi]))
                self._it.set_tensor(self._inputs["mask"]["index"], self._feed(self._inputs["mask"], mask[lo:hi]))
            self._it.invoke()
            y = self._it.get_tensor(self._out["index"]).reshape(-1)
            if self._out["dtype"] == np.int8:
                scale, zp = self._out["quantization"]
                y = (y.astype(np.float32) - zp) * scale
            out[lo:hi] = y
        return out
