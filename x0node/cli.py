"""The `x0node` command line.

Each area owns its subcommand in its own module, which exposes `register(subparsers)`: it adds one
parser and sets `func(args) -> int` as its default. The table below is the only place that lists them;
an area whose module is not present in this build is left out of `--help`.

Development tools (the namespace testbed and fault lab, model evaluation) live in the separate package
x0lab (lab/ in the source tree), which routers do not install. Commands that need it import it only
when run and, where it is missing, say so and exit 2 instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from x0node import __version__

# subcommand -> module providing register(subparsers)
SUBCOMMANDS: dict[str, str] = {
    "run": "x0node.daemon.cli",
    "status": "x0node.daemon.control",
    "keys": "x0node.proto.cli",
    "testbed": "x0lab.testbed.cli",
    "bpf": "x0node.telemetry.cli",
    "model": "x0node.anomaly.cli",
    "transport": "x0node.transport.cli",
    "web": "x0node.web.cli",
    "state": "x0node.state.cli",
    "kv": "x0node.coord.cli",
    "ota": "x0node.ota.cli",
    "healing": "x0node.healing.cli",
    "fleet": "x0node.fleet.cli",
}

DEV_PACKAGE = "x0lab"
DEV_PACKAGE_HINT = (
    "needs the development package x0lab, which routers do not install; on a development machine "
    "`make deps` installs it (or: pip install -e lab/)"
)


def import_dev_module(module_name: str, command: str) -> ModuleType | None:
    """The development module, or None after telling the user that x0lab is not installed."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
    print(f"x0node {command}: {DEV_PACKAGE_HINT}", file=sys.stderr)
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand's module is imported (keeps `x0node run` lean)."""
    parser = argparse.ArgumentParser(
        prog="x0node",
        description="x0tta6bl4 mesh router service and tools.",
    )
    parser.add_argument("--version", action="version", version=f"x0node {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # area not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = [w for w in (sys.argv[1:] if argv is None else argv) if not w.startswith("-")]
    if words and SUBCOMMANDS.get(words[0], "").startswith(DEV_PACKAGE + "."):
        if import_dev_module(SUBCOMMANDS[words[0]], words[0]) is None:
            return 2
    parser = build_parser(words[0] if words and words[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return int(func(args) or 0)
