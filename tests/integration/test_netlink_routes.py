"""The kernel's route table behind the seam, against the real kernel inside a namespace of the test's
own: what lands in the table, what is skipped, what is refused (each change on its own), and that
routes which are not ours stay."""

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
from x0node.io.kernel_routes import KernelRouteTable
from x0node.io.netlink import NetlinkAdapter
from x0node.io.route_table import flush
from x0node.proto.rib import RouteChange

async def main():
    nl = NetlinkAdapter(6464, 78, 1000)
    await nl.open()
    table = KernelRouteTable(nl, 6464, 78, 100)
    out = {}
    def apply(*changes):
        return [r.error for r in table.apply([RouteChange(*c) for c in changes])]
    out["first"] = apply(("add", "fd78:1::a/128", "v0", "fe80::1", 100), ("add", "0.0.0.0/0", "v0", "fe80::1", 100),
                         ("add", "fd78:1::c/128", "absent0", "fe80::1", 100), ("add", "fd78:1::b/128", "v0", "", 100),
                         ("add", "fd78:1::e/128", "v0", "fe80::1", 100))
    out["metric_only"] = apply(("metric", "fd78:1::a/128", "v0", "fe80::1", 250))
    out["second"] = apply(("replace", "fd78:1::a/128", "v0", "fe80::2", 300), ("del", "fd78:1::b/128", "v0", "", 100),
                          ("del", "fd78:1::d/128", "v0", "", 100))  # never installed: done
    out["ours"] = sorted(await table.ours())
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the test looks at the kernel table now
    out = {"flushed": await flush(table)}
    print(json.dumps(out), flush=True)
    table.close()
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
        assert out["first"] == [None, "unsupported_family", "no_interface", None, None]  # one bad change: the rest go in
        assert out["metric_only"] == [None]  # the kernel route would not change: not written
        assert out["second"] == [None, None, None]
        assert out["ours"] == ["fd78:1::a/128", "fd78:1::e/128"]
        table = routes(a)
        ours = {d: r for d, r in table.items() if r.get("protocol") == str(PROTO)}
        assert set(ours) == {"fd78:1::a", "fd78:1::e"}
        assert ours["fd78:1::a"]["gateway"] == "fe80::2" and ours["fd78:1::a"]["dev"] == "v0"
        assert ours["fd78:1::a"]["metric"] == 100
        assert "fd99::/64" in table  # not ours: untouched
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"flushed": 2}
        assert proc.wait(timeout=20) == 0
        table = routes(a)
        assert "fd78:1::a" not in table and "fd99::/64" in table  # withdrawn on exit; the other stays
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
