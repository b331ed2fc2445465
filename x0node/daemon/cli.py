"""`x0node run --config FILE`: run the mesh node daemon (uvloop) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run the mesh node daemon",
        description="Run the x0node daemon: routing on the mesh interfaces of the config file, kernel "
        "routes over netlink, and the services enabled in the config. Logs to stderr; logs "
        "'x0node ready node_id=... mesh_addr=...' once up; SIGTERM/SIGINT stop it cleanly.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="daemon config (TOML, see docs/daemon.md)")
    p.add_argument("--data-dir", metavar="DIR", help="override node.data_dir (key, certificate, local config)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from x0node.daemon import config as cfg

    try:
        conf = cfg.load(args.config, data_dir=args.data_dir)
    except cfg.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    root = logging.getLogger()
    level = getattr(logging, conf.node["log_level"].upper())
    if getattr(args, "verbose", 0):
        level = min(level, logging.WARNING - 10 * min(args.verbose, 2))
    root.setLevel(level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        import asyncio

        runner = asyncio.run
    else:
        runner = uvloop.run
    from x0node.daemon.node import run_node

    try:
        return runner(run_node(conf))
    except KeyboardInterrupt:
        return 130
