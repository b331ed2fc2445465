"""`x0node transport ...`: run the Shadowsocks server/local proxy, FakeTLS endpoints and the TAP
tunnel from the command line. Argument shapes follow the well-known Shadowsocks tools.
Thin adapter: parses arguments, builds the objects of `relay`/`tunnel`, runs the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import secrets
import signal
import sys

from x0node.transport.crypto import DEFAULT_METHOD, METHODS, get_method, master_key

log = logging.getLogger(__name__)


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # an empty host in HOST:PORT means all addresses, as in the peer tools # nosec B104


def _run(coro_factory) -> int:
    import uvloop

    from x0node.transport.relay import tune_allocator

    tune_allocator()
    uvloop.install()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        closer = await coro_factory()
        await stop.wait()
        await closer()
        return 0

    try:
        return asyncio.run(main())
    except (ValueError, OSError) as exc:
        print(f"x0node transport: {exc}", file=sys.stderr)
        return 2


def _key(args) -> tuple:
    method = get_method(args.method)
    return method, master_key(method, args.password)


def _serve(args, build, announce) -> int:
    """Build an endpoint from the method and key, start it, print the one line `announce(method,
    bound address)` says, run until SIGINT/SIGTERM, then stop it. Bad arguments exit 2 (see _run)."""

    async def start():
        method, key = _key(args)
        endpoint = build(method, key)
        bound = await endpoint.start()
        print(announce(method, bound), flush=True)
        return endpoint.stop

    return _run(start)


def cmd_ss_server(args) -> int:
    from x0node.transport.relay import ShadowsocksServer

    return _serve(
        args,
        lambda method, key: ShadowsocksServer(method, key, args.listen, udp=args.udp,
                                              probe_idle_timeout_s=args.probe_timeout, nodelay=args.no_delay,
                                              fallback=args.faketls_fallback),
        lambda method, bound: f"ss-server listening on {bound[0]}:{bound[1]} method={method.name} udp={args.udp}",
    )


def cmd_ss_local(args) -> int:
    from x0node.transport.relay import ShadowsocksLocal

    return _serve(
        args,
        lambda method, key: ShadowsocksLocal(method, key, args.server, args.listen, udp=not args.no_udp,
                                             nodelay=args.no_delay, sni=args.faketls_sni),
        lambda method, bound: f"ss-local SOCKS5 on {bound[0]}:{bound[1]} -> {args.server[0]}:{args.server[1]}",
    )


def _tap(args):
    from x0node.transport.tunnel import TapPort

    return TapPort(args.tap, args.mtu, tuple(args.address or ()))


def cmd_tunnel_server(args) -> int:
    from x0node.transport.tunnel import TunnelServer, get_profile

    return _serve(
        args,
        lambda method, key: TunnelServer(method, key, args.listen, _tap(args), get_profile(args.shape),
                                         fallback=args.faketls_fallback, probe_idle_timeout_s=args.probe_timeout),
        lambda method, bound: f"tunnel-server on {bound[0]}:{bound[1]} tap={args.tap} shape={args.shape}",
    )


def cmd_tunnel_client(args) -> int:
    from x0node.transport.tunnel import TunnelClient, get_profile

    return _serve(
        args,
        lambda method, key: TunnelClient(method, key, args.server, _tap(args), get_profile(args.shape),
                                         sni=args.faketls_sni),
        lambda method, _bound: f"tunnel-client -> {args.server[0]}:{args.server[1]} tap={args.tap} shape={args.shape}",
    )


def _tunnel_common(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--tap", required=True, metavar="IFNAME", help="TAP interface to create (<= 15 chars)")
    p.add_argument("--address", action="append", metavar="CIDR", help="address to put on the TAP (repeatable)")
    p.add_argument("--mtu", type=int, default=1400, help="TAP MTU (default 1400)")
    p.add_argument("--shape", default="none", choices=["none", "browsing", "video", "gaming"],
                   help="traffic shaping profile for what this end sends (default none)")


def cmd_front_fetch(args) -> int:
    from x0node.transport.errors import RemoteError
    from x0node.transport.fronting import fetch

    try:
        resp = fetch(args.connect, args.front_sni, args.host, args.path, cafile=args.cafile)
    except (OSError, RemoteError) as exc:
        print(f"x0node transport front-fetch: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(resp.body)
    return 0 if 200 <= resp.status < 300 else 1


def cmd_genkey(args) -> int:
    method = get_method(args.method)
    print(base64.b64encode(secrets.token_bytes(method.key_len)).decode())
    return 0


def _common(p: argparse.ArgumentParser, default_method: str = DEFAULT_METHOD) -> None:
    p.add_argument("--password", "-k", required=True, help="password (legacy AEAD) or base64 PSK (2022 methods)")
    p.add_argument("--method", "-m", default=default_method, choices=sorted(METHODS), help=f"cipher (default {default_method})")
    p.add_argument("--no-delay", action="store_true", help="set TCP_NODELAY (lower latency, less bulk throughput)")


def _probe_timeout(p) -> None:
    from x0node.transport.probe import PROBE_IDLE_TIMEOUT_S

    p.add_argument(
        "--probe-timeout", type=float, default=PROBE_IDLE_TIMEOUT_S, metavar="S",
        help="seconds of silence before an unauthenticated connection is closed "
             f"(default {PROBE_IDLE_TIMEOUT_S:g}; the same reaction for every bad probe)",
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser("transport", help="anti-censorship transports (Shadowsocks, FakeTLS, tunnel)")
    sub = parser.add_subparsers(dest="transport_command", metavar="ACTION", required=True)

    p = sub.add_parser("ss-server", help="Shadowsocks server (SIP004/SIP007 AEAD and SIP022 2022)")
    p.add_argument("--listen", "-s", type=parse_hostport, required=True, metavar="HOST:PORT")
    _common(p)
    p.add_argument("--udp", "-u", action="store_true", help="also relay UDP on the same port")
    _probe_timeout(p)
    p.add_argument(
        "--faketls-fallback", type=parse_hostport, metavar="HOST:PORT",
        help="wrap in FakeTLS; relay unauthenticated connections to this real TLS site",
    )
    p.set_defaults(func=cmd_ss_server)

    p = sub.add_parser("ss-local", help="SOCKS5 proxy that tunnels through a Shadowsocks server")
    p.add_argument("--server", type=parse_hostport, required=True, metavar="HOST:PORT")
    p.add_argument("--listen", "-l", type=parse_hostport, required=True, metavar="HOST:PORT")
    _common(p)
    p.add_argument("--no-udp", action="store_true", help="refuse SOCKS5 UDP ASSOCIATE")
    p.add_argument("--faketls-sni", metavar="NAME", help="wrap in FakeTLS with this SNI (server needs --faketls-fallback)")
    p.set_defaults(func=cmd_ss_local)

    p = sub.add_parser("tunnel-server", help="layer-2 (TAP) tunnel endpoint that accepts one obfuscated stream")
    p.add_argument("--listen", type=parse_hostport, required=True, metavar="HOST:PORT")
    _tunnel_common(p)
    p.add_argument("--faketls-fallback", type=parse_hostport, metavar="HOST:PORT",
                   help="wrap in FakeTLS; relay unauthenticated connections to this real site")
    _probe_timeout(p)
    p.set_defaults(func=cmd_tunnel_server)

    p = sub.add_parser("tunnel-client", help="layer-2 (TAP) tunnel endpoint that dials the server and redials")
    p.add_argument("--server", type=parse_hostport, required=True, metavar="HOST:PORT")
    _tunnel_common(p)
    p.add_argument("--faketls-sni", metavar="NAME", help="wrap in FakeTLS with this SNI")
    p.set_defaults(func=cmd_tunnel_client)

    p = sub.add_parser("front-fetch", help="fetch a bootstrap blob by domain fronting (SNI != Host)")
    p.add_argument("--connect", type=parse_hostport, required=True, metavar="HOST:PORT", help="CDN edge to dial")
    p.add_argument("--front-sni", required=True, metavar="NAME", help="innocuous domain shown in the TLS SNI")
    p.add_argument("--host", required=True, metavar="NAME", help="hidden domain sent in the HTTP Host header")
    p.add_argument("--path", default="/", help="path to fetch (default /)")
    p.add_argument("--cafile", help="CA bundle to verify the edge (default: system store)")
    p.set_defaults(func=cmd_front_fetch)

    p = sub.add_parser("genkey", help="print a random base64 pre-shared key for a 2022 method")
    p.add_argument("--method", "-m", default=DEFAULT_METHOD, choices=sorted(METHODS))
    p.set_defaults(func=cmd_genkey)
