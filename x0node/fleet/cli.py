"""`x0node fleet`: operator-side tools for a fleet of routers (docs/fleet.md).

    x0node fleet targets --from http://[fd..]:8080/metrics --out targets/x0node.json [--interval 30]
    x0node fleet dashboards [--out fleet/grafana/dashboards]
    x0node fleet check [--metrics URL-or-FILE]
    x0node fleet chart [--values FILE] [--set KEY=VALUE ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time

log = logging.getLogger("x0node.fleet")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="fleet monitoring tools (scrape targets, dashboards, checks, chart)",
                              description="Tools an operator runs centrally for many routers (docs/fleet.md).")
    sub = p.add_subparsers(dest="fleet_cmd", metavar="CMD", required=True)

    t = sub.add_parser("targets", help="write Prometheus file-SD JSON from the mesh's known nodes",
                       description="Ask one or more routers' /metrics for the nodes they know (x0node_node_info) "
                       "and write Prometheus file-based discovery JSON, one target per node.")
    t.add_argument("--from", dest="sources", action="append", required=True, metavar="URL",
                   help="a router's metrics URL, e.g. http://[fd58:...]:8080/metrics (repeatable; views are merged)")
    t.add_argument("--port", type=int, default=8080, help="port the nodes serve /metrics on (default 8080)")
    t.add_argument("--out", required=True, type=pathlib.Path, help="file-SD JSON file to write")
    t.add_argument("--interval", type=float, default=0.0, metavar="S",
                   help="keep running and refresh every S seconds (default: once)")
    t.add_argument("--forget-after", type=float, default=None, metavar="S",
                   help="keep a node no router lists any more as a target for S seconds after it was last "
                   "seen (default a week), so a dead router keeps failing its scrapes")
    t.set_defaults(func=cmd_targets)

    d = sub.add_parser("dashboards", help="write the Grafana dashboards (provisioning JSON)")
    d.add_argument("--out", type=pathlib.Path, default=None, help="directory (default fleet/grafana/dashboards)")
    d.set_defaults(func=cmd_dashboards)

    c = sub.add_parser("check", help="check dashboards and rules: schema, PromQL, metric names")
    c.add_argument("--metrics", metavar="URL|FILE",
                   help="a router's /metrics (URL or saved text) whose names the queries must use")
    c.set_defaults(func=cmd_check)

    h = sub.add_parser("chart", help="render the Helm chart (values substitution) and check the manifests")
    h.add_argument("--values", type=pathlib.Path, help="values file overriding the chart's values.yaml")
    h.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value (dotted key; repeatable)")
    h.add_argument("--out", type=pathlib.Path, help="write the rendered manifests here (default: stdout)")
    h.set_defaults(func=cmd_chart)


def cmd_targets(args: argparse.Namespace) -> int:
    from x0node.fleet.targets import FORGET_AFTER_S, Discovery, TargetsError, fetch, render, write_if_changed

    if not 0 < args.port < 65536:
        print("--port: expected 1..65535", file=sys.stderr)
        return 2
    while True:
        disc = Discovery()
        failed = 0
        for url in args.sources:
            try:
                disc.add_exposition(fetch(url))
            except TargetsError as exc:
                failed += 1
                print(f"x0node fleet targets: {exc}", file=sys.stderr)
        if failed < len(args.sources):  # never replace known targets with nothing because every source failed
            forget = FORGET_AFTER_S if args.forget_after is None else args.forget_after
            kept = disc.remember(args.out.with_name(args.out.name + ".known"), time.time(), forget)
            changed = write_if_changed(args.out, render(disc.file_sd(args.port)))
            dropped = ", ".join(f"{k}={v}" for k, v in sorted(disc.dropped.items())) or "none"
            print(f"{len(disc.nodes)} nodes ({kept} no longer listed, kept) -> {args.out} "
                  f"({'written' if changed else 'unchanged'}; dropped: {dropped})", flush=True)
        if args.interval <= 0:
            return 0 if failed < len(args.sources) else 1
        time.sleep(args.interval)


def cmd_dashboards(args: argparse.Namespace) -> int:
    from x0node.fleet import checks, dashboards

    out = args.out or checks.DASHBOARD_DIR
    for path in dashboards.write(out):
        print(path)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from x0node.fleet import checks, dashboards
    from x0node.fleet.targets import TargetsError, fetch

    problems: list[str] = []
    exprs = checks.rule_expressions()
    for name, d in dashboards.dashboards().items():
        problems += [f"{name}{p}" for p in checks.dashboard_schema_problems(d)]
        exprs += dashboards.expressions(d)
    problems += checks.promtool_problems(exprs)
    if args.metrics:
        try:
            text = fetch(args.metrics) if "://" in args.metrics else pathlib.Path(args.metrics).read_text()
        except (TargetsError, OSError) as exc:
            print(f"x0node fleet check: {exc}", file=sys.stderr)
            return 2
        for expr, names in checks.unknown_metrics(exprs, checks.exported_names(text)).items():
            problems.append(f"not exported: {', '.join(names)} in {expr}")
    for p in problems:
        print(p)
    print(f"{len(exprs)} expressions, {len(dashboards.DASHBOARDS)} dashboards: "
          f"{'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


def cmd_chart(args: argparse.Namespace) -> int:
    from x0node.fleet import chart

    try:
        values = chart.load_values(args.values, args.sets)
        docs = chart.render(values)
    except chart.ChartError as exc:
        print(f"x0node fleet chart: {exc}", file=sys.stderr)
        return 2
    problems = chart.validate(docs)
    text = chart.dump(docs)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        from x0node.io.atomicfile import write_atomic

        write_atomic(args.out / "manifests.yaml", text.encode(), 0o644)
    else:
        sys.stdout.write(text)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0
