"""Transport benchmark: throughput and CPU per MB through our ss-local/ss-server versus
shadowsocks-libev's, measured in the same run on loopback, plus added latency of FakeTLS framing
and traffic shaping. Prints a table; the LAST line is one JSON object (bench="transport").

Usage: .venv/bin/python bench/transport.py [--mb 200] [--method chacha20-ietf-poly1305] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from x0node.transport import socks_client  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BLOCK_BYTES = 256 * 1024


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sink:
    """Counts bytes; answers b"k" once `expect` bytes arrived on a connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()
        self.expect = 0

    def _loop(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

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


def run_pair(kind: str, method: str, password: str, sink: Sink, mb: int) -> dict:
    sport, lport = free_port(), free_port()
    if kind == "ours":
        py = [sys.executable, "-m", "x0node", "transport"]
        server = [*py, "ss-server", "--listen", f"127.0.0.1:{sport}", "--password", password, "--method", method]
        local = [*py, "ss-local", "--server", f"127.0.0.1:{sport}", "--listen", f"127.0.0.1:{lport}",
                 "--password", password, "--method", method]
    else:
        server = ["ss-server", "-s", "127.0.0.1", "-p", str(sport), "-k", password, "-m", method]
        local = ["ss-local", "-s", "127.0.0.1", "-p", str(sport), "-b", "127.0.0.1", "-l", str(lport),
                 "-k", password, "-m", method]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT) for c in (server, local)]
    try:
        wait_port(sport)
        wait_port(lport)
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
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--method", default="chacha20-ietf-poly1305")
    args = ap.parse_args()
    sink = Sink()
    results: dict[str, list[dict]] = {"ours": [], "sslibev": []}
    for _ in range(args.rounds):  # interleave so both see the same machine load
        for kind in ("sslibev", "ours"):
            results[kind].append(run_pair("ours" if kind == "ours" else "libev", args.method, "bench-pw", sink, args.mb))
    best = {k: max(v, key=lambda r: r["mbps"]) for k, v in results.items()}
    print(f"{'impl':10} {'MB/s (best of %d)' % args.rounds:>18} {'CPU s/MB':>10}   all MB/s")
    for k, r in best.items():
        allr = " ".join(f"{x['mbps']:.0f}" for x in results[k])
        print(f"{k:10} {r['mbps']:18.1f} {r['cpu_s_per_mb'] * 1000:8.2f}ms   {allr}")
    out = {
        "bench": "transport",
        "method": args.method,
        "mb_per_run": args.mb,
        "ours_mbps": round(best["ours"]["mbps"], 1),
        "sslibev_mbps": round(best["sslibev"]["mbps"], 1),
        "ratio": round(best["ours"]["mbps"] / best["sslibev"]["mbps"], 3),
        "ours_cpu_ms_per_mb": round(best["ours"]["cpu_s_per_mb"] * 1000, 3),
        "sslibev_cpu_ms_per_mb": round(best["sslibev"]["cpu_s_per_mb"] * 1000, 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
