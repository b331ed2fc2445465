"""Data-plane probes on a real kernel: a diamond a - {b, d} - c where b drops 40 % of what it forwards.

a's routes to c go via d, yet probes pinned through b must cross b (and lose about 40 %), while probes
pinned through d are answered; the monitor turns that into a forwarding-loss symptom on b only.
Hellos are not involved: b answers its neighbours normally, only transit traffic is dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.integration.netns import run

A_ADDR, C_ADDR = "fd00:77::1", "fd00:77::3"

SCHEDULED = r"""
import asyncio, json, random, sys, time
from x0node.healing.observation import (EdgeObs, InterfaceObs, NeighbourObs, NodeObs, RoutingObs, Snapshot)
from x0node.healing.probe import ProbeScheduler
from x0node.healing.probe_io import IcmpProber
from x0node.healing.monitor import Monitor
cfg = json.loads(sys.argv[1])
nbrs = tuple(NeighbourObs(n["id"], n["if"], n["ll"], True, 0.0, 1.0, "EXCELLENT", 10) for n in cfg["nbrs"])
nodes = (NodeObs("a", cfg["a"], True), NodeObs("b", "", True), NodeObs("d", "", True), NodeObs("c", cfg["c"], True))
edges = (EdgeObs("a", "b", 1), EdgeObs("a", "d", 1), EdgeObs("b", "c", 1), EdgeObs("d", "c", 1))
routing = RoutingObs("a", nbrs, (), nodes, edges, (InterfaceObs("tob", True), InterfaceObs("tod", True)))

async def main():
    sched = ProbeScheduler("a", random.Random(1), time.monotonic())
    prober = IcmpProber(cfg["a"], sched.answer)
    prober.open(asyncio.get_running_loop())
    monitor = Monitor("a")
    end = time.monotonic() + cfg["seconds"]
    raised = []
    try:
        while time.monotonic() < end:
            prober.drain()
            now = time.monotonic()
            sched.update(routing, now)
            for req in sched.poll(now):
                if await prober.send(req) is not None:
                    sched.cancel(req.probe_id)
            out = monitor.observe(Snapshot(now, routing, probes=sched.results(now)))
            raised += [str(s) for s in out.raised]
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)
        prober.drain()
        now = time.monotonic()
        sched.poll(now)
        res = [r.__dict__ for r in sched.results(now)]
    finally:
        prober.close()
    print(json.dumps({"results": res, "counters": sched.counters.as_dict(), "drops": dict(prober.drops),
                      "raised": raised}))

asyncio.run(main())
"""


def _lladdr(ns: str, dev: str) -> str:
    out = run("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link", ns=ns).stdout
    return out.split("inet6 ")[1].split("/")[0]


def _diamond(namespaces):
    a, b, c, d = (namespaces.add() for _ in range(4))
    for ns in (a, b, c, d):
        run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.forwarding=1", ns=ns)
    namespaces.veth(a, b, "tob", "toa")
    namespaces.veth(a, d, "tod", "toa")
    namespaces.veth(b, c, "toc", "tob")
    namespaces.veth(d, c, "toc", "tod")
    run("ip", "-6", "addr", "add", f"{A_ADDR}/128", "dev", "lo", ns=a)
    run("ip", "-6", "addr", "add", f"{C_ADDR}/128", "dev", "lo", ns=c)
    deadline = time.monotonic() + 10
    while True:  # link-local addresses appear once the links are up
        try:
            ll = {(ns, dev): _lladdr(ns, dev) for ns, dev in
                  ((a, "tob"), (a, "tod"), (b, "toa"), (b, "toc"), (d, "toa"), (d, "toc"), (c, "tob"), (c, "tod"))}
            break
        except IndexError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    # a -> c via d (our route avoids b); c -> a via d; b and d know both ends
    run("ip", "-6", "route", "add", f"{C_ADDR}/128", "via", ll[(d, "toa")], "dev", "tod", ns=a)
    run("ip", "-6", "route", "add", f"{A_ADDR}/128", "via", ll[(d, "toc")], "dev", "tod", ns=c)
    for mid in (b, d):
        run("ip", "-6", "route", "add", f"{C_ADDR}/128", "via", ll[(c, "tob" if mid == b else "tod")], "dev", "toc",
            ns=mid)
        run("ip", "-6", "route", "add", f"{A_ADDR}/128", "via", ll[(a, "tob" if mid == b else "tod")], "dev", "toa",
            ns=mid)
    # neighbour discovery: a pings both link-locals so the kernel has their link-layer addresses
    for dev, nb in (("tob", ll[(b, "toa")]), ("tod", ll[(d, "toa")])):
        run("ping", "-6", "-q", "-c", "2", "-i", "0.2", "-W", "1", f"{nb}%{dev}", ns=a, check=False)
    return a, b, c, d, ll


def _blackhole(ns: str, percent: int) -> None:
    script = ("table inet x0t_hbh {\n chain transit {\n  type filter hook forward priority 0; policy accept;\n"
              f"  numgen random mod 100 < {percent} drop\n }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True,
                   capture_output=True)


def _cli_probe(ns: str, via: str, count: int) -> dict:
    out = run(sys.executable, "-m", "x0node", "healing", "probe", "--source", A_ADDR, "--via", via, "--to", C_ADDR,
              "--count", str(count), "--interval", "0.01", "--json", ns=ns, timeout=60).stdout
    return json.loads(out)


def test_pinned_probes_see_a_partial_black_hole_our_routes_avoid(namespaces):
    a, b, c, d, ll = _diamond(namespaces)
    via_b, via_d = f"tob%{ll[(b, 'toa')]}", f"tod%{ll[(d, 'toa')]}"
    clean_b = _cli_probe(a, via_b, 40)
    assert clean_b["sent"] == 40 and clean_b["answered"] >= 39, clean_b
    _blackhole(b, 40)
    bad_b, good_d = _cli_probe(a, via_b, 200), _cli_probe(a, via_d, 100)
    assert bad_b["sent"] == 200 and 0.25 <= bad_b["lost"] / 200 <= 0.55, bad_b  # ~40 %, binomial spread
    assert good_d["sent"] == 100 and good_d["lost"] <= 1, good_d
    # ordinary pings from a to c follow our route (via d) and do not notice b at all
    ping = run("ping", "-6", "-q", "-c", "50", "-i", "0.01", "-W", "1", C_ADDR, ns=a, check=False)
    assert " 0% packet loss" in ping.stdout, ping.stdout


def test_scheduler_and_monitor_on_the_kernel_raise_forwarding_loss_on_the_dropping_neighbour(namespaces):
    a, b, c, d, ll = _diamond(namespaces)
    _blackhole(b, 40)
    cfg = {"a": A_ADDR, "c": C_ADDR, "seconds": 10.0,
           "nbrs": [{"id": "b", "if": "tob", "ll": ll[(b, "toa")]}, {"id": "d", "if": "tod", "ll": ll[(d, "toa")]}]}
    out = json.loads(run(sys.executable, "-c", SCHEDULED, json.dumps(cfg), ns=a, timeout=60).stdout)
    res = {(r["via"], r["dest"]): r for r in out["results"]}
    # loop probes (to our own address, forwarded once by the neighbour) and path probes through b lose;
    # link probes to b's link-local address (answered by b, never forwarded) do not
    for key in (("b", "a"), ("b", "c")):
        assert res[key]["sent"] >= 8 and res[key]["lost"] / res[key]["sent"] >= 0.15, (key, out)
    assert res[("b", "b")]["sent"] >= 8 and res[("b", "b")]["lost"] <= 1, out
    for key in (("d", "d"), ("d", "a"), ("d", "c")):
        assert res[key]["sent"] >= 8 and res[key]["lost"] <= 1, (key, out)
    assert out["counters"]["unsent"] == 0 and out["counters"]["sent"] <= 10.0 * 64 + 16, out  # rate bound
    assert "forwarding_loss@node:b" in out["raised"] and not any("node:d" in s for s in out["raised"]), out
