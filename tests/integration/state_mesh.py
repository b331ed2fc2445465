"""Namespace meshes of real daemons with the state service: ask nodes over their control sockets,
wait for equal digests, split and heal the mesh. Used by the state integration tests and bench/state.py.

The control socket is a path in each node's data directory, so the host process reaches every daemon
without entering its namespace; all traffic between nodes stays on the testbed's veths.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from x0lab.testbed.bed import Testbed, up
from x0node.state import control


def state_bed(run_dir: pathlib.Path, topology: str, state: dict[str, Any] | None = None, **kw: Any) -> Testbed:
    return up(run_dir, topology, "x0node", sections={"state": dict(state or {})}, **kw)


def ask(bed: Testbed, k: int, req: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    return control.request(pathlib.Path(bed.nodes[k].data_dir) / control.SOCKET_NAME, req, timeout_s)


def wait_socket(bed: Testbed, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for k in bed.nodes:
        while True:
            try:
                if ask(bed, k, {"op": "digest"}).get("ok"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"state service of n{k} not answering")
            time.sleep(0.05)


def digests(bed: Testbed, nodes: list[int] | None = None) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for k in nodes or list(bed.nodes):
        try:
            out[k] = ask(bed, k, {"op": "digest"}, 2.0).get("digest")
        except OSError:
            out[k] = None
    return out


def wait_equal(bed: Testbed, timeout_s: float, nodes: list[int] | None = None, poll_s: float = 0.02,
               want: str | None = None) -> float | None:
    """Seconds until every node (or `nodes`) reports the same digest (`want` if given), or None."""
    start = time.monotonic()
    while time.monotonic() - start <= timeout_s:
        d = set(digests(bed, nodes).values())
        if len(d) == 1 and None not in d and (want is None or want in d):
            return time.monotonic() - start
        time.sleep(poll_s)
    return None


def last_change_wall(bed: Testbed, key: str = "digest_changed_wall") -> float | None:
    """The latest wall time at which some node's digest (or CRL, key "crl_applied_wall") changed: once
    every node agrees, the instant the mesh converged. Read after the fact, so the measurement does not
    load the daemons while they converge."""
    times = [ask(bed, k, {"op": "digest"}).get(key) for k in bed.nodes]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def cut_links(bed: Testbed, side: set[int]) -> list[tuple[int, int]]:
    """The links between `side` and the rest of the mesh."""
    return [(a, b) for a, b in bed.topology.links if (a in side) != (b in side)]


def split(bed: Testbed, side: set[int]) -> list[tuple[int, int]]:
    links = cut_links(bed, side)
    bed.fault_links("link-silent", links)
    return links


def heal(bed: Testbed, links: list[tuple[int, int]]) -> None:
    bed.heal_links(links)
