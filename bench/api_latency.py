#!/usr/bin/env python3
"""API latency under load: p95 of authenticated /api/v1 GETs with 50 concurrent clients on loopback.

Serves the real app (`x0node web demo`: the full middleware stack - session check, security headers,
metrics - over the in-memory demo node) and drives it with wrk (50 connections, one wrk thread, a Lua
script that rotates over status/neighbours/routes/topology/events and prints p50/p95/p99). The peer,
measured the same way in the same run, is a bare aiohttp handler returning the same status JSON with
no middleware: the ratio shows what our stack costs on top of aiohttp itself.

Prints a table, then as its last line one JSON object:
{"bench": "api_latency", "p95_ms", "rps", "p50_ms", "p99_ms", "clients", "non_2xx", "peer_p95_ms",
 "peer_rps", "ratio_p95_vs_peer", "goal_p95_ms", "meets_goal", ...}
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PY = sys.executable
CLIENTS = 50
DURATION_S = 10
GOAL_P95_MS = 20.0
PASSWORD = "bench password 0123456789"

LUA = r"""
local paths = {"/api/v1/status", "/api/v1/neighbours", "/api/v1/routes", "/api/v1/topology", "/api/v1/events"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT p50_us=%d p95_us=%d p99_us=%d max_us=%d requests=%d rps=%.1f non2xx=%d sockerr=%d\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    summary.requests, summary.requests / secs, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""

PEER_LUA = LUA.replace('local paths = {"/api/v1/status", "/api/v1/neighbours", "/api/v1/routes", "/api/v1/topology", "/api/v1/events"}',
                       'local paths = {"/api/v1/status"}')

PEER_SERVER = r"""
import asyncio, json, sys
from aiohttp import web
from x0node.web.memory_provider import demo_provider
p = demo_provider()
async def status(request):
    return web.Response(text=json.dumps(p.status(), separators=(",", ":")), content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_get("/api/v1/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}/", flush=True)
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def start(cmd: list[str], stdin: str | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    if stdin is not None:
        proc.stdin.write(stdin)
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+?)/?$", line.strip())
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(cmd)}")


def login(base: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    token = json.load(opener.open(f"{base}/api/v1/auth/state"))["csrf_token"]
    req = urllib.request.Request(f"{base}/api/v1/auth/login", data=json.dumps({"password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": token}, method="POST")
    opener.open(req).read()
    for c in jar:
        if c.name == "x0_session":
            return c.value
    raise SystemExit("login failed: no session cookie")


def run_wrk(base: str, lua: str, cookie: str | None, duration_s: int, clients: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
        script = f.name
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration_s}s", "--timeout", "5s", "-s", script]
    if cookie:
        cmd += ["-H", f"Cookie: x0_session={cookie}"]
    cmd.append(base + "/")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=True).stdout
    finally:
        os.unlink(script)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=DURATION_S, help=f"seconds per run (default {DURATION_S})")
    ap.add_argument("--clients", type=int, default=CLIENTS, help=f"concurrent connections (default {CLIENTS})")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not installed (make deps installs it)")
    data_dir = tempfile.mkdtemp(prefix="x0web-bench-")
    ours, base = start([PY, "-m", "x0node", "web", "demo", "--data-dir", data_dir, "--port", "0", "--password-stdin"],
                       stdin=PASSWORD + "\n")
    peer = None
    try:
        cookie = login(base)
        run_wrk(base, LUA, cookie, 2, args.clients)  # warm-up
        r = run_wrk(base, LUA, cookie, args.duration, args.clients)
        # sanity: without the cookie every request is refused (the bench really ran authenticated)
        anon = run_wrk(base, LUA, None, 1, 2)
        peer, peer_base = start([PY, "-c", PEER_SERVER])
        run_wrk(peer_base, PEER_LUA, None, 2, args.clients)
        pr = run_wrk(peer_base, PEER_LUA, None, args.duration, args.clients)
    finally:
        for proc in (ours, peer):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)

    ms = lambda us: round(us / 1000.0, 2)  # noqa: E731
    rows = [("x0node /api/v1 (auth, 5 endpoints)", r), ("peer: bare aiohttp, /api/v1/status", pr)]
    print(f"{'server':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>9} {'non-2xx':>8}")
    for name, x in rows:
        print(f"{name:38} {ms(x['p50_us']):8.2f} {ms(x['p95_us']):8.2f} {ms(x['p99_us']):8.2f} "
              f"{ms(x['max_us']):8.2f} {x['rps']:9.0f} {int(x['non2xx']):8d}")
    print(f"anonymous control run: {int(anon['requests'])} requests, {int(anon['non2xx'])} refused (must be all)")
    p95 = ms(r["p95_us"])
    result = {
        "bench": "api_latency", "p95_ms": p95, "rps": round(r["rps"], 1), "p50_ms": ms(r["p50_us"]),
        "p99_ms": ms(r["p99_us"]), "clients": args.clients, "duration_s": args.duration,
        "requests": int(r["requests"]), "non_2xx": int(r["non2xx"]), "socket_errors": int(r["sockerr"]),
        "anonymous_refused": int(anon["non2xx"]) == int(anon["requests"]),
        "peer": "bare aiohttp handler", "peer_p95_ms": ms(pr["p95_us"]), "peer_rps": round(pr["rps"], 1),
        "ratio_p95_vs_peer": round(p95 / max(ms(pr["p95_us"]), 1e-3), 2),
        "goal_p95_ms": GOAL_P95_MS, "meets_goal": p95 <= GOAL_P95_MS and r["non2xx"] == 0,
        "load_tool": "wrk", "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
