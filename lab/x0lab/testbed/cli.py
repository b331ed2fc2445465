"""`x0node testbed up|fault|heal|restart|chaos|status|down`: namespace meshes from the command line.

Every command works on one run directory (`--run-dir`, default $X0NODE_TESTBED_DIR or
/tmp/x0node-testbed), which holds the testbed's state, node data directories, logs and the fault
lab's ground truth (`faults.jsonl`, chaos schedules). The fault kinds and their arguments come from
the table in faults.py; nothing here knows a fault by name.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
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

    from x0lab.testbed import faults

    kinds = "\n".join(f"  {fk.usage():<32} {fk.help}" for fk in faults.KINDS.values())
    fault = sub.add_parser("fault", help="inject a fault (kinds: " + ", ".join(faults.KINDS) + ")",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Inject one fault; its start is stamped when the kernel change is made and "
                           "logged to RUN_DIR/faults.jsonl.\n\n" + kinds)
    fault.add_argument("kind", choices=tuple(faults.KINDS), metavar="KIND")
    fault.add_argument("args", nargs="*", help="node(s), then the kind's parameters")

    heal = sub.add_parser("heal", help="undo the fault on link A B, or on node A (a killed node is started again)")
    heal.add_argument("a")
    heal.add_argument("b", nargs="?")
    restart = sub.add_parser("restart", help="start a killed node again (same key and data)")
    restart.add_argument("node")

    chaos = sub.add_parser("chaos", help="run a seeded random schedule of faults and write its ground truth (JSON)",
                           description="Run a randomized, seeded fault schedule on the testbed for --duration "
                           "seconds: at most --max-concurrent faults at once, on disjoint nodes, every start and end "
                           "at least --gap seconds from any other. Writes the ground truth (fault, target, params, "
                           "planned and actual start/end, monotonic and wall time) as JSON.")
    chaos.add_argument("--duration", type=float, required=True, metavar="S")
    chaos.add_argument("--seed", type=int, required=True, metavar="N")
    chaos.add_argument("--max-concurrent", type=int, default=2, metavar="K", help="default %(default)s")
    chaos.add_argument("--gap", type=float, default=5.0, metavar="S", help="min seconds between events (default %(default)s)")
    chaos.add_argument("--fault-min", type=float, default=10.0, metavar="S", help="default %(default)s")
    chaos.add_argument("--fault-max", type=float, default=30.0, metavar="S", help="default %(default)s")
    chaos.add_argument("--warmup", type=float, default=None, metavar="S", help="fault-free start (default: --gap)")
    chaos.add_argument("--kinds", default=None, help="comma-separated fault kinds (default: all this testbed can do)")
    chaos.add_argument("--out", default=None, help="ground truth file (default RUN_DIR/chaos-<seed>.json)")
    chaos.add_argument("--plan-only", action="store_true", help="print the schedule as JSON, change nothing")

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
            return _fault(bed, args.kind, args.args)
        elif args.testbed_cmd == "heal":
            bed.heal(args.a, args.b)
        elif args.testbed_cmd == "restart":
            bed.restart(args.node)
        elif args.testbed_cmd == "chaos":
            return _chaos(bed, args)
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


def _fault(bed, kind: str, words: list[str]) -> int:
    from x0lab.testbed import faults

    fk = faults.KINDS[kind]
    n_nodes = 2 if fk.target == "link" else 1
    required = n_nodes + sum(1 for p in fk.params if p.default is None)
    if not required <= len(words) <= n_nodes + len(fk.params):
        print(f"usage: x0node testbed fault {fk.usage()}", file=sys.stderr)
        return 2
    nodes, values = words[:n_nodes], words[n_nodes:]
    params = {p.name: v for p, v in zip(fk.params, values, strict=False)}
    record = bed.fault(kind, nodes[0], nodes[1] if n_nodes == 2 else None, **params)
    start = record["start"]
    print(f"{kind} {record['target']} {_fmt_params(record['params'])} started: mono={start['mono']:.6f} "
          f"wall={start['wall']:.6f} (+-{start['uncertainty_s'] * 1000:.1f} ms)")
    return 0


def _chaos(bed, args: argparse.Namespace) -> int:
    from x0lab.testbed import cgroups, chaos, faults

    if args.kinds:
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    else:
        kinds = tuple(k for k, fk in faults.KINDS.items()
                      if not (fk.needs_daemon and bed.daemon == "none")
                      and not (fk.needs_cgroups and not cgroups.available()))
    cfg = chaos.ChaosConfig(duration_s=args.duration, seed=args.seed, max_concurrent=args.max_concurrent,
                            min_gap_s=args.gap, fault_min_s=args.fault_min, fault_max_s=args.fault_max,
                            kinds=kinds, warmup_s=args.warmup)
    if args.plan_only:
        plan = chaos.plan_schedule(bed.topology, cfg)
        print(json.dumps([{"fault": p.kind, "target": p.target, "params": p.params, "start_s": p.start_s,
                           "end_s": p.end_s} for p in plan], indent=1))
        return 0
    out = pathlib.Path(args.out or bed.run_dir / f"chaos-{args.seed}.json")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        doc = chaos.run(bed, cfg, out, echo=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"interrupted; active faults healed; partial ground truth in {out}", file=sys.stderr)
        return 130
    applied = sum(1 for f in doc["faults"] if f["start"] is not None)
    print(f"{applied} faults applied and healed; ground truth in {out}")
    return 0


def _fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _print_status(st: dict) -> None:
    print(f"testbed {st['id']}  daemon={st['daemon']}  topology={st['topology']}  run_dir={st['run_dir']}")
    for n in st["nodes"]:
        state = "up" if n["alive"] else "down"
        api = f"  api={n['api']}" if n.get("api") else ""
        print(f"  n{n['node']:<3} {state:<4} ns={n['ns']:<16} id={n['node_id'] or '-'}  addr={n['mesh_addr'] or '-'}{api}")
    for key, f in sorted(st["faults"].items()):
        start = f.get("start") or {}
        print(f"  fault {f['kind']:<18} {key:<6} {_fmt_params(f.get('params', {}))}  since mono={start.get('mono', 0):.3f}")
