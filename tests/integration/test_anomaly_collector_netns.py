"""The anomaly collector on a real kernel: a 3-namespace line a - b - c with IPv6 transit through b.

b's forwarding ratio must read ~1 while it forwards and ~0 while an nftables forward rule black-holes
transit traffic (the kernel's forwarded counter alone keeps counting those packets).
"""

import json
import subprocess
import sys

from tests.integration.netns import run

READ = ("import json,sys;from x0node.anomaly.collector import read_counters as r;"
        "print(json.dumps(r(sys.argv[1:]).__dict__))")


def _counters(ns: str, *ifaces: str):
    from x0node.anomaly.collector import Counters

    out = run(sys.executable, "-c", READ, *ifaces, ns=ns).stdout
    d = json.loads(out)
    d.pop("extra", None)
    return Counters(**d)


def _ping(ns: str, addr: str, count: int = 200) -> None:
    run("ping", "-6", "-q", "-n", "-i", "0.005", "-c", str(count), "-W", "1", addr, ns=ns, check=False, timeout=30)


def test_forward_ratio_sees_forwarding_and_a_black_hole(namespaces):
    from x0node.anomaly.collector import FeatureState
    from x0node.anomaly.features import FEATURES

    a, b, c = namespaces.add(), namespaces.add(), namespaces.add()
    for ns in (a, b, c):
        run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", ns=ns)
    run("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1", ns=b)
    namespaces.veth(a, b, "toB", "toA")
    namespaces.veth(b, c, "toC", "toB")
    run("ip", "-6", "addr", "add", "fd6e::1/64", "dev", "toB", "nodad", ns=a)
    run("ip", "-6", "addr", "add", "fd6e::2/64", "dev", "toA", "nodad", ns=b)
    run("ip", "-6", "addr", "add", "fd6f::2/64", "dev", "toC", "nodad", ns=b)
    run("ip", "-6", "addr", "add", "fd6f::3/64", "dev", "toB", "nodad", ns=c)
    run("ip", "-6", "route", "add", "fd6f::/64", "via", "fd6e::2", ns=a)
    run("ip", "-6", "route", "add", "fd6e::/64", "via", "fd6f::2", ns=c)
    _ping(a, "fd6f::3", 20)  # neighbour discovery settles

    fs = FeatureState()
    fs.update(_counters(b, "toA", "toC"), [], 0.0)
    _ping(a, "fd6f::3")
    ok = fs.update(_counters(b, "toA", "toC"), [], 2.0)
    assert ok[FEATURES.index("fwd_ratio")] > 0.9, fs.deltas

    subprocess.run(
        ["ip", "netns", "exec", b, "nft", "-f", "-"], check=True, text=True, capture_output=True,
        input="table inet x0t_bh {\n chain forward_drop {\n  type filter hook forward priority 0; policy drop;\n }\n}\n")
    _ping(a, "fd6f::3")
    bh = fs.update(_counters(b, "toA", "toC"), [], 4.0)
    assert fs.deltas["ip_forwarded"] and fs.deltas["ip_forwarded"] > 100  # the kernel still counts them
    assert bh[FEATURES.index("fwd_ratio")] < 0.1, fs.deltas
