"""`x0node kv`: the quorum KV and the coordination group of a running daemon, through its control socket
(`<data_dir>/coord.sock`, root or the daemon's user only).

  x0node kv get KEY            quorum read (R=2); exit 1 when absent
  x0node kv put KEY VALUE      quorum write (W=2); dns/NAME takes {"a": [...], "aaaa": [...]}
  x0node kv del KEY            quorum delete (a signed tombstone)
  x0node kv status             group members, leader, timers, this node's pool, KV counters
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

DEFAULT_DATA_DIR = "/data/x0node"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("kv", help="mesh-wide quorum KV and coordination group: get, put, del, status")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    p.add_argument("--json", action="store_true", help="print the daemon's whole answer as JSON")
    sub = p.add_subparsers(dest="kv_command", metavar="ACTION", required=True)
    g = sub.add_parser("get", help="read KEY from a quorum of its replicas")
    g.add_argument("key")
    u = sub.add_parser("put", help="write VALUE under KEY to a quorum of its replicas")
    u.add_argument("key")
    u.add_argument("value")
    d = sub.add_parser("del", help="delete KEY (a signed tombstone written to a quorum)")
    d.add_argument("key")
    sub.add_parser("status", help="group members, leader, Raft timers, this node's pool, KV counters")
    p.set_defaults(func=run)


def _ask(data_dir: str, req: dict[str, Any]) -> dict[str, Any] | None:
    from x0node.state.control import request

    try:
        return request(pathlib.Path(data_dir) / "coord.sock", req, timeout_s=15.0)
    except OSError as exc:
        print(f"x0node kv: no coordination service answers at {data_dir}/coord.sock ({exc})", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    cmd = args.kv_command
    req: dict[str, Any] = {"status": {"op": "status"}, "get": {"op": "kv_get", "key": getattr(args, "key", "")},
                           "del": {"op": "kv_del", "key": getattr(args, "key", "")}}.get(cmd) or \
        {"op": "kv_put", "key": args.key, "value": args.value}
    ans = _ask(args.data_dir, req)
    if ans is None:
        return 2
    if args.json or cmd == "status":
        print(json.dumps(ans, indent=1, sort_keys=True))
    elif not ans.get("ok"):
        print(f"x0node kv {cmd}: {ans.get('error')}", file=sys.stderr)
    elif cmd == "get":
        if ans.get("found"):
            print(ans["value"])
        else:
            print(f"x0node kv get: {args.key} not found", file=sys.stderr)
            return 1
    else:
        print(f"ok ({ans.get('acks')} replicas)")
    return 0 if ans.get("ok") else 1
