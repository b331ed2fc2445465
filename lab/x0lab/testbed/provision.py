"""Key material for a testbed of x0node daemons: one trust anchor per testbed, a certified key per node.

Rules: the anchor key lives in the run directory (0600), never in a node's data directory; each node
gets node.key (0600), node.cert (signed by the anchor) and anchor.pub in its own data directory, which
is where the daemon looks by default. An existing node key is kept (a restarted node keeps its id).
`uncertified_node` makes a data directory whose key is signed by a different anchor (for tests).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from x0node.proto.identity import Identity
from x0node.proto.keyfile import (
    load_anchor_key,
    load_or_create_node_key,
    save_anchor_key,
    save_anchor_public,
    save_certificate,
)
from x0node.proto.trust import TrustAnchor

ANCHOR_FILE = "anchor.key"


def mesh_anchor(run_dir: pathlib.Path) -> TrustAnchor:
    path = run_dir / ANCHOR_FILE
    if path.exists():
        return load_anchor_key(path)
    anchor = TrustAnchor.from_seed(os.urandom(32))
    save_anchor_key(path, anchor)
    return anchor


def provision_node(data_dir: pathlib.Path, anchor: TrustAnchor, trusted: TrustAnchor | None = None) -> Identity:
    """node.key (kept if present), node.cert signed by `anchor`, anchor.pub of `trusted` (default anchor)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    identity = load_or_create_node_key(data_dir / "node.key")
    save_certificate(data_dir / "node.cert", anchor.certify(identity.public_key))
    save_anchor_public(data_dir / "anchor.pub", (trusted or anchor).public_key)
    return identity


def provision_mesh(bed: Any) -> None:
    anchor = mesh_anchor(bed.run_dir)
    for node in bed.nodes.values():
        provision_node(pathlib.Path(node.data_dir), anchor)


def uncertified_node(data_dir: pathlib.Path, mesh_run_dir: pathlib.Path) -> Identity:
    """A node that trusts the mesh's anchor but whose own certificate comes from a foreign anchor."""
    foreign = TrustAnchor.from_seed(os.urandom(32))
    return provision_node(data_dir, foreign, trusted=mesh_anchor(mesh_run_dir))
