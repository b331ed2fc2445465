"""`x0node testbed up|fault|heal|restart|status|down`: namespace meshes from the command line.

Every command works on one run directory (`--run-dir`, default $X0NODE_TESTBED_DIR or
/tmp/x0node-testbed), which holds the testbed's state, node data directories and logs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_RUN_DIR = os.environ.get("X0NODE_TESTBED_DIR", "/tmp/x0node-testbed")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "testbed", help="namespace mesh for tests, benchmarks and demos (needs root)",
        description="Build a mesh of network namespaces joined by veths, run a routing daemon in each, "
        "inject faults, inspect and remove it. Nodes are named 1..N (or n1..nN).",
    )
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="testbed state, node data and logs (default %(default)s)")
    sub = p.add_subparsers(dest="testbed_cmd", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="create the mesh and start the daemons")
    up.add_argument("--topology", default="ring:6",
                    help="ring:N, line:N, grid:RxC, ladder:N, random:N[:SEED[:DEGREE]] or file:PATH (default %(default)s)")
    up.add_argument("--daemon", choices=("x0node", "babeld", "none"), default="x0node")
    up.add_argument("--web", action="store_true", help="enable the web UI/API service on every node (port 8080)")
    up.add_argument("--babel-hello", type=float, default=None, metavar="S", help="babeld hello interval (s)")
    up.add_argument("--routing", action="append", default=[], metavar="KEY=VALUE",
                    help="x0node [routing] override (repeatable), e.g. hello_interval_s=0.2")

    fault = sub.add_parser("fault", help="inject a fault: link-down A B | link-silent A B | loss A B PCT | kill A")
    fault.add_argument("kind", choices=("link-down", "link-silent", "loss", "kill"))
    fault.add_argument("nodes", nargs="+", help="node(s), and the loss percentage for loss")

    heal = sub.add_parser("heal", help="undo a link fault between A and B")
    heal.add_argument("a")
    heal.add_argument("b")
    restart = sub.add_parser("restart", help="start a killed node again (same key and data)")
    restart.add_argument("node")

    status = sub.add_parser("status", help="show nodes, namespaces, ids, mesh addresses, API URLs")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("down", help="stop the daemons and delete everything the testbed created")
    p.set_defaults(func=run)


def _parse_value(text: str) -> object:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    return text


def run(args: argparse.Namespace) -> int:
    from x0lab.testbed.bed import Testbed, TestbedError, up
    from x0lab.testbed.topology import TopologyError

    try:
        if args.testbed_cmd == "up":
            routing = {}
            for item in args.routing:
                key, sep, value = item.partition("=")
                if not sep:
                    print(f"--routing expects KEY=VALUE, got {item!r}", file=sys.stderr)
                    return 2
                routing[key] = _parse_value(value)
            bed = up(args.run_dir, args.topology, args.daemon, routing=routing, web=args.web,
                     babel_hello_s=args.babel_hello)
            _print_status(bed.status())
            return 0
        bed = Testbed.open(args.run_dir)
        if args.testbed_cmd == "fault":
            if args.kind == "kill":
                if len(args.nodes) != 1:
                    print("fault kill takes one node", file=sys.stderr)
                    return 2
                bed.fault("kill", args.nodes[0])
            elif args.kind == "loss":
                if len(args.nodes) != 3:
                    print("fault loss takes A B PERCENT", file=sys.stderr)
                    return 2
                bed.fault("loss", args.nodes[0], args.nodes[1], percent=float(args.nodes[2]))
            else:
                if len(args.nodes) != 2:
                    print(f"fault {args.kind} takes two nodes", file=sys.stderr)
                    return 2
                bed.fault(args.kind, args.nodes[0], args.nodes[1])
        elif args.testbed_cmd == "heal":
            bed.heal(args.a, args.b)
        elif args.testbed_cmd == "restart":
            bed.restart(args.node)
        elif args.testbed_cmd == "status":
            st = bed.status()
            if args.json:
                print(json.dumps(st, indent=1))
            else:
                _print_status(st)
        elif args.testbed_cmd == "down":
            bed.down()
        return 0
    except (TestbedError, TopologyError, ValueError) as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1


def _print_status(st: dict) -> None:
    print(f"testbed {st['id']}  daemon={st['daemon']}  topology={st['topology']}  run_dir={st['run_dir']}")
    for n in st["nodes"]:
        state = "up" if n["alive"] else "down"
        api = f"  api={n['api']}" if n.get("api") else ""
        print(f"  n{n['node']:<3} {state:<4} ns={n['ns']:<16} id={n['node_id'] or '-'}  addr={n['mesh_addr'] or '-'}{api}")
    if st["faults"]:
        print("  faults: " + ", ".join(sorted(st["faults"])))
