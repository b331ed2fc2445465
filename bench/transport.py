"""Transport benchmark: throughput and CPU per MB through our ss-local/ss-server versus
shadowsocks-libev's, measured in the same run on loopback, plus added latency of FakeTLS framing
and traffic shaping. Prints a table; the LAST line is one JSON object (bench="transport").

Usage: .venv/bin/python bench/transport.py [--mb 200] [--rounds 5] [--method chacha20-ietf-poly1305] [--also aes-256-gcm]
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.integration.processes import stop_processes, wait_port  # noqa: E402
from x0node.transport import socks_client  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BLOCK_BYTES = 256 * 1024


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class LoopbackServer(abc.ABC):
    """Accepts on a fresh 127.0.0.1 port and serves each connection in its own thread."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    @abc.abstractmethod
    def _handle(self, c: socket.socket) -> None:
        """Serve one accepted connection (runs in its own thread)."""


class Sink(LoopbackServer):
    """Counts bytes; answers b"k" once `expect` bytes arrived on a connection."""

    def __init__(self) -> None:
        self.expect = 0
        super().__init__()

    def _handle(self, c: socket.socket) -> None:
        buf = bytearray(1 << 20)
        got = 0
        with c:
            while got < self.expect:
                n = c.recv_into(buf)
                if not n:
                    return
                got += n
            c.sendall(b"k")


@contextlib.contextmanager
def proxy_pair(kind: str, method: str, password: str, extra_srv=(), extra_loc=()):
    """Start ss-server and ss-local (ours, or shadowsocks-libev's) on free loopback ports; yield
    (processes, SOCKS5 port of ss-local) once both listen; stop both on exit. `extra_srv` and
    `extra_loc` are further options for our server and local."""
    sport, lport = free_port(), free_port()
    if kind == "ours":
        py = [sys.executable, "-m", "x0node", "transport"]
        server = [*py, "ss-server", "--listen", f"127.0.0.1:{sport}", "--password", password, "--method", method, *extra_srv]
        local = [*py, "ss-local", "--server", f"127.0.0.1:{sport}", "--listen", f"127.0.0.1:{lport}",
                 "--password", password, "--method", method, *extra_loc]
    else:
        server = ["ss-server", "-s", "127.0.0.1", "-p", str(sport), "-k", password, "-m", method]
        local = ["ss-local", "-s", "127.0.0.1", "-p", str(sport), "-b", "127.0.0.1", "-l", str(lport),
                 "-k", password, "-m", method]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT) for c in (server, local)]
    try:
        wait_port(sport)
        wait_port(lport)
        yield procs, lport
    finally:
        stop_processes(procs)


def run_pair(kind: str, method: str, password: str, sink: Sink, mb: int) -> dict:
    with proxy_pair(kind, method, password) as (procs, lport):
        total = mb * 1024 * 1024
        sink.expect = total
        block = os.urandom(BLOCK_BYTES)
        s = socks_client.connect(("127.0.0.1", lport), "127.0.0.1", sink.port)
        s.settimeout(120)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        t0 = time.perf_counter()
        sent = 0
        mv = memoryview(block)
        while sent < total:
            s.sendall(mv)
            sent += BLOCK_BYTES
        assert s.recv(1) == b"k"
        dt = time.perf_counter() - t0
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        s.close()
        return {"mbps": mb / dt, "cpu_s_per_mb": cpu / mb, "seconds": dt}


class Echo(LoopbackServer):
    """Sends back whatever arrives, with Nagle off."""

    def _handle(self, c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while d := c.recv(65536):
                c.sendall(d)


def rtt_ms(connect, n: int = 300) -> float:
    """Median round trip of a 64-byte message over an established connection."""
    s = connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(10)
    msg = b"x" * 64
    times = []
    with s:
        for i in range(n + 20):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(4096)
            if i >= 20:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def latency_through(kind: str, method: str, password: str, echo: Echo, extra_srv=(), extra_loc=()) -> float:
    with proxy_pair(kind, method, password, extra_srv, extra_loc) as (_procs, lport):
        return rtt_ms(lambda: socks_client.connect(("127.0.0.1", lport), "127.0.0.1", echo.port))


def faketls_ms_per_record(size: int, n: int = 5000) -> float:
    """Wrap + parse one application-data record of `size` payload bytes (both ends' framing work)."""
    from x0node.transport.faketls import RecordReader, wrap_records

    data = os.urandom(size)
    reader = RecordReader()
    t0 = time.perf_counter()
    for _ in range(n):
        reader.feed(b"".join(wrap_records(data)))
    return (time.perf_counter() - t0) / n * 1000


def shaping_added_ms(profile_name: str, messages: int = 400, budget: float = 256 * 1024) -> dict:
    """Delay the tunnel's shaping stage adds, measured on a real event loop through tunnel.Link."""
    import asyncio
    import random

    from x0node.transport.shaping import Deshaper
    from x0node.transport.tunnel import Link, get_profile

    async def run() -> dict:
        delays: list[float] = []
        sent_at: dict[int, float] = {}
        deshaper = Deshaper()
        buf = bytearray()

        class Writer:
            def writelines(self, pieces):
                now = time.perf_counter()
                nonlocal buf
                buf += deshaper.feed(b"".join(pieces))
                while len(buf) >= 10:
                    mid = int.from_bytes(buf[:8], "big")
                    ln = int.from_bytes(buf[8:10], "big")
                    if len(buf) < 10 + ln:
                        break
                    del buf[: 10 + ln]
                    delays.append(now - sent_at.pop(mid))

            def close(self):
                pass

        link = Link(Writer(), lambda d: [d], lambda d: d, None, get_profile(profile_name), random.Random(1), {},
                    budget_bytes_per_s=budget)
        timer = asyncio.ensure_future(link._shaping_timer()) if link.shaper is not None else None
        rng = random.Random(2)
        for i in range(messages):
            await asyncio.sleep(rng.uniform(0.0005, 0.004))
            body = bytes(rng.randint(64, 1200))  # packet-sized messages, like tunnelled frames
            sent_at[i] = time.perf_counter()
            link.send(i.to_bytes(8, "big") + len(body).to_bytes(2, "big") + body)
        await asyncio.sleep(0.05)
        link.close()
        if timer is not None:
            timer.cancel()
        overhead = link.shaper.overhead_ratio() if link.shaper is not None else 0.0
        return {"mean_ms": statistics.mean(delays) * 1000, "p99_ms": sorted(delays)[int(len(delays) * 0.99)] * 1000,
                "overhead_ratio": overhead}

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--method", default="chacha20-ietf-poly1305", help="headline method (ratio)")
    ap.add_argument("--also", default="aes-256-gcm", help="second method measured the same way ('' = none)")
    args = ap.parse_args()
    sink = Sink()
    methods = [args.method] + ([args.also] if args.also else [])
    per_method: dict[str, dict] = {}
    for method in methods:
        results: dict[str, list[dict]] = {"ours": [], "sslibev": []}
        for _ in range(args.rounds):  # interleave so both see the same machine load
            for kind in ("sslibev", "ours"):
                results[kind].append(run_pair("ours" if kind == "ours" else "libev", method, "bench-pw", sink, args.mb))
        m = {k: {f: statistics.median(r[f] for r in v) for f in ("mbps", "cpu_s_per_mb")} for k, v in results.items()}
        per_method[method] = m
        print(f"throughput, {args.mb} MB upload through SOCKS5 -> local -> server -> sink, {method}")
        print(f"{'impl':10} {f'MB/s (median of {args.rounds})':>20} {'CPU/MB':>10}   all MB/s")
        for k, r in m.items():
            allr = " ".join(f"{x['mbps']:.0f}" for x in results[k])
            print(f"{k:10} {r['mbps']:20.1f} {r['cpu_s_per_mb'] * 1000:8.2f}ms   {allr}")
        print(f"ratio ours/ss-libev: {m['ours']['mbps'] / m['sslibev']['mbps']:.3f}\n")
    med = per_method[args.method]

    echo = Echo()
    pw2022 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    direct = rtt_ms(lambda: socket.create_connection(("127.0.0.1", echo.port)))
    lat = {
        "sslibev": latency_through("libev", args.method, "bench-pw", echo),
        "ours": latency_through("ours", args.method, "bench-pw", echo),
        "ours_2022": latency_through("ours", "2022-blake3-chacha20-poly1305", pw2022, echo),
        "ours_2022_faketls": latency_through(
            "ours", "2022-blake3-chacha20-poly1305", pw2022, echo,
            ("--faketls-fallback", "127.0.0.1:9"), ("--faketls-sni", "www.example.com")),
    }
    print(f"\nround trip of 64 B (median of 300), direct {direct:.3f} ms")
    for k, v in lat.items():
        print(f"{k:20} {v:.3f} ms  (+{v - direct:.3f} ms)")

    ftls = {size: faketls_ms_per_record(size) for size in (1400, 16384)}
    print("\nFakeTLS framing (wrap + parse) per record: " + ", ".join(f"{k} B {v:.4f} ms" for k, v in ftls.items()))
    shaping = {name: shaping_added_ms(name) for name in ("none", "browsing", "video", "gaming")}
    print(f"\n{'shaping':10} {'added mean':>11} {'p99':>8} {'overhead':>9}")
    for name, r in shaping.items():
        print(f"{name:10} {r['mean_ms']:9.3f}ms {r['p99_ms']:6.2f}ms {r['overhead_ratio']:8.1%}")
    base = shaping["none"]["mean_ms"]
    worst = max(r["mean_ms"] for n, r in shaping.items() if n != "none") - base
    out = {
        "bench": "transport",
        "method": args.method,
        "mb_per_run": args.mb,
        "ours_mbps": round(med["ours"]["mbps"], 1),
        "sslibev_mbps": round(med["sslibev"]["mbps"], 1),
        "ratio": round(med["ours"]["mbps"] / med["sslibev"]["mbps"], 3),
        "ours_cpu_ms_per_mb": round(med["ours"]["cpu_s_per_mb"] * 1000, 3),
        "sslibev_cpu_ms_per_mb": round(med["sslibev"]["cpu_s_per_mb"] * 1000, 3),
        # CPU time below the clock's resolution (tiny --mb) has no meaningful ratio.
        "cpu_ratio": (round(med["ours"]["cpu_s_per_mb"] / med["sslibev"]["cpu_s_per_mb"], 3)
                      if med["sslibev"]["cpu_s_per_mb"] > 0 else None),
        **{
            f"{key}_{m.replace('-', '_')}": val
            for m in methods[1:]
            for key, val in (
                ("ours_mbps", round(per_method[m]["ours"]["mbps"], 1)),
                ("sslibev_mbps", round(per_method[m]["sslibev"]["mbps"], 1)),
                ("ratio", round(per_method[m]["ours"]["mbps"] / per_method[m]["sslibev"]["mbps"], 3)),
            )
        },
        "direct_rtt_ms": round(direct, 3),
        **{f"{k}_added_rtt_ms": round(v - direct, 3) for k, v in lat.items()},
        "faketls_ms_per_record": round(ftls[16384], 5),
        "faketls_ms_per_record_1400": round(ftls[1400], 5),
        "shaping_added_ms": round(worst, 3),
        **{f"shaping_{n}_added_ms": round(r["mean_ms"] - base, 3) for n, r in shaping.items() if n != "none"},
        **{f"shaping_{n}_overhead": round(r["overhead_ratio"], 3) for n, r in shaping.items() if n != "none"},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
