"""Key, certificate and revocation-list files (the only file access in x0node.proto; used by the
daemon at start and by `x0node keys`).

Formats (text, one header line then hex):
- node key:        "x0node-node-key v1" + 32-byte Ed25519 seed          (file mode 0600)
- trust anchor:    "x0node-anchor-key v1" + 32-byte Ed25519 seed        (file mode 0600)
- certificate:     "x0node-cert v2" + certificate bytes (trust.py; v2 lists granted prefixes, a v1
                   file is refused with a request to sign the key again)
- revocation list: "x0node-crl v1" + revocation list bytes (trust.py)
- anchor public:   "x0node-anchor-pub v1" + 32-byte public key

Rules:
- Secret files are created with mode 0600 atomically (temporary file + rename); an existing secret
  file with group/other permissions is refused (KeyFileError) rather than silently used.
- Reading is bounded (MAX_KEY_FILE_BYTES) and any malformed content raises KeyFileError naming the file.
"""

from __future__ import annotations

import pathlib
import stat

from x0node.io.atomicfile import write_atomic
from x0node.proto.identity import Identity
from x0node.proto.trust import Certificate, RevocationList, TrustAnchor
from x0node.proto.wire import DecodeError

MAX_KEY_FILE_BYTES = 200_000
NODE_KEY_HEADER = "x0node-node-key v1"
ANCHOR_KEY_HEADER = "x0node-anchor-key v1"
ANCHOR_PUB_HEADER = "x0node-anchor-pub v1"
CERT_HEADER = "x0node-cert v2"
OLD_HEADERS = {"x0node-cert v1": "a certificate of the format before prefix grants: sign the node key again (x0node keys sign)"}
CRL_HEADER = "x0node-crl v1"


class KeyFileError(Exception):
    """A key/certificate file is missing, malformed or has unsafe permissions (local fault)."""


def _write(path: pathlib.Path, header: str, data: bytes, secret: bool) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, f"{header}\n{data.hex()}\n".encode(), 0o600 if secret else 0o644)


def _read(path: pathlib.Path, header: str, secret: bool) -> bytes:
    path = pathlib.Path(path)
    try:
        st = path.stat()
        if secret and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path}: permissions {oct(st.st_mode & 0o777)} too open (want 0600)")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: too large")
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: {exc}") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0] in OLD_HEADERS:
        raise KeyFileError(f"{path}: {OLD_HEADERS[lines[0]]}")
    if len(lines) != 2 or lines[0] != header:
        raise KeyFileError(f"{path}: not a '{header}' file")
    try:
        return bytes.fromhex(lines[1])
    except ValueError as exc:
        raise KeyFileError(f"{path}: bad hex") from exc


def save_node_key(path: pathlib.Path, identity: Identity) -> None:
    _write(path, NODE_KEY_HEADER, identity.seed, secret=True)


def load_node_key(path: pathlib.Path) -> Identity:
    seed = _read(path, NODE_KEY_HEADER, secret=True)
    if len(seed) != 32:
        raise KeyFileError(f"{path}: key must be 32 bytes")
    return Identity.from_seed(seed)


def load_or_create_node_key(path: pathlib.Path) -> Identity:
    """The daemon's start-up helper: load the node key, creating it (0600) on first start."""
    path = pathlib.Path(path)
    if not path.exists():
        save_node_key(path, Identity.generate())
    return load_node_key(path)


def save_anchor_key(path: pathlib.Path, anchor: TrustAnchor) -> None:
    _write(path, ANCHOR_KEY_HEADER, anchor.seed, secret=True)


def load_anchor_key(path: pathlib.Path) -> TrustAnchor:
    seed = _read(path, ANCHOR_KEY_HEADER, secret=True)
    if len(seed) != 32:
        raise KeyFileError(f"{path}: key must be 32 bytes")
    return TrustAnchor.from_seed(seed)


def save_anchor_public(path: pathlib.Path, public_key: bytes) -> None:
    _write(path, ANCHOR_PUB_HEADER, public_key, secret=False)


def load_anchor_public(path: pathlib.Path) -> bytes:
    pk = _read(path, ANCHOR_PUB_HEADER, secret=False)
    if len(pk) != 32:
        raise KeyFileError(f"{path}: public key must be 32 bytes")
    return pk


def save_certificate(path: pathlib.Path, cert: Certificate) -> None:
    _write(path, CERT_HEADER, cert.encode(), secret=False)


def load_certificate(path: pathlib.Path) -> Certificate:
    try:
        return Certificate.decode(_read(path, CERT_HEADER, secret=False))
    except DecodeError as exc:
        raise KeyFileError(f"{path}: malformed certificate ({exc})") from exc


def save_revocations(path: pathlib.Path, crl: RevocationList) -> None:
    _write(path, CRL_HEADER, crl.encode(), secret=False)


def load_revocations(path: pathlib.Path) -> RevocationList:
    try:
        return RevocationList.decode(_read(path, CRL_HEADER, secret=False))
    except DecodeError as exc:
        raise KeyFileError(f"{path}: malformed revocation list ({exc})") from exc
