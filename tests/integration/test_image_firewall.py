"""The device firewall on real nftables: a router namespace with the board's port names (eth0 LAN, eth1
mesh, eth2 of no role: the uplink) loads the ruleset firewall.py makes from the image's policy and a daemon
config, real listeners run on the UI, routing, tunnel, coordination (UDP and Raft TCP), NAT-link ports and
the name service's DNS responder, and peers on each side probe them.

Regression for the exposure finding: before the firewall, the UI answered on every port and the routing
port's datagrams from a LAN reached the kernel; now the UI answers only on the LAN side (mesh only with
web_on_mesh), the routing port only on mesh ports, and what is refused is counted by role. The services
added since open only on their side: coordination's datagrams and Raft group from the mesh, its DNS
(UDP and TCP) from the LAN, NAT links from the uplink."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from image.board import REPO_ROOT, load_board
from image.overlay import firewall_policy
from tests.integration.netns import run
from tests.unit.rootfs_modules import DEVICE_LIB

PROBE_TIMEOUT_S = 1.5
LINKS = {"lan": ("eth0", "fd00:f1::"), "mesh": ("eth1", "fd00:f2::"), "other": ("eth2", "fd00:f3::")}
SERVER = """
import asyncio, json, socket, sys
from x0node.coord.dns import DnsResponder

class Kv:  # the name service's quorum read, answered locally: the firewall is what is tested
    async def kv_get(self, key):
        return {"ok": True, "found": key == "dns/router", "value": json.dumps({"aaaa": ["fd00::53"]}).encode()}

class Udp(asyncio.DatagramProtocol):
    def __init__(self, port):
        self.port = port
    def datagram_received(self, data, addr):
        print(f"{self.port} {data.decode()}", flush=True)

async def main():
    async def close(reader, writer):
        writer.close()
    for p in TCP_PORTS:
        await asyncio.start_server(close, "::", p, family=socket.AF_INET6, reuse_address=True)
    loop = asyncio.get_running_loop()
    for p in UDP_PORTS:
        await loop.create_datagram_endpoint(lambda p=p: Udp(p), local_addr=("::", p), family=socket.AF_INET6)
    await DnsResponder(Kv(), "mesh.").start([("::", 53)])
    print("ready", flush=True)
    await asyncio.Event().wait()

TCP_PORTS, UDP_PORTS = json.loads(sys.argv[1])
asyncio.run(main())
"""
# the UI (443, 80 redirect), a tunnel server (8443), coordination's Raft group (6723)
TCP_PORTS = (443, 80, 8443, 6723)
# routing (6717), coordination datagrams (6722), NAT links (6719)
UDP_PORTS = (6717, 6722, 6719)
TCP_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close(); print("open")
except OSError as e:
    print(type(e).__name__)
"""
UDP_PROBE = "import socket,sys; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))"


@pytest.fixture
def router(namespaces, tmp_path):
    r = namespaces.add()
    peers = {}
    for role, (ifname, net) in LINKS.items():
        p = namespaces.add()
        namespaces.veth(r, p, ifname, "p0")
        run("ip", "addr", "add", f"{net}1/64", "dev", ifname, "nodad", ns=r)
        run("ip", "addr", "add", f"{net}2/64", "dev", "p0", "nodad", ns=p)
        peers[role] = p
    policy = tmp_path / "firewall.json"
    policy.write_text(json.dumps(firewall_policy(load_board("x86_64"))))
    config = tmp_path / "config.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\ninterfaces = ["eth1"]\n'
                      '[web]\nlisten = "::"\nport = 443\nhttp_port = 80\n'
                      '[transport]\n[[transport.tunnels]]\nrole = "server"\nlisten = "[::]:8443"\ntap = "x0t0"\n'
                      'password = "unused"\n'
                      '[coord]\ndns_listen = ["[::]:53"]\n'
                      '[overlay]\nencrypt = false\n[overlay.nat]\n')
    server = subprocess.Popen(["ip", "netns", "exec", r, sys.executable, "-u", "-c", SERVER,
                               json.dumps([TCP_PORTS, UDP_PORTS])], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert server.stdout.readline().strip() == "ready"

    def load(device_policy: pathlib.Path | None = None) -> str:
        out = tmp_path / "firewall.nft"
        args = [sys.executable, str(DEVICE_LIB / "firewall.py"), "--policy", str(policy), "--config", str(config),
                "--out", str(out), "--load", "--device-policy", str(device_policy or tmp_path / "absent.toml")]
        # as on the image, which has no /etc/protocols or /etc/services: nft must not need name lookups
        script = ("mount --bind /dev/null /etc/protocols && mount --bind /dev/null /etc/services && "
                  'exec ip netns exec "$0" "$@"')
        proc = run("unshare", "-m", "--propagation", "private", "sh", "-c", script, r, *args, check=False)
        assert proc.returncode == 0, proc.stderr
        return out.read_text()

    yield r, peers, load, server
    server.kill()
    server.wait()


def _tcp(ns: str, addr: str, port: int) -> str:
    return run(sys.executable, "-c", TCP_PROBE, addr, str(port), str(PROBE_TIMEOUT_S), ns=ns).stdout.strip()


def _counter(ns: str, name: str) -> int:
    out = run("nft", "-j", "list", "counter", "inet", "x0tta6bl4", name, ns=ns).stdout
    return next(o["counter"]["packets"] for o in json.loads(out)["nftables"] if "counter" in o)


def _router_addr(role: str) -> str:
    return f"{LINKS[role][1]}1"


def test_ui_only_on_lan_routing_port_only_on_mesh(router, tmp_path) -> None:
    r, peers, load, server = router
    # without the firewall (the image before the fix), the UI answers on every side
    assert _tcp(peers["mesh"], _router_addr("mesh"), 443) == "open"
    load()
    assert _tcp(peers["lan"], _router_addr("lan"), 443) == "open"
    assert _tcp(peers["lan"], _router_addr("lan"), 80) == "open"
    for role in ("mesh", "other"):
        assert _tcp(peers[role], _router_addr(role), 443) == "TimeoutError", role  # dropped, not refused
        # nor through the router's LAN address from the wrong side
        assert _tcp(peers[role], _router_addr("lan"), 443) in ("TimeoutError", "OSError"), role
    assert _counter(r, "drop_mesh") >= 1 and _counter(r, "drop_other") >= 1
    # tunnel servers are open on every side (authenticated, probe-resistant)
    assert _tcp(peers["other"], _router_addr("other"), 8443) == "open"

    # the routing port: mesh datagrams arrive, LAN datagrams are dropped and counted
    before = _counter(r, "drop_lan")
    run(sys.executable, "-c", UDP_PROBE, _router_addr("lan"), "6717", "from-lan", ns=peers["lan"])
    run(sys.executable, "-c", UDP_PROBE, _router_addr("mesh"), "6717", "from-mesh", ns=peers["mesh"])
    assert server.stdout.readline().strip() == "6717 from-mesh"
    assert _counter(r, "drop_lan") == before + 1
    # ICMPv6 (neighbour discovery and echo) works on a mesh port
    assert run("ping", "-6", "-c", "1", "-W", "2", _router_addr("mesh"), ns=peers["mesh"], check=False).returncode == 0

    # configured: the UI on mesh ports too
    device = tmp_path / "firewall.toml"
    device.write_text("web_on_mesh = true\n")
    load(device)
    assert _tcp(peers["mesh"], _router_addr("mesh"), 443) == "open"
    assert _tcp(peers["other"], _router_addr("other"), 443) == "TimeoutError"


def _dig(ns: str, addr: str, *flags: str) -> str:
    proc = run("dig", *flags, "+tries=1", "+time=1", "-p", "53", f"@{addr}", "router.mesh", "AAAA", ns=ns, check=False)
    return proc.stdout if proc.returncode == 0 else "timed out"


def test_coordination_dns_and_nat_links_only_from_their_side(router) -> None:
    r, peers, load, server = router
    text = load()
    assert "tcp dport 6723 accept" in text.split("chain mesh {")[1].split("chain lan {")[0]
    # the Raft group's TCP port: from the mesh side only
    assert _tcp(peers["mesh"], _router_addr("mesh"), 6723) == "open"
    before = {c: _counter(r, c) for c in ("drop_lan", "drop_other")}
    for role in ("lan", "other"):
        assert _tcp(peers[role], _router_addr(role), 6723) == "TimeoutError", role
    # the name service answers the LAN, over UDP and TCP, and nobody else
    for flags in ((), ("+tcp",)):
        assert "fd00::53" in _dig(peers["lan"], _router_addr("lan"), "+short", *flags), flags
        for role in ("mesh", "other"):
            assert _dig(peers[role], _router_addr(role), *flags) == "timed out", (role, flags)
    assert _counter(r, "drop_lan") >= before["drop_lan"] + 1 and _counter(r, "drop_other") >= before["drop_other"] + 3

    # coordination datagrams arrive from the mesh only; NAT links from the uplink only
    mesh_before = _counter(r, "drop_mesh")
    run(sys.executable, "-c", UDP_PROBE, _router_addr("lan"), "6722", "coord-from-lan", ns=peers["lan"])
    run(sys.executable, "-c", UDP_PROBE, _router_addr("mesh"), "6719", "nat-from-mesh", ns=peers["mesh"])
    run(sys.executable, "-c", UDP_PROBE, _router_addr("lan"), "6719", "nat-from-lan", ns=peers["lan"])
    run(sys.executable, "-c", UDP_PROBE, _router_addr("mesh"), "6722", "coord-from-mesh", ns=peers["mesh"])
    run(sys.executable, "-c", UDP_PROBE, _router_addr("other"), "6719", "nat-from-uplink", ns=peers["other"])
    got = {server.stdout.readline().strip() for _ in range(2)}
    assert got == {"6722 coord-from-mesh", "6719 nat-from-uplink"}
    assert _counter(r, "drop_mesh") == mesh_before + 1
