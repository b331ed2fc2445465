"""The update manifest: what a bundle is, who signed it, and whether this node may take it (sans-I/O).

A manifest describes one RAUC bundle (`.raucb`) for one board: `board`, `compat` (RAUC's compatible
string; a node takes only its own), `version` (human), `serial` (the release's integer order: the
build's SOURCE_DATE_EPOCH, strictly increasing from release to release), and the bundle's `sha256`,
`bytes`, `chunk_bytes` and the SHA-256 of every chunk (content addresses for mesh distribution).

Rules and invariants:
- The signed bytes are the canonical JSON of the manifest object (sorted keys, no spaces, ASCII, only
  strings, integers, lists and objects: no floats, so re-encoding a parsed manifest gives the same
  bytes), prefixed with SIGNING_DOMAIN. A manifest counts as signed only with valid Ed25519 signatures
  by at least `threshold` distinct keys of the node's release-key set (N of M, as Gluon's autoupdater
  does); signatures by unknown keys are ignored, never counted.
- `parse` bounds everything before it looks inside (MANIFEST_MAX_BYTES, CHUNKS_MAX, string lengths)
  and raises one ManifestError with a reason; `admit` decides whether this node takes a parsed and
  verified manifest and returns a Refusal with a stable reason code and a sentence, or None.
- Order of checks in `admit`: signature first (nothing unauthenticated is judged further), then board,
  compat, then the release order: a serial below the running one is a downgrade (only a local operator
  may force it, never the mesh); from the mesh, a serial not above the highest this node ever
  installed is a replay (an old or superseded manifest announced again); a bundle that failed the
  health gate here is never taken again unless an operator forces it.
- The chunk hashes must chain to the bundle: `bundle_bytes` = sum of chunk sizes, every chunk but the
  last is `chunk_bytes` long; the whole bundle's SHA-256 is checked again after the last chunk.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SIGNING_DOMAIN = b"x0tta6bl4-ota-manifest-v1\x00"
MANIFEST_FORMAT = 1
MANIFEST_MAX_BYTES = 512 * 1024
CHUNKS_MAX = 8192
CHUNK_BYTES_MIN = 64 * 1024
CHUNK_BYTES_MAX = 16 * 1024 * 1024
BUNDLE_BYTES_MAX = 2 * 1024 * 1024 * 1024
SIGNATURES_MAX = 16
RELEASE_KEYS_MAX = 16
TEXT_MAX = 128
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$")


class ManifestError(ValueError):
    """A manifest that cannot be parsed or verified; `reason` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Manifest:
    board: str
    compat: str
    version: str
    serial: int
    bundle_name: str
    bundle_sha256: str
    bundle_bytes: int
    chunk_bytes: int
    chunks: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "board": self.board, "compat": self.compat, "version": self.version,
                "serial": self.serial,
                "bundle": {"name": self.bundle_name, "sha256": self.bundle_sha256, "bytes": self.bundle_bytes,
                           "chunk_bytes": self.chunk_bytes, "chunks": list(self.chunks)}}

    def canonical(self) -> bytes:
        return canonical_json(self.body())

    @property
    def id(self) -> str:
        """The manifest's content address: SHA-256 of its canonical bytes (hex)."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def chunk_size(self, index: int) -> int:
        if index < len(self.chunks) - 1:
            return self.chunk_bytes
        return self.bundle_bytes - self.chunk_bytes * (len(self.chunks) - 1)

    def chunk_ok(self, index: int, data: bytes) -> bool:
        return (0 <= index < len(self.chunks) and len(data) == self.chunk_size(index)
                and hashlib.sha256(data).hexdigest() == self.chunks[index])


@dataclass(frozen=True)
class Signed:
    """A manifest with the signatures found on it: (public key hex, signature hex)."""

    manifest: Manifest
    signatures: tuple[tuple[str, str], ...]

    def encode(self) -> bytes:
        return json.dumps({"manifest": self.manifest.body(),
                           "signatures": [{"key": k, "sig": s} for k, s in self.signatures]},
                          indent=1, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class ReleaseKeys:
    """The release keys this node trusts and how many must sign (N of M)."""

    keys: frozenset[str]
    threshold: int

    @staticmethod
    def from_json(doc: Any) -> ReleaseKeys:
        if not isinstance(doc, dict):
            raise ManifestError("bad_keys", "release keys: expected an object")
        keys, threshold = doc.get("keys"), doc.get("threshold")
        if (not isinstance(keys, list) or not 1 <= len(keys) <= RELEASE_KEYS_MAX
                or not all(isinstance(k, str) and _HEX64.match(k) for k in keys)):
            raise ManifestError("bad_keys", f"release keys: expected 1..{RELEASE_KEYS_MAX} Ed25519 keys in hex")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= len(set(keys)):
            raise ManifestError("bad_keys", "release keys: threshold must be between 1 and the number of keys")
        return ReleaseKeys(frozenset(keys), threshold)

    def to_json(self) -> dict[str, Any]:
        return {"keys": sorted(self.keys), "threshold": self.threshold}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chunk_hashes(data_chunks: list[bytes]) -> tuple[str, ...]:
    return tuple(hashlib.sha256(c).hexdigest() for c in data_chunks)


def _text(d: dict[str, Any], key: str, pattern: re.Pattern[str] = _NAME) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not pattern.match(v):
        raise ManifestError("malformed", f"manifest field {key!r}: expected a short name")
    return v


def _int(d: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ManifestError("malformed", f"manifest field {key!r}: expected an integer in {lo}..{hi}")
    return v


def manifest_from_body(body: Any) -> Manifest:
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        raise ManifestError("malformed", f"not a format-{MANIFEST_FORMAT} manifest")
    unknown = set(body) - {"format", "board", "compat", "version", "serial", "bundle"}
    if unknown:
        raise ManifestError("malformed", f"unknown manifest fields: {', '.join(sorted(unknown))}")
    b = body.get("bundle")
    if not isinstance(b, dict) or set(b) != {"name", "sha256", "bytes", "chunk_bytes", "chunks"}:
        raise ManifestError("malformed", "manifest field 'bundle': expected name, sha256, bytes, chunk_bytes, chunks")
    chunks = b["chunks"]
    if not isinstance(chunks, list) or not 1 <= len(chunks) <= CHUNKS_MAX:
        raise ManifestError("malformed", f"bundle.chunks: expected 1..{CHUNKS_MAX} hashes")
    if not all(isinstance(c, str) and _HEX64.match(c) for c in chunks):
        raise ManifestError("malformed", "bundle.chunks: expected SHA-256 hashes in lower-case hex")
    m = Manifest(board=_text(body, "board"), compat=_text(body, "compat"), version=_text(body, "version"),
                 serial=_int(body, "serial", 0, 2**53), bundle_name=_text(b, "name"),
                 bundle_sha256=_text(b, "sha256", _HEX64), bundle_bytes=_int(b, "bytes", 1, BUNDLE_BYTES_MAX),
                 chunk_bytes=_int(b, "chunk_bytes", CHUNK_BYTES_MIN, CHUNK_BYTES_MAX), chunks=tuple(chunks))
    expect = -(-m.bundle_bytes // m.chunk_bytes)
    if expect != len(m.chunks):
        raise ManifestError("malformed", f"bundle of {m.bundle_bytes} bytes in chunks of {m.chunk_bytes} "
                            f"needs {expect} chunk hashes, the manifest has {len(m.chunks)}")
    return m


def parse(data: bytes) -> Signed:
    """A signed manifest file (JSON: {"manifest": {...}, "signatures": [{"key", "sig"}]}), unverified."""
    if len(data) > MANIFEST_MAX_BYTES:
        raise ManifestError("too_large", f"manifest larger than {MANIFEST_MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError("malformed", f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"manifest", "signatures"}:
        raise ManifestError("malformed", "expected an object with 'manifest' and 'signatures'")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or len(sigs) > SIGNATURES_MAX:
        raise ManifestError("malformed", f"signatures: expected a list of at most {SIGNATURES_MAX}")
    pairs = []
    for s in sigs:
        if (not isinstance(s, dict) or not isinstance(s.get("key"), str) or not isinstance(s.get("sig"), str)
                or not _HEX64.match(s["key"]) or not re.fullmatch(r"[0-9a-f]{128}", s["sig"])):
            raise ManifestError("malformed", "signatures: expected {key: 64 hex, sig: 128 hex}")
        pairs.append((s["key"], s["sig"]))
    return Signed(manifest_from_body(doc["manifest"]), tuple(pairs))


def sign(manifest: Manifest, keys: list[SigningKey], existing: tuple[tuple[str, str], ...] = ()) -> Signed:
    """Add signatures by `keys` (a release key holder signs; signatures by other holders are kept)."""
    msg = SIGNING_DOMAIN + manifest.canonical()
    out = dict(existing)
    for k in keys:
        out[k.verify_key.encode().hex()] = k.sign(msg).signature.hex()
    return Signed(manifest, tuple(sorted(out.items())))


def valid_signers(signed: Signed, keys: ReleaseKeys) -> set[str]:
    msg = SIGNING_DOMAIN + signed.manifest.canonical()
    ok = set()
    for key, sig in signed.signatures:
        if key not in keys.keys or key in ok:
            continue
        try:
            VerifyKey(bytes.fromhex(key)).verify(msg, bytes.fromhex(sig))
        except (BadSignatureError, ValueError):
            continue
        ok.add(key)
    return ok


def verify(data: bytes, keys: ReleaseKeys) -> Manifest:
    """Parse and check the N-of-M signatures; ManifestError('bad_signature') when too few are valid."""
    signed = parse(data)
    n = len(valid_signers(signed, keys))
    if n < keys.threshold:
        raise ManifestError("bad_signature", f"manifest signed by {n} trusted release key(s), "
                            f"{keys.threshold} required")
    return signed.manifest


@dataclass(frozen=True)
class Local:
    """What this node knows when it judges a manifest."""

    board: str
    compat: str
    running_serial: int
    running_version: str
    highest_serial: int  # highest serial ever installed here (persisted on /data), >= running_serial
    failed: frozenset[str] = frozenset()  # manifest ids that failed the health gate here


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def admit(m: Manifest, local: Local, *, force: bool = False, from_mesh: bool = False) -> Refusal | None:
    """Whether this node takes a verified manifest. `force` (a local operator's, never the mesh's) allows
    a downgrade or a re-install; from the mesh an old manifest is always a replay."""
    if m.board != local.board:
        return Refusal("wrong_board", f"bundle is for board {m.board!r}, this node is {local.board!r}")
    if m.compat != local.compat:
        return Refusal("incompatible", f"bundle compatible {m.compat!r} does not match {local.compat!r}")
    if m.serial == local.running_serial and m.version == local.running_version:
        return Refusal("installed", f"version {m.version} is already running")
    force = force and not from_mesh
    if m.id in local.failed and not force:
        return Refusal("failed_here", f"version {m.version} failed the health gate on this node before")
    if force:
        return None
    if m.serial <= local.highest_serial and from_mesh:
        return Refusal("replayed", f"serial {m.serial} is not newer than serial {local.highest_serial} "
                       "installed here before: a replayed or superseded manifest (the mesh never downgrades)")
    if m.serial < local.running_serial:
        return Refusal("downgrade", f"version {m.version} (serial {m.serial}) is older than the running "
                       f"{local.running_version} (serial {local.running_serial}); a downgrade needs force")
    if m.serial <= local.highest_serial:
        return Refusal("replayed", f"serial {m.serial} is not newer than serial {local.highest_serial} "
                       "installed here before; installing it again needs force")
    return None
