"""Two x0node sites whose only connection is one obfuscated TCP stream: each runs `x0node transport
tunnel-*` (SS2022 inside FakeTLS, shaped) and `x0node run` with the TAP as its only mesh interface.
Signed hellos, keepalives and LSAs cross the tunnel, routes to the other node's mesh address
converge in our table, and a ping between the mesh addresses crosses."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.netns import run
from tests.integration.test_transport_tunnel import PID, PSK, sites, start_tunnel, wait_ping  # noqa: F401

daemon_cli = pytest.importorskip("x0node.daemon.cli", reason="x0node daemon not in this build")

READY_RE = re.compile(r"x0node ready node_id=(\S+) mesh_addr=(\S+)")
CONVERGE_TIMEOUT_S = 40.0


def start_daemon(
    procs, ns_name: str, data_dir: pathlib.Path, tap: str, log: pathlib.Path, transport: dict | None = None
) -> subprocess.Popen:
    from x0node.daemon.config import dump_toml

    cfg = data_dir / "x0node.toml"
    doc: dict = {"node": {"data_dir": str(data_dir), "interfaces": [tap], "log_level": "info"}}
    if transport is not None:
        doc["transport"] = transport
    cfg.write_text(dump_toml(doc))
    out = open(log, "ab")  # noqa: SIM115 - closed with the process below
    p = subprocess.Popen(["ip", "netns", "exec", ns_name, sys.executable, "-m", "x0node", "run", "--config", str(cfg)],
                         stdout=out, stderr=out, cwd=data_dir)
    out.close()
    procs.append(p)
    return p


def wait_ready(log: pathlib.Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = READY_RE.search(log.read_text(errors="replace"))
        if m:
            return m.group(1), m.group(2)
        assert proc.poll() is None, f"daemon exited:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"daemon not ready:\n{log.read_text(errors='replace')[-3000:]}")


def our_route(ns_name: str, dst: str) -> str:
    return run("ip", "-6", "route", "show", "table", "all", dst, ns=ns_name).stdout


@pytest.mark.parametrize("mode", ["tunnel-process", "transport-service"])
def test_x0node_mesh_over_faketls_tunnel(sites, tmp_path, mode):  # noqa: F811
    """`tunnel-process`: the tunnels run as their own processes before the daemons start;
    `transport-service`: each daemon runs its tunnel itself ([transport] section), the TAP appears
    after the daemon started."""
    from x0lab.testbed.provision import provision_node
    from x0node.proto.trust import TrustAnchor

    ns, a, b, procs = sites
    tap_a, tap_b = f"x0tr{PID}a", f"x0tr{PID}b"
    services: dict[str, dict | None] = {"a": None, "b": None}
    if mode == "tunnel-process":
        start_tunnel(procs, a, "tunnel-server", tap_a, "10.77.0.1/24", "--listen", "192.0.2.1:8443",
                     "--faketls-fallback", "192.0.2.1:9", "--shape", "video")
        time.sleep(0.5)
        start_tunnel(procs, b, "tunnel-client", tap_b, "10.77.0.2/24", "--server", "192.0.2.1:8443",
                     "--faketls-sni", "www.example.com", "--shape", "browsing")
        wait_ping(b, "10.77.0.1")
    else:
        services["a"] = {"tunnels": [{"role": "server", "listen": "192.0.2.1:8443", "tap": tap_a, "password": PSK,
                                      "faketls_fallback": "192.0.2.1:9", "shape": "video"}]}
        services["b"] = {"tunnels": [{"role": "client", "server": "192.0.2.1:8443", "tap": tap_b, "password": PSK,
                                      "faketls_sni": "www.example.com", "shape": "browsing"}]}

    anchor = TrustAnchor.from_seed(os.urandom(32))
    nodes = {}
    for name, ns_name, tap in (("a", a, tap_a), ("b", b, tap_b)):
        data_dir = tmp_path / name
        provision_node(data_dir, anchor)
        log = tmp_path / f"{name}.log"
        proc = start_daemon(procs, ns_name, data_dir, tap, log, services[name])
        nodes[name] = (ns_name, tap, log, proc)
    ids = {name: wait_ready(log, proc) for name, (_, _, log, proc) in nodes.items()}
    addr_a, addr_b = ids["a"][1], ids["b"][1]

    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    ra = rb = ""
    while time.monotonic() < deadline:
        ra, rb = our_route(b, addr_a), our_route(a, addr_b)
        if tap_b in ra and tap_a in rb:
            break
        time.sleep(0.25)
    assert tap_b in ra and "table 6464" in ra, f"b has no route to a over the tunnel: {ra!r}"
    assert tap_a in rb and "table 6464" in rb, f"a has no route to b over the tunnel: {rb!r}"
    assert "fe80::" in ra  # via a's link-local address on the TAP: learnt from hellos over the stream

    out = wait_ping(b, addr_a, 20, "-6")
    assert "1 received" in out
    if mode == "transport-service":
        assert "transport tunnel up" in nodes["b"][2].read_text()

    # clean stop: the daemons withdraw their routes and exit
    for _, _, _, proc in nodes.values():
        proc.send_signal(signal.SIGTERM)
    for _, _, log, proc in nodes.values():
        assert proc.wait(15) == 0, log.read_text(errors="replace")[-2000:]
    assert tap_b not in our_route(b, addr_a)
