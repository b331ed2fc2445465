"""`x0node bpf ...`: inspect, validate and profile the node's BPF programs.

  explain OBJ|PROG   disassembly, maps, helpers and control-flow graph (DOT/SVG with --graph-dir)
  validate OBJ       the admission checks the daemon applies before loading (manifest, license, limits);
                     with --load also the kernel verifier, whose log is shown if it refuses
  profile            per-program run count and ns/run from the kernel's BPF stats over an interval
  show               the running daemon's XDP counters, read from its pinned maps (exact, local)

Exit status: 0 ok, 1 refused/failed (the reason is printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROFILE_DURATION_MAX_S = 3600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bpf", help="inspect, validate and profile the BPF/XDP telemetry programs")
    sub = p.add_subparsers(dest="bpf_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    ex = sub.add_parser("explain", help="disassembly, maps, helpers and CFG of an object or program")
    ex.add_argument("target", help="object file, shipped program name (e.g. xdp_mac_stats) or id:N of a loaded program")
    ex.add_argument("--graph-dir", help="write <program>.dot (and .svg if Graphviz is installed) here")
    ex.add_argument("--no-listing", action="store_true", help="omit the disassembly")
    ex.add_argument("--dot", action="store_true", help="print the CFG in DOT instead of the text explanation")
    ex.set_defaults(func=_explain)

    va = sub.add_parser("validate", help="run the admission checks on an object")
    va.add_argument("object")
    va.add_argument("--manifest", help="manifest JSON (default: image manifest, else build/bpf/manifest.json)")
    va.add_argument("--load", action="store_true",
                    help="also load it into the kernel and unload it again (root); prints the verifier log if refused")
    va.set_defaults(func=_validate)

    pr = sub.add_parser("profile", help="run count and ns/run of loaded BPF programs (kernel BPF stats)")
    pr.add_argument("--duration", type=float, default=5.0, help="seconds to measure (default 5)")
    pr.add_argument("--all", action="store_true", help="every loaded program, not only ours")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.set_defaults(func=_profile)

    sh = sub.add_parser("show", help="the running daemon's XDP counters from its pinned maps")
    sh.add_argument("--pin-root", default=None, help="bpffs directory the daemon pins under (default /sys/fs/bpf/x0node)")
    sh.add_argument("--sources", type=int, default=10, help="how many sources to list (default 10)")
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(func=_show)


def _resolve(target: str) -> tuple[str, str]:
    """('file', path) | ('id', n) for an explain target."""
    if target.startswith("id:") and target[3:].isdigit() and len(target) <= 13:
        if int(target[3:]) >= 1 << 32:
            raise FileNotFoundError(f"{target}: program ids are 32-bit")
        return "id", target[3:]
    if os.path.exists(target):
        return "file", target
    from x0node.telemetry.probes import default_bpf_dir

    path = os.path.join(default_bpf_dir(), f"{target}.bpf.o")
    if os.path.exists(path):
        return "file", path
    raise FileNotFoundError(f"no object file or shipped program named {target!r} (looked in {default_bpf_dir()})")


def _explain(args: argparse.Namespace) -> int:
    from x0node.telemetry import elf, explainer
    from x0node.telemetry.libbpf import BpfError

    try:
        kind, what = _resolve(args.target)
        ex = explainer.explain_loaded(int(what)) if kind == "id" else explainer.explain_file(what)
    except (FileNotFoundError, elf.ElfError, BpfError, OSError) as exc:
        print(f"x0node bpf explain: {exc}", file=sys.stderr)
        return 1
    if args.dot:
        sys.stdout.write("".join(p.dot() for p in ex.programs))
    else:
        sys.stdout.write(explainer.render(ex, with_listing=not args.no_listing))
    if args.graph_dir:
        for path in explainer.write_graphs(ex, args.graph_dir):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from x0node.telemetry import validator
    from x0node.telemetry.libbpf import BpfError

    try:
        rep = validator.validate_file(args.object, args.manifest)
    except validator.ValidationError as exc:
        print(f"REFUSED {exc.path}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except BpfError as exc:
        print(f"REFUSED {args.object}: {exc}\n{exc.log}", file=sys.stderr)
        return 1
    if args.load:
        from x0node.telemetry.loader import BpfObject

        obj = None
        try:
            obj = BpfObject(args.object, pin_root=None)
            obj.load()
        except BpfError as exc:
            print(f"REFUSED {args.object}: {exc}", file=sys.stderr)
            print(_tail(exc.log), file=sys.stderr)
            return 1
        finally:
            if obj is not None:
                obj.close()
    print(f"OK {rep.path} sha256 {rep.sha256} license {rep.license}" + (" (loaded and unloaded)" if args.load else ""))
    for p in rep.programs:
        print(f"  program {p.name} ({p.section}, {p.insn_count} instructions)")
    for m in rep.maps:
        print(f"  map {m.name} ({m.type_name}, {m.max_entries} entries)")
    return 0


VERIFIER_LOG_TAIL_LINES = 60


def _tail(log: str, lines: int = VERIFIER_LOG_TAIL_LINES) -> str:
    """The end of a verifier log, where the kernel states why it refused."""
    parts = log.strip().splitlines()
    head = [f"... ({len(parts) - lines} earlier lines)"] if len(parts) > lines else []
    return "\n".join(head + parts[-lines:])


def _profile(args: argparse.Namespace) -> int:
    from x0node.telemetry import profiler
    from x0node.telemetry.libbpf import BpfError

    if not (0 < args.duration <= PROFILE_DURATION_MAX_S):
        print(f"--duration must be in (0, {PROFILE_DURATION_MAX_S}]", file=sys.stderr)
        return 2
    names = None if args.all else profiler.OUR_PROGRAMS
    try:
        with profiler.StatsSession():
            before = profiler.read_all(names)
            time.sleep(args.duration)
            after = profiler.read_all(names)
    except BpfError as exc:
        print(f"x0node bpf profile: {exc}", file=sys.stderr)
        return 1
    rows = sorted(profiler.deltas(before, after), key=lambda s: (-s.run_cnt, s.id))
    if args.json:
        print(json.dumps([
            {"id": s.id, "name": s.name, "type": s.type, "run_cnt": s.run_cnt, "run_time_ns": s.run_time_ns,
             "ns_per_run": s.ns_per_run} for s in rows
        ]))
        return 0
    print(f"{'id':>6} {'name':<16} {'type':<16} {'runs':>12} {'ns/run':>10}   ({args.duration:g} s)")
    for s in rows:
        npr = f"{s.ns_per_run:.1f}" if s.ns_per_run is not None else "-"
        print(f"{s.id:>6} {s.name:<16} {s.type:<16} {s.run_cnt:>12} {npr:>10}")
    if not rows:
        print("(no matching programs loaded)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from x0node.telemetry import pinned
    from x0node.telemetry.loader import DEFAULT_PIN_ROOT

    root = args.pin_root or DEFAULT_PIN_ROOT
    view = pinned.read_xdp(root)
    if view is None:
        print(f"no xdp_mac_stats maps pinned for this network namespace under {root} (is the daemon running here?)",
              file=sys.stderr)
        return 1
    limit = max(0, min(args.sources, 1024))
    if args.json:
        print(json.dumps({
            "pin_dir": view.pin_dir,
            "interfaces": {k: v.to_dict() for k, v in view.named_interfaces().items()},
            "sources": [{"source": s.source, "packets": s.packets, "bytes": s.bytes} for s in view.sources[:limit]],
        }))
        return 0
    print(f"{view.pin_dir}")
    print(f"{'iface':<16} {'rx_packets':>12} {'rx_bytes':>14} {'passed':>12} {'dropped':>9}")
    for name, c in view.named_interfaces().items():
        print(f"{name:<16} {c.rx_packets:>12} {c.rx_bytes:>14} {c.passed:>12} {c.dropped:>9}")
    print(f"sources ({len(view.sources)}; exact counts, keyed MAC hashes):")
    for s in view.sources[:limit]:
        print(f"  {s.source}  {s.packets:>12} packets {s.bytes:>14} bytes")
    return 0
