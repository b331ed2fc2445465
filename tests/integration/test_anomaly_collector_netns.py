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


CG_READ = (
    "import json,pathlib,time;from x0node.anomaly.collector import read_counters as r, node_cgroups as g;"
    "cg=g('parent',pathlib.Path('/proc/self/cgroup').read_text());a=r([],cgroup=cg);t=time.process_time();\n"
    "while time.process_time()-t<0.3: pass\n"
    "b=r([],cgroup=cg);print(json.dumps({'a':a.cg_cpu_ns,'b':b.cg_cpu_ns,'cores':b.cg_cores,'limit':b.cg_mem_limit,"
    "'used':b.cg_mem_used}))"
)


def test_a_daemon_in_a_namespace_reads_its_nodes_own_cgroups(namespaces):
    """As the testbed starts a daemon (`ip netns exec` remounts /sys): it joins the node's groups, mounts
    the v1 hierarchies again inside, and reads its node group's CPU time, quota and memory limit."""
    import os
    import pathlib

    import pytest

    from x0lab.testbed import cgroups

    if not cgroups.available() or cgroups.own_group("cpuacct") is None:
        pytest.skip("needs cgroup v1 cpu, memory and cpuacct")
    ns = namespaces.add()
    made = []
    leaves = []
    for ctl in ("cpu", "memory", "cpuacct"):
        node = cgroups.own_group(ctl) / f"x0t-cg-{os.getpid()}" / "n1"
        for d in (node.parent, node, node / "daemon"):
            made.append(str(d))
            cgroups.create(d)
        leaves.append(node / "daemon")
        if ctl == "cpu":
            cgroups.set_cpu_cap(node, 50.0)  # half a core for the node
        if ctl == "memory":
            cgroups.set_memory_limit(node, 256 << 20)
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    try:
        cmd = cgroups.wrap(leaves, ["ip", "netns", "exec", ns, *cgroups.mount_inside([sys.executable, "-c", CG_READ])])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
        d = json.loads(out.strip().splitlines()[-1])
        assert d["a"] is not None and d["b"] - d["a"] >= 0.25e9  # its own 0.3 s of CPU, in its node's group
        assert d["cores"] == 0.5 and d["limit"] == 256 << 20 and 0 < d["used"] < 256 << 20
        assert pathlib.Path("/proc/self/mountinfo").read_text() == mounts  # the mounts stayed in the namespace
    finally:
        assert cgroups.remove(made) == []
