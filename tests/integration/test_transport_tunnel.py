"""Two namespace "sites" whose only connection is one obfuscated TCP stream (SS2022, optionally in
FakeTLS, shaped): TAP interfaces at both ends, IPv4 and IPv6 link-local multicast cross it."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.integration.netns import Namespaces, run
from tests.integration.processes import stop_processes

PSK = base64.b64encode(os.urandom(32)).decode()
PID = os.getpid() % 100000


@pytest.fixture
def sites():
    ns = Namespaces("x0tr")
    procs: list[subprocess.Popen] = []
    try:
        a, b = ns.add(), ns.add()
        ns.veth(a, b, "up0", "up0")
        run("ip", "addr", "add", "192.0.2.1/30", "dev", "up0", ns=a)
        run("ip", "addr", "add", "192.0.2.2/30", "dev", "up0", ns=b)
        yield ns, a, b, procs
    finally:
        stop_processes(procs)
        ns.cleanup()


def start_tunnel(procs, ns_name: str, role: str, tap: str, addr: str, *extra: str) -> subprocess.Popen:
    cmd = ["ip", "netns", "exec", ns_name, sys.executable, "-m", "x0node", "transport", role,
           "--password", PSK, "--tap", tap, "--address", addr, *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    return p


def wait_ping(ns_name: str, dst: str, timeout_s: float = 20.0, *args: str) -> str:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        r = run("ping", "-c", "1", "-W", "1", *args, dst, ns=ns_name, check=False)
        if r.returncode == 0:
            return r.stdout
        last = r.stdout + r.stderr
    raise AssertionError(f"no ping reply from {dst}: {last}")


@pytest.mark.parametrize(
    "server_extra,client_extra",
    [
        (["--faketls-fallback", "192.0.2.1:9"], ["--faketls-sni", "www.example.com", "--shape", "browsing"]),
        (["--shape", "gaming"], ["--shape", "video"]),
    ],
    ids=["faketls-browsing", "ss2022-gaming-video"],
)
def test_ping_crosses_obfuscated_tunnel(sites, server_extra, client_extra, tmp_path):
    ns, a, b, procs = sites
    tap_a, tap_b = f"x0tr{PID}a", f"x0tr{PID}b"
    pcap = tmp_path / "underlay.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", b, "tcpdump", "-i", "up0", "-U", "-w", str(pcap), "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(dump)
    start_tunnel(procs, a, "tunnel-server", tap_a, "10.77.0.1/24", "--listen", "192.0.2.1:8443", *server_extra)
    time.sleep(0.5)
    start_tunnel(procs, b, "tunnel-client", tap_b, "10.77.0.2/24", "--server", "192.0.2.1:8443", *client_extra)
    out = wait_ping(b, "10.77.0.1")
    assert "1 received" in out
    # IPv6 link-local multicast (what mesh hellos use) crosses too: all-nodes group answers
    # (retried: the TAP's link-local address is tentative until duplicate address detection ends)
    deadline = time.monotonic() + 20
    out = ""
    while "fe80::" not in out and time.monotonic() < deadline:
        out = run("ping", "-6", "-c", "2", "-W", "2", "-I", tap_b, "ff02::1", ns=b, check=False).stdout
    assert "fe80::" in out, out
    # the underlay carries exactly one TCP connection between the sites
    conns = run("ss", "-Htn", "state", "established", ns=b).stdout.strip().splitlines()
    assert len(conns) == 1 and "192.0.2.1:8443" in conns[0], conns
    for p in procs:
        assert p.poll() is None, p.stdout.read() if p.stdout else ""
    dump.terminate()
    dump.wait(5)
    if "--faketls-sni" in client_extra:
        # what the uplink saw: TLS to www.example.com, and nothing on TCP that is not a TLS record
        sni = run("tshark", "-r", str(pcap), "-d", "tcp.port==8443,tls", "-Y", "tls.handshake.type==1",
                  "-T", "fields", "-e", "tls.handshake.extensions_server_name", timeout=60).stdout.split()
        assert sni == ["www.example.com"], sni
        non_tls = run("tshark", "-r", str(pcap), "-d", "tcp.port==8443,tls", "-Y", "tcp.len>0 && !tls && !tcp.reassembled_in",
                      timeout=60).stdout.strip()
        assert non_tls == "", non_tls


def test_tunnel_redials_after_server_restart(sites):
    ns, a, b, procs = sites
    tap_a, tap_b = f"x0tr{PID}a", f"x0tr{PID}b"
    srv = start_tunnel(procs, a, "tunnel-server", tap_a, "10.77.0.1/24", "--listen", "192.0.2.1:8443")
    time.sleep(0.5)
    start_tunnel(procs, b, "tunnel-client", tap_b, "10.77.0.2/24", "--server", "192.0.2.1:8443")
    wait_ping(b, "10.77.0.1")
    srv.terminate()
    srv.wait(5)
    time.sleep(0.5)
    start_tunnel(procs, a, "tunnel-server", tap_a, "10.77.0.1/24", "--listen", "192.0.2.1:8443")
    wait_ping(b, "10.77.0.1", 30)


@pytest.mark.skipif(shutil.which("babeld") is None, reason="babeld not installed")
def test_babel_mesh_converges_over_faketls_tunnel(sites, tmp_path):
    """A real mesh routing daemon (babeld) at each site uses the TAP as its only mesh interface:
    its IPv6 link-local multicast hellos cross the obfuscated stream, routes to the other site's
    loopback address converge, and a ping between those addresses crosses."""
    ns, a, b, procs = sites
    tap_a, tap_b = f"x0tr{PID}a", f"x0tr{PID}b"
    start_tunnel(procs, a, "tunnel-server", tap_a, "10.77.0.1/24", "--listen", "192.0.2.1:8443",
                 "--faketls-fallback", "192.0.2.1:9")
    time.sleep(0.5)
    start_tunnel(procs, b, "tunnel-client", tap_b, "10.77.0.2/24", "--server", "192.0.2.1:8443",
                 "--faketls-sni", "www.example.com", "--shape", "browsing")
    wait_ping(b, "10.77.0.1")
    for ns_name, tap, lo_addr, tag in ((a, tap_a, "10.78.0.1", "a"), (b, tap_b, "10.78.0.2", "b")):
        run("ip", "addr", "add", f"{lo_addr}/32", "dev", "lo", ns=ns_name)
        cmd = ["ip", "netns", "exec", ns_name, "babeld", "-I", str(tmp_path / f"babel-{tag}.pid"),
               "-S", str(tmp_path / f"babel-{tag}.state"), "-L", str(tmp_path / f"babel-{tag}.log"),
               "-C", "default hello-interval 0.5", "-C", "redistribute local ip 10.78.0.0/16 ge 32 allow",
               "-C", "redistribute local deny", tap]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 30
    routes = ""
    while time.monotonic() < deadline:
        routes = run("ip", "route", "show", "10.78.0.1", ns=b).stdout
        if "proto babel" in routes and tap_b in routes:
            break
        time.sleep(0.5)
    assert "proto babel" in routes and tap_b in routes, routes
    out = wait_ping(b, "10.78.0.1", 20, "-I", "10.78.0.2")
    assert "1 received" in out
    assert "proto babel" in run("ip", "route", "show", "10.78.0.2", ns=a).stdout
