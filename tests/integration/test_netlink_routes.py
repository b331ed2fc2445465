"""The route writer against the real kernel, inside a namespace of the test's own: what lands in the
table, what is skipped, what fails, and that routes which are not ours stay."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.integration.netns import run

ROOT = pathlib.Path(__file__).resolve().parents[2]
TABLE, PROTO = 6464, 78

SCRIPT = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from x0node.io.netlink import KernelRoute, NetlinkAdapter

async def main():
    nl = NetlinkAdapter(6464, 78, 1000, 100)
    await nl.open()
    out = {}
    nl.submit("replace", KernelRoute("fd78:1::a/128", "v0", "fe80::1", 100))
    nl.submit("replace", KernelRoute("fd78:1::b/128", "v0", None, 100))
    nl.submit("replace", KernelRoute("fd78:1::c/128", "absent0", "fe80::1", 100))
    await asyncio.sleep(0)  # the flush runs once this loop step ends
    await asyncio.sleep(0)
    out["first"] = [nl.applied, nl.errors, sorted(nl.installed)]
    nl.submit("replace", KernelRoute("fd78:1::a/128", "v0", "fe80::1", 250))  # metric only
    await nl.settle()
    out["metric_only"] = nl.applied
    nl.link_changed("v0")
    nl.submit("replace", KernelRoute("fd78:1::a/128", "v0", "fe80::1", 300))
    await nl.settle()
    out["after_link_change"] = nl.applied
    nl.submit("replace", KernelRoute("fd78:1::a/128", "v0", "fe80::2", 300))  # new next hop
    nl.submit("del", KernelRoute("fd78:1::b/128", "v0", None, 100))
    nl.submit("del", KernelRoute("fd78:1::d/128", "v0", None, 100))  # never installed: nothing sent
    await nl.settle()
    out["second"] = [nl.applied, nl.errors, sorted(nl.installed)]
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the test looks at the kernel table now
    await nl.withdraw_all()
    await nl.close()

asyncio.run(main())
"""


def routes(ns: str) -> dict[str, dict]:
    out = run("ip", "-j", "-6", "route", "show", "table", str(TABLE), ns=ns).stdout
    return {r["dst"]: r for r in json.loads(out or "[]")}


def test_route_writer_in_a_namespace(namespaces):
    a, b = namespaces.add(), namespaces.add()
    namespaces.veth(a, b, "v0", "w0")
    run("ip", "-6", "route", "add", "fd99::/64", "dev", "v0", "table", str(TABLE), "proto", "static", ns=a)
    proc = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", SCRIPT, str(ROOT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        out = json.loads(line)
        assert out["first"] == [2, 1, ["fd78:1::a/128", "fd78:1::b/128"]]  # no interface: counted, not installed
        assert out["metric_only"] == 2  # the kernel route would not change: not written
        assert out["after_link_change"] == 3  # the link went down and up: written again
        assert out["second"] == [5, 1, ["fd78:1::a/128"]]
        table = routes(a)
        ours = {d: r for d, r in table.items() if r.get("protocol") == str(PROTO)}
        assert set(ours) == {"fd78:1::a"}
        assert ours["fd78:1::a"]["gateway"] == "fe80::2" and ours["fd78:1::a"]["dev"] == "v0"
        assert ours["fd78:1::a"]["metric"] == 100
        assert "fd99::/64" in table  # not ours: untouched
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=20) == 0
        table = routes(a)
        assert "fd78:1::a" not in table and "fd99::/64" in table  # withdrawn on exit; the other stays
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
