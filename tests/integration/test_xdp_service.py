"""The telemetry service as the daemon runs it, inside a namespace entered with `ip netns exec`
(which remounts /sys, so the service must mount bpffs itself): attaches to the mesh interface,
publishes exact per-interface metrics, reports a missing interface, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.bpf_support import BPF_DIR, ROOT, quiet_pair, send_frames
from tests.integration.netns import run

SERVICE_SCRIPT = r"""
import asyncio, json, os, pathlib, sys, time
from prometheus_client import CollectorRegistry, generate_latest
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.telemetry.service import TelemetryService

async def main():
    pin_root, bpf_dir = sys.argv[1], sys.argv[2]
    reg, bus = CollectorRegistry(), EventBus()
    ctx = ServiceContext(router=None, config=None, data_dir=pathlib.Path("/tmp"), registry=reg, bus=bus,
                         interfaces=["x0tb", "x0tnone"], node_id="t", mesh_addr="::1", provider=None)
    svc = TelemetryService({"interval_s": 0.2, "epsilon": 0, "pin_root": pin_root, "bpf_dir": bpf_dir,
                            "xdp_mode": "native", "profile": True})
    await svc.start(ctx)
    print(json.dumps({"ready": svc.status()}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        snap = svc.snapshot()
        if snap["interfaces"].get("x0tb", {}).get("rx_packets", 0) >= 42:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    out = {"snapshot": svc.snapshot(), "status": svc.status(), "metrics": generate_latest(reg).decode(),
           "events": [e.as_dict() for e in bus.since(0)], "extras": sorted(ctx.extras)}
    await svc.stop()
    out["pins_left"] = any(os.scandir(pin_root)) if os.path.isdir(pin_root) else False
    out["extras_after"] = sorted(ctx.extras)
    print(json.dumps(out), flush=True)

asyncio.run(main())
"""


# the capabilities the device's systemd unit grants (rootfs/usr/lib/systemd/system/x0node.service)
DEVICE_CAPS = "-all,+net_admin,+net_raw,+bpf,+perfmon"


@pytest.mark.parametrize("how", ["netns-exec", "device-caps"])
def test_service_attaches_exports_and_cleans_up(namespaces, how):
    """netns-exec: full root under `ip netns exec` (own bpffs mounted by the service);
    device-caps: only the unit's capabilities, in the namespace but on the host's bpffs."""
    a, b = quiet_pair(namespaces)
    pin_root = f"/sys/fs/bpf/x0tsvc{os.getpid()}"
    if how == "netns-exec":
        prefix = ["ip", "netns", "exec", b]
    else:
        prefix = ["nsenter", f"--net=/run/netns/{b}", "setpriv", f"--inh-caps={DEVICE_CAPS}",
                  f"--ambient-caps={DEVICE_CAPS}", f"--bounding-set={DEVICE_CAPS}"]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", SERVICE_SCRIPT, pin_root, str(BPF_DIR)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        ready = json.loads(line)["ready"]
        assert ready["bpf"] is True and ready["interfaces"]["x0tb"] == "native"
        if how == "device-caps":  # BPF_ENABLE_STATS needs CAP_SYS_ADMIN: reported, not fatal
            assert ready["reason"].startswith("partial: bpf stats")
        else:
            assert ready["reason"] == "ok"
        assert ready["interfaces"]["x0tnone"].startswith("unattached")
        assert ready["programs"] == ["tcp_retrans", "tcp_rtt", "tcp_states", "xdp_mac_stats"]
        send_frames(a, "x0ta", [(bytes.fromhex("020000000a01"), 40, 100), (bytes.fromhex("010000000a01"), 2, 60)])
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    ifc = res["snapshot"]["interfaces"]["x0tb"]
    assert (ifc["mode"], ifc["rx_packets"], ifc["passed"], ifc["dropped"], ifc["rx_bytes"]) == ("native", 42, 40, 2, 4120)
    assert res["snapshot"]["peers"][0]["packets"] == 40  # epsilon 0: exact
    assert len(res["snapshot"]["peers"][0]["source"]) == 16
    assert "rx_pps" in res["snapshot"]["rates"]["interfaces"]["x0tb"]
    metrics = res["metrics"]
    assert 'x0node_xdp_rx_packets_total{iface="x0tb"} 42.0' in metrics
    assert 'x0node_xdp_rx_bytes_total{iface="x0tb"} 4120.0' in metrics
    assert 'x0node_xdp_dropped_total{iface="x0tb"} 2.0' in metrics
    assert "x0node_telemetry_bpf_available 1.0" in metrics
    assert "x0node_tcp_rtt_microseconds_bucket" in metrics
    assert 'x0node_bpf_prog_runs_total{prog="xdp_mac_stats"}' in metrics
    assert any(e["topic"] == "telemetry" for e in res["events"])
    assert res["extras"] == ["telemetry"] and res["extras_after"] == []
    assert res["pins_left"] is False
    assert "xdp" not in run("ip", "-d", "link", "show", "x0tb", ns=b).stdout
    if how == "device-caps":
        assert os.listdir(pin_root) == []
        os.rmdir(pin_root)


def test_service_runs_on_without_bpf_objects(tmp_path):
    script = r"""
import asyncio, json, pathlib, sys
from prometheus_client import CollectorRegistry, generate_latest
from x0node.daemon.bus import EventBus
from x0node.daemon.services import ServiceContext
from x0node.telemetry.service import TelemetryService
async def main():
    reg = CollectorRegistry()
    ctx = ServiceContext(router=None, config=None, data_dir=pathlib.Path("/tmp"), registry=reg, bus=EventBus(),
                         interfaces=["lo"], node_id="t", mesh_addr="::1", provider=None)
    svc = TelemetryService({"bpf_dir": sys.argv[1], "pin_root": ""})
    await svc.start(ctx)
    print(json.dumps({"status": svc.status(), "metrics": generate_latest(reg).decode()}))
    await svc.stop()
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"]["bpf"] is False
    assert res["status"]["reason"].startswith("no BPF program loaded")
    assert "xdp_mac_stats" in res["status"]["errors"]
    assert "x0node_telemetry_bpf_available 0.0" in res["metrics"]
