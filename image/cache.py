"""Input-keyed stage cache.

Rules: a cached artefact's key is the sha256 of a canonical JSON of everything that determines it
(package lists, board file, source hashes, tool versions, the step's format number). A key never names
the time, so a rebuild with the same inputs reuses the artefact, and any changed input misses. Entries
are written to a temporary name and renamed, so an interrupted build never leaves a half entry.
The cache lives outside the repository by default (`X0_IMAGE_CACHE`, else ~/.cache/x0tta6bl4/image);
a miss is always rebuilt, so an empty or deleted cache only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

CACHE_ENV = "X0_IMAGE_CACHE"


def cache_root() -> pathlib.Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "x0tta6bl4" / "image"


def key_of(inputs: dict[str, Any]) -> str:
    canon = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:24]


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(root: pathlib.Path, patterns: tuple[str, ...] = ("**/*",)) -> str:
    """Hash of the relative paths and contents of the files under root matching patterns."""
    h = hashlib.sha256()
    files: set[pathlib.Path] = set()
    for pat in patterns:
        files.update(p for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts)
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()
