"""`x0node healing`: look at the self-healing loop's records and probe the data plane by hand.

- `x0node healing incidents [--data-dir DIR] [--limit N] [--timeline ID] [--json]` lists the incidents
  the knowledge store holds (root cause, confidence, action, outcome, MTTR), or one incident's
  timeline of decisions with their reasons.
- `x0node healing probe --source ADDR --via IFNAME%LLADDR --to ADDR [--count N] [--interval S]`
  sends ICMPv6 echo probes to ADDR pinned through the neighbour LLADDR on IFNAME (the same adapter
  the daemon uses) and prints how many were answered. Needs CAP_NET_RAW.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import time
from typing import Any

DEFAULT_DATA_DIR = "/data/x0node"
MAX_PROBE_COUNT = 10_000


def register(sub: Any) -> None:
    p = sub.add_parser("healing", help="self-healing records and data-plane probes",
                       description="Self-healing: list incidents from the knowledge store, probe through a neighbour.")
    hs = p.add_subparsers(dest="healing_command", metavar="SUBCOMMAND")
    inc = hs.add_parser("incidents", help="list incidents (or one incident's timeline)")
    inc.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"daemon data directory (default {DEFAULT_DATA_DIR})")
    inc.add_argument("--limit", type=int, default=20, help="how many incidents (default 20)")
    inc.add_argument("--timeline", type=int, metavar="ID", help="show the timeline of incident ID")
    inc.add_argument("--json", action="store_true", help="print JSON")
    inc.set_defaults(func=_incidents)
    pr = hs.add_parser("probe", help="ICMPv6 probes pinned through one neighbour")
    pr.add_argument("--source", required=True, help="our source address (the mesh address)")
    pr.add_argument("--via", required=True, metavar="IFNAME%LLADDR", help="neighbour link-local address and interface")
    pr.add_argument("--to", required=True, metavar="ADDR", help="destination address (beyond the neighbour)")
    pr.add_argument("--count", type=int, default=10, help="probes to send (default 10)")
    pr.add_argument("--interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.set_defaults(func=_probe)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _incidents(args: argparse.Namespace) -> int:
    from x0node.healing.store import FILE_NAME, SqliteStore

    path = pathlib.Path(args.data_dir) / "healing" / FILE_NAME
    if not path.exists():
        print(f"no knowledge store at {path}", file=sys.stderr)
        return 1
    store = SqliteStore(path)
    try:
        rows: Any = store.timeline(args.timeline) if args.timeline is not None else store.incidents(args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.timeline is not None:
        for r in rows:
            what = {k: v for k, v in r.items() if k not in ("wall", "type", "incident_id", "at_s")}
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['wall']))} {r['type']:<16} {what}")
        return 0
    print(f"{'id':>5} {'outcome':<11} {'root cause':<16} {'element':<28} {'conf':>5} {'action':<22} {'mttr s':>7}")
    for r in rows:
        print(f"{r['id']:>5} {r['outcome'] or 'open':<11} {r['root_cause'] or '-':<16} {(r['element'] or '-')[:28]:<28} "
              f"{(r['confidence'] or 0):>5.2f} {r['action'] or '-':<22} {(r['mttr_s'] or 0):>7.2f}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from x0node.healing.probe import PROBE_TIMEOUT_S, ProbeRequest, ProbeTarget
    from x0node.healing.probe_io import IcmpProber

    ifname, sep, lladdr = args.via.partition("%")
    if not sep or not ifname or not lladdr:
        print("--via must be IFNAME%LLADDR", file=sys.stderr)
        return 2
    count = max(1, min(args.count, MAX_PROBE_COUNT))
    interval = max(0.001, args.interval)

    async def run() -> dict[str, Any]:
        sent: dict[int, float] = {}
        rtts: list[float] = []

        def answer(pid: int, now: float) -> None:
            t0 = sent.pop(pid, None)
            if t0 is not None and now - t0 <= PROBE_TIMEOUT_S:
                rtts.append((now - t0) * 1000.0)

        prober = IcmpProber(args.source, answer)
        prober.open(asyncio.get_running_loop())
        unsent = 0
        try:
            for i in range(count):
                now = time.monotonic()
                req = ProbeRequest(i, ProbeTarget("neighbour", ifname, lladdr, "destination", args.to), now, now + PROBE_TIMEOUT_S)
                sent[i] = now
                if await prober.send(req) is not None:
                    sent.pop(i, None)
                    unsent += 1
                await asyncio.sleep(interval)
            await asyncio.sleep(PROBE_TIMEOUT_S)
            prober.drain()
        finally:
            prober.close()
        answered = len(rtts)
        return {"sent": count - unsent, "answered": answered, "lost": count - unsent - answered, "unsent": unsent,
                "rtt_ms_median": round(statistics.median(rtts), 3) if rtts else None, "drops": dict(prober.drops)}

    out = asyncio.run(run())
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['sent']} sent, {out['answered']} answered, {out['lost']} lost, {out['unsent']} unsent, "
              f"median rtt {out['rtt_ms_median']} ms")
    return 0 if out["sent"] else 1
