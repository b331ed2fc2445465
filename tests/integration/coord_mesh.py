"""Namespace meshes of real daemons with the coordination service: designated Raft members chosen by
node id after keys are provisioned, requests over each node's control socket (a path in its data
directory, so the host reaches every daemon without entering its namespace). Used by the coordination
integration tests and bench/coord.py.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from x0lab.testbed import provision
from x0lab.testbed.bed import Testbed
from x0node.coord import pools
from x0node.state import control

SOCKET = "coord.sock"


def coord_bed(run_dir: pathlib.Path, topology: str, members: list[int], coord: dict[str, Any] | None = None,
              sections: dict[str, Any] | None = None, **kw: Any) -> Testbed:
    """A started testbed whose nodes `members` (indexes) are the designated Raft members (`sections`:
    other services' config sections beside [coord])."""
    bed = Testbed.create(run_dir, topology, "x0node", sections={**(sections or {}), "coord": dict(coord or {})}, **kw)
    try:
        provision.provision_mesh(bed)
        ids = []
        for k in members:
            from x0node.proto.keyfile import load_node_key

            ids.append(load_node_key(pathlib.Path(bed.nodes[k].data_dir) / "node.key").node_id.hex())
        bed.state["sections"]["coord"]["members"] = ids
        bed.save()
        bed.start_all()
    except BaseException:
        bed.down()
        raise
    return bed


def ask(bed: Testbed, k: int, req: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    return control.request(pathlib.Path(bed.nodes[k].data_dir) / SOCKET, req, timeout_s)


def try_ask(bed: Testbed, k: int, req: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    try:
        return ask(bed, k, req, timeout_s)
    except (OSError, ValueError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def leader(bed: Testbed, nodes: list[int]) -> int | None:
    """The member node whose group says it leads (and has a quorum), or None."""
    for k in nodes:
        if not bed.alive(k):
            continue
        st = try_ask(bed, k, {"op": "status"}, 2.0)
        raft = st.get("raft") or {}
        if raft.get("is_leader") and raft.get("has_quorum"):
            return k
    return None


def wait_for(pred: Any, timeout_s: float, poll_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(poll_s)


def held_pools(bed: Testbed) -> dict[str, list[str]]:
    """node id -> the prefixes that node itself says it holds now (nodes that do not answer hold none)."""
    out: dict[str, list[str]] = {}
    for k, node in bed.nodes.items():
        if not bed.alive(k):
            continue
        p = try_ask(bed, k, {"op": "pool"}, 3.0).get("pool")
        if p:
            out[node.node_id or str(k)] = [p["v4"], p["v6"]]
    return out


def overlaps(bed: Testbed) -> list[tuple[str, str, str, str]]:
    return pools.overlapping(held_pools(bed))
