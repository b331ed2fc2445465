"""Locating and verifying the shipped anomaly model files (anomaly_model.json, *.tflite, SHA256SUMS).

Rules and invariants:
- The model directory is the explicit argument (config `anomaly.model_dir`) when given; otherwise,
  in order: the environment variable X0NODE_MODEL_DIR, the source tree's `models/` (development),
  /usr/share/x0node/models (images); the first one holding anomaly_model.json wins.
- Every file is checked against SHA256SUMS before use; a mismatch, a missing file or malformed
  metadata raises `BundleError` with the reason, so the fallback chain can degrade and say why.
- Files are size-bounded (MAX_META_BYTES, tflite_model.MAX_MODEL_BYTES) before they are parsed.
- This module reads files; the decision logic never does.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from x0node.anomaly.features import FEATURES, K_NEIGHBOURS
from x0node.anomaly.tflite_model import MAX_MODEL_BYTES

META_NAME = "anomaly_model.json"
SUMS_NAME = "SHA256SUMS"
MAX_META_BYTES = 1024 * 1024
SYSTEM_MODEL_DIR = pathlib.Path("/usr/share/x0node/models")
SOURCE_MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "models"


class BundleError(Exception):
    """The model bundle is missing, altered or malformed."""


@dataclass(frozen=True)
class Bundle:
    directory: pathlib.Path
    meta: dict[str, Any]

    def path(self, detector: str) -> pathlib.Path:
        return self.directory / self.meta["files"][detector]

    def threshold(self, detector: str) -> float:
        return float(self.meta["thresholds"][detector])

    @property
    def train_hist(self) -> np.ndarray:
        return np.asarray(self.meta["psi"]["train_hist"], dtype=np.float64)

    def read_model(self, detector: str) -> bytes:
        """The verified bytes of one model file."""
        return _read_verified(self.directory, self.meta["files"][detector], MAX_MODEL_BYTES)


def find_model_dir(explicit: str | os.PathLike[str] | None = None) -> pathlib.Path:
    if explicit:  # an explicit directory is used as given, never silently replaced
        return pathlib.Path(explicit)
    candidates = []
    env = os.environ.get("X0NODE_MODEL_DIR")
    if env:
        candidates.append(pathlib.Path(env))
    candidates += [SOURCE_MODEL_DIR, SYSTEM_MODEL_DIR]
    for c in candidates:
        if (c / META_NAME).is_file():
            return c
    raise BundleError("no model directory with " + META_NAME + " in " + ", ".join(map(str, candidates)))


def _sums(directory: pathlib.Path) -> dict[str, str]:
    try:
        text = (directory / SUMS_NAME).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{SUMS_NAME}: unreadable ({exc})") from exc
    out = {}
    for line in text.splitlines()[:64]:
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1]] = parts[0].lower()
    return out


def _check_sum(directory: pathlib.Path, name: str, data: bytes) -> None:
    want = _sums(directory).get(name)
    if want is None:
        raise BundleError(f"{name}: not listed in {SUMS_NAME}")
    if hashlib.sha256(data).hexdigest() != want:
        raise BundleError(f"{name}: checksum mismatch")


def _read_verified(directory: pathlib.Path, name: str, max_bytes: int) -> bytes:
    """The bytes of `directory/name`, refused (BundleError) when larger than `max_bytes`,
    unreadable, or not matching its line in SUMS_NAME."""
    p = directory / name
    try:
        if p.stat().st_size > max_bytes:
            raise BundleError(f"{p.name}: larger than {max_bytes} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"{p.name}: {exc.strerror or exc}") from exc
    _check_sum(directory, p.name, data)
    return data


def load_bundle(model_dir: str | os.PathLike[str] | None = None) -> Bundle:
    directory = find_model_dir(model_dir)
    data = _read_verified(directory, META_NAME, MAX_META_BYTES)
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{META_NAME}: not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != 1:
        raise BundleError(f"{META_NAME}: unknown format")
    if tuple(meta.get("features", ())) != FEATURES or meta.get("k_neighbours") != K_NEIGHBOURS:
        raise BundleError(f"{META_NAME}: features or K differ from this build")
    for key in ("files", "thresholds", "psi", "self_test"):
        if not isinstance(meta.get(key), dict):
            raise BundleError(f"{META_NAME}: missing {key}")
    return Bundle(directory, meta)
