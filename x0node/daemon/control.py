"""The running node's status, on a local socket and as `x0node status`.

- The daemon serves `<data_dir>/x0node.sock` with the local control server of x0node/state/control.py
  (mode 0600 in the 0700 data directory, root or the daemon's user only, one JSON line in, one out).
  It answers {"op": "status"} with the routing core's read model as the web API gives it: the node,
  its neighbours (RTT, loss, throughput and where it came from, class, cost), the node manager's
  statistics of the mesh, the core's counters and the routing commands in force (penalties, drains,
  steering, the sick flag: x0node/proto/commands.py). Nothing sent through it changes any state.
- `x0node status [--data-dir D] [--json]` asks it and prints a summary (or the JSON). Exit status: 0,
  1 when no daemon answers at that data directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any

SOCKET_NAME = "x0node.sock"
DEFAULT_DATA_DIR = "/data/x0node"


def status_answer(router: Any, now: float) -> dict[str, Any]:
    """The status document of a running router (its views as plain JSON values)."""
    st = router.stats()
    return {
        "ok": True,
        "node_id": st.node_id,
        "mesh_addr": st.mesh_addr,
        "interfaces": [dataclasses.asdict(i) for i in st.interfaces],
        "neighbours": [dataclasses.asdict(n) for n in router.neighbours(now)],
        "routes": st.routes,
        "lsdb_size": st.lsdb_size,
        "mesh": dataclasses.asdict(st.mesh),
        "counters": dict(st.counters),
        "commands": [dataclasses.asdict(c) for c in getattr(router, "commands_in_force", lambda now: ())(now)],
    }


async def serve(path: pathlib.Path, router: Any, now: Any) -> Any:
    """Start answering status requests at `path`; returns the server (close it to stop)."""
    from x0node.state import control

    async def handle(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") != "status":
            return {"ok": False, "error": "unknown op; this socket answers {\"op\": \"status\"}"}
        return status_answer(router, now())

    return await control.serve(path, handle)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="the running node: neighbours, throughput, mesh statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=run)


def _rate(bps: Any) -> str:
    if not isinstance(bps, int | float):
        return "-"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bit/s"


def run(args: argparse.Namespace) -> int:
    from x0node.state import control

    try:
        st = control.request(pathlib.Path(args.data_dir) / SOCKET_NAME, {"op": "status"})
    except (OSError, ValueError) as exc:
        print(f"no running daemon at {args.data_dir}/{SOCKET_NAME}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=1, sort_keys=True))
        return 0 if st.get("ok") else 1
    if not st.get("ok"):
        print(st.get("error"), file=sys.stderr)
        return 1
    mesh = st["mesh"]
    print(f"node {st['node_id']}  {st['mesh_addr']}")
    print(f"mesh: {mesh['nodes']} nodes ({mesh['reachable']} reachable), {mesh['links']} links, "
          f"mean degree {mesh['mean_degree']}, max {mesh['max_hops']} hops, "
          f"{mesh['joins']} joined / {mesh['leaves']} left since start")
    print("links by quality: " + ", ".join(f"{q} {n}" for q, n in mesh["quality_histogram"].items()))
    print(f"routes {st['routes']}, link-state records {st['lsdb_size']}")
    print(f"{'neighbour':<34}{'if':<8}{'state':<6}{'rtt':>9}{'loss':>8}{'throughput':>14} {'from':<7}{'quality':<10}{'cost':>6}")
    for n in st["neighbours"]:
        rtt = "-" if n["rtt_ms"] is None else f"{n['rtt_ms']:.1f} ms"
        print(f"{n['node_id']:<34}{n['ifname']:<8}{n['state']:<6}{rtt:>9}{n['loss'] * 100:>7.1f}%"
              f"{_rate(n['throughput_bps']):>14} {n.get('throughput_source') or '-':<7}{n['quality']:<10}{n['cost']:>6}")
    for c in st.get("commands", []):
        where = f" on {c['ifname']}" if c["ifname"] else ""
        cost = f", cost {c['cost']}" if c.get("cost") is not None else ""
        print(f"command {c['kind']} {c['target']}{where} x{c['factor']:g}{cost}, expires in {c['expires_in_s']:.0f} s")
    return 0
