"""A node's CPU pressure from its own cgroup (v1 `cpu`), read from inside `ip netns exec` (which hides
/sys/fs/cgroup, so the adapter mounts the hierarchy in its own mount namespace): a busy process beside
the daemon under the node's 20 % limit reads as pressure 1; without the limit, 0."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from tests.integration.netns import run
from x0node.healing.cpu_io import controllers_and_path, find_mount

READ = r"""
import json, sys, time
from x0node.healing.cpu_io import NodeCpu
cpu = NodeCpu("cgroup")
vals = []
for _ in range(4):
    vals.append(cpu.read())
    time.sleep(0.4)
print(json.dumps({"values": vals, "group": str(cpu.group), "errors": cpu.errors}))
"""


def _cpu_base() -> pathlib.Path:
    got = controllers_and_path(pathlib.Path("/proc/self/cgroup").read_text())
    mounted = find_mount(pathlib.Path("/proc/self/mountinfo").read_text(), got[0]) if got else None
    if got is None or mounted is None:
        pytest.skip("no cgroup v1 cpu hierarchy")
    return mounted[0] / got[1].lstrip("/")


def _in_group(group: pathlib.Path, cmd: list[str]) -> list[str]:
    return ["sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "sh", *cmd]


def test_a_busy_process_under_the_node_limit_reads_as_pressure_and_none_without(namespaces):
    ns = namespaces.add()
    node = _cpu_base() / f"x0t-cpu{os.getpid()}" / "node"
    daemon, hog = node / "daemon", node / "hog"
    for d in (daemon, hog):
        d.mkdir(parents=True)
    busy = None
    try:
        (node / "cpu.cfs_period_us").write_text("100000")
        (node / "cpu.cfs_quota_us").write_text("20000")
        busy = subprocess.Popen(_in_group(hog, [sys.executable, "-c", "while True: pass"]))
        reader = _in_group(daemon, ["ip", "netns", "exec", ns, sys.executable, "-c", READ])
        time.sleep(0.3)
        out = subprocess.run(reader, capture_output=True, text=True, timeout=60, check=True)
        got = json.loads(out.stdout)
        assert got["group"] == str(node) and got["errors"] == 0
        assert all(v >= 0.8 for v in got["values"][1:])  # throttled in (nearly) every period
        (node / "cpu.cfs_quota_us").write_text("-1")
        got = json.loads(subprocess.run(reader, capture_output=True, text=True, timeout=60, check=True).stdout)
        assert got["values"] == [0.0] * 4 and got["group"] == "None"
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        time.sleep(0.2)
        for d in (daemon, hog, node, node.parent):
            run("rmdir", str(d), check=False)
