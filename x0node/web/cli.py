"""`x0node web`: manage the web UI's password and setup code, or serve a demo node.

- `x0node web setup-code --data-dir D` prints the one-time setup code (creating it if no password is set).
- `x0node web set-password --data-dir D` sets the password from a prompt or `--password-stdin`
  (for recovery from the console; it ends the setup-code phase).
- `x0node web demo --data-dir D` serves the UI over an in-memory demo mesh (no daemon, no root) whose
  neighbours' RTTs move, for trying the UI, screenshots and the latency bench.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import pathlib
import random
import sys

from x0node.web.config import DEFAULT_PORT
from x0node.web.credentials import Credentials, PasswordPolicyError, check_policy

log = logging.getLogger(__name__)
DEFAULT_DATA_DIR = "/data/x0node"
DEMO_UPDATE_INTERVAL_S = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("web", help="web UI: password, setup code, demo server",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    for name, func, help_ in (("setup-code", _setup_code, "print the one-time setup code"),
                              ("set-password", _set_password, "set the admin password from the console"),
                              ("demo", _demo, "serve the UI over an in-memory demo mesh")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"data directory (default {DEFAULT_DATA_DIR})")
        sp.set_defaults(func=func)
        if name == "set-password":
            sp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        if name == "demo":
            sp.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
            sp.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
            sp.add_argument("--password-stdin", action="store_true",
                            help="set the password from standard input before serving")


def _setup_code(args: argparse.Namespace) -> int:
    creds = Credentials(pathlib.Path(args.data_dir) / "web")
    if creds.password_set():
        print("a password is already set; use `x0node web set-password` to replace it", file=sys.stderr)
        return 1
    print(creds.ensure_setup_code())
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    pw = getpass.getpass("new web UI password: ")
    if getpass.getpass("repeat: ") != pw:
        raise PasswordPolicyError("the two passwords differ")
    return pw


def _set_password(args: argparse.Namespace) -> int:
    try:
        pw = _read_password(args.password_stdin)
        check_policy(pw)
    except PasswordPolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Credentials(pathlib.Path(args.data_dir) / "web").set_password(pw)
    print("password set")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from aiohttp import web

    from x0node.web.app import create_app
    from x0node.web.config import WebConfig
    from x0node.web.memory_provider import demo_provider

    data_dir = pathlib.Path(args.data_dir)
    if args.password_stdin:
        rc = _set_password(argparse.Namespace(data_dir=str(data_dir), password_stdin=True))
        if rc:
            return rc
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.INFO)
    provider = demo_provider(persist_path=data_dir / "demo-config.json")
    app = create_app(provider, WebConfig(listen=args.listen, port=args.port), data_dir)

    async def wiggle() -> None:
        rng = random.Random(1)  # demo data with a fixed seed # nosec B311
        while True:
            await asyncio.sleep(DEMO_UPDATE_INTERVAL_S)
            ns = provider.neighbours()
            for n in ns:
                n["rtt_ms"] = round(max(0.3, n["rtt_ms"] * rng.uniform(0.9, 1.1)), 2)
            provider.set_neighbours(ns)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.listen, args.port)
        await site.start()
        port = runner.addresses[0][1]
        log.info("x0node web demo listening on http://%s:%d/", args.listen, port)
        print(f"listening on http://{args.listen}:{port}/", flush=True)
        task = asyncio.create_task(wiggle())
        try:
            await asyncio.Event().wait()
        finally:
            task.cancel()
            await runner.cleanup()

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    except KeyboardInterrupt:
        pass
    return 0
