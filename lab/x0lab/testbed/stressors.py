"""The fault lab's background processes: a CPU burner, a memory filler and a link flapper.

`python -m x0lab.testbed.stressors cpu|mem|flap --tag TAG --max-s S ...`

Rules and invariants:
- Each one prints exactly one JSON line on stdout once its fault is in effect (`{"ready": monotonic,
  "wall": epoch, ...}`) and nothing after; the lab waits for that line (bounded) and uses its time as
  the fault's start. Times are time.monotonic() (CLOCK_MONOTONIC, comparable across processes on one
  boot) taken right after the change was made, and time.time() taken next to it.
- Every one is bounded: it ends by itself after `--max-s` seconds (and the flapper after
  MAX_FLIPS transitions), whether or not anybody stops it. The `--tag` is part of its command line so
  the lab can tell its own processes from a reused pid.
- `cpu` busy-loops, on one CPU when given `--cpu` (run it inside a CPU-capped group: it takes what the
  cap allows). `mem` allocates
  and touches anonymous memory in MEM_CHUNK_BYTES steps until its group's usage would pass
  `--fill-to-bytes` or it holds `--max-bytes`, then holds it. `flap` sets one interface of a namespace
  down and up every half `--period-s`, logging each transition as a JSON line (`mono`, `wall`,
  `uncertainty_s`, `state`) to `--log`; on SIGTERM, SIGINT or its own limits it leaves the interface
  up (it sets it up once more, whatever it last did), logs that, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

MEM_CHUNK_BYTES = 1 << 20
PAGE_BYTES = 4096
MAX_FLIPS = 20_000
MIN_PERIOD_S = 0.2
IP_TIMEOUT_S = 10.0


class _Stop(Exception):
    """Raised by the signal handler to leave a sleep or loop at once."""


def _ready(**extra: Any) -> None:
    mono = time.monotonic()
    print(json.dumps({"ready": mono, "wall": time.time(), **extra}), flush=True)
    sys.stdout.close()


def _stop_on_signals() -> None:
    def handler(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def burn_cpu(max_s: float, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    deadline = time.monotonic() + max_s
    _ready()
    while time.monotonic() < deadline:
        for _ in range(100_000):
            pass


def fill_memory(usage_file: pathlib.Path, fill_to_bytes: int, max_bytes: int, max_s: float) -> None:
    deadline = time.monotonic() + max_s
    held: list[bytearray] = []
    total = 0
    touch = b"\x01" * (MEM_CHUNK_BYTES // PAGE_BYTES)
    while total + MEM_CHUNK_BYTES <= max_bytes:
        usage = int(usage_file.read_text())
        if usage + MEM_CHUNK_BYTES > fill_to_bytes:
            break
        chunk = bytearray(MEM_CHUNK_BYTES)
        chunk[::PAGE_BYTES] = touch  # fault in (and charge) every page
        held.append(chunk)
        total += MEM_CHUNK_BYTES
    _ready(held_bytes=total, group_usage_bytes=int(usage_file.read_text()))
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _set_link(ns: str, dev: str, state: str) -> dict[str, Any]:
    t0 = time.monotonic()
    subprocess.run(["ip", "-n", ns, "link", "set", "dev", dev, state], check=True, capture_output=True,
                   timeout=IP_TIMEOUT_S)
    t1 = time.monotonic()
    return {"mono": t1, "wall": time.time(), "uncertainty_s": round(t1 - t0, 6), "state": state}


def flap(ns: str, dev: str, period_s: float, log: pathlib.Path, max_s: float) -> None:
    half = max(MIN_PERIOD_S, period_s) / 2
    deadline = time.monotonic() + max_s
    flips = 0
    with open(log, "a", encoding="utf-8") as out:
        def record(entry: dict[str, Any]) -> None:
            out.write(json.dumps(entry) + "\n")
            out.flush()

        try:
            state = "down"
            entry = _set_link(ns, dev, state)
            record(entry)
            _ready(first=entry)
            flips = 1
            while flips < MAX_FLIPS:
                next_at = entry["mono"] + half
                if next_at >= deadline:
                    break
                time.sleep(max(0.0, next_at - time.monotonic()))
                state = "up" if state == "down" else "down"
                entry = _set_link(ns, dev, state)
                record(entry)
                flips += 1
        except _Stop:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            record({**_set_link(ns, dev, "up"), "final": True})  # also when a stop cut a change short


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m x0lab.testbed.stressors")
    ap.add_argument("--tag", required=True, help="marker in the command line (pid checks)")
    ap.add_argument("--max-s", type=float, required=True, help="end by itself after this many seconds")
    sub = ap.add_subparsers(dest="what", required=True)
    cpu = sub.add_parser("cpu")
    cpu.add_argument("--cpu", type=int, default=None, help="run only on this CPU")
    mem = sub.add_parser("mem")
    mem.add_argument("--usage-file", type=pathlib.Path, required=True)
    mem.add_argument("--fill-to-bytes", type=int, required=True)
    mem.add_argument("--max-bytes", type=int, required=True)
    fl = sub.add_parser("flap")
    fl.add_argument("--ns", required=True)
    fl.add_argument("--dev", required=True)
    fl.add_argument("--period-s", type=float, required=True)
    fl.add_argument("--log", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    _stop_on_signals()
    try:
        if args.what == "cpu":
            burn_cpu(args.max_s, args.cpu)
        elif args.what == "mem":
            fill_memory(args.usage_file, args.fill_to_bytes, args.max_bytes, args.max_s)
        else:
            flap(args.ns, args.dev, args.period_s, args.log, args.max_s)
    except _Stop:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
