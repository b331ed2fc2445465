"""`x0node testbed` from the command line: up, status --json, faults, heal, kill/restart, down — with
babeld as the daemon (the testbed's other routing peer), so this also checks the babeld side the
outage benchmark relies on. Checks that down leaves no namespace, process or nftables table behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from x0lab.testbed import measure
from x0lab.testbed.bed import Testbed


def tb(run_dir, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "x0node", "testbed", "--run-dir", str(run_dir), *args],
                         capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_cli_lifecycle_with_babeld(tmp_path):
    run_dir = tmp_path / "tb"
    tb(run_dir, "up", "--topology", "ladder:2", "--daemon", "babeld", "--babel-hello", "0.2")
    try:
        st = json.loads(tb(run_dir, "status", "--json").stdout)
        assert st["daemon"] == "babeld" and len(st["nodes"]) == 4
        names = {n["ns"] for n in st["nodes"]}
        assert len(names) == 4 and all(n["ns"].startswith("x0b") for n in st["nodes"])
        assert all(n["alive"] and n["mesh_addr"] for n in st["nodes"])
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(ns in listed for ns in names)
        bed = Testbed.open(run_dir)
        assert measure.wait_converged(bed, 30.0) is not None
        assert measure.wait_ping(bed, 1, bed.nodes[4].mesh_addr, 10.0)

        tb(run_dir, "fault", "link-silent", "1", "2")
        rules = bed.exec(1, "nft", "list", "table", "netdev", "x0tb_fault")
        assert "drop" in rules and 'device "m2"' in rules
        link = bed.exec(1, "ip", "-j", "link", "show", "m2")
        assert "LOWER_UP" in link  # carrier stays up
        tb(run_dir, "fault", "loss", "3", "4", "20")
        assert "numgen random mod 100 < 20" in bed.exec(3, "nft", "list", "table", "netdev", "x0tb_fault")
        tb(run_dir, "fault", "link-down", "2", "4")
        assert "LOWER_UP" not in bed.exec(4, "ip", "-j", "link", "show", "m2")
        st = json.loads(tb(run_dir, "status", "--json").stdout)
        assert set(st["faults"]) == {"1-2", "3-4", "2-4"}
        for a, b in (("1", "2"), ("3", "4"), ("2", "4")):
            tb(run_dir, "heal", a, b)
        assert "drop" not in bed.exec(1, "nft", "list", "table", "netdev", "x0tb_fault")
        assert "LOWER_UP" in bed.exec(4, "ip", "-j", "link", "show", "m2")

        bad = tb(run_dir, "fault", "link-down", "1", "4", check=False)  # no such link
        assert bad.returncode == 1 and "share no link" in bad.stderr
        bad = tb(run_dir, "fault", "kill", "9", check=False)
        assert bad.returncode == 1

        pid = st["nodes"][2]["pid"]
        tb(run_dir, "fault", "kill", "3")
        assert not os.path.exists(f"/proc/{pid}") or "babeld" not in open(f"/proc/{pid}/cmdline").read()
        tb(run_dir, "restart", "3")
        st = json.loads(tb(run_dir, "status", "--json").stdout)
        assert st["nodes"][2]["alive"]
        pids = [n["pid"] for n in st["nodes"]]
    finally:
        tb(run_dir, "down")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in names)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}/cmdline") or b"babeld" not in open(f"/proc/{pid}/cmdline", "rb").read()
    assert not (run_dir / "state.json").exists()
    again = tb(run_dir, "status", check=False)
    assert again.returncode == 1 and "no testbed" in again.stderr
