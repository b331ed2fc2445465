"""Two sites behind their own NAT join one mesh through a rendezvous (lab/x0lab/testbed/nat.py).

Port-preserving NATs are punched (the link is direct, the rendezvous relays nothing); a symmetric NAT
is not, and the link goes through the rendezvous' relay. Either way the link is an ordinary mesh
interface: a node behind site A (a2, no NAT code of its own) reaches site B's mesh address over it, and
what crosses the NAT carries no clear payload.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from x0lab.testbed.nat import NatSites

LINK_TIMEOUT_S = 60.0
PATTERN = "58302d4e41542d4d41524b"  # "X0-NAT-MARK"


@pytest.fixture
def sites(request, tmp_path):
    nat_a, nat_b = request.param
    s = NatSites(tmp_path / "nat", nat_a=nat_a, nat_b=nat_b, with_a2=True)
    s.up()
    try:
        yield s
    finally:
        s.down()


def ping_until(s: NatSites, role: str, dst: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = s.exec(role, "ping", "-c", "1", "-W", "1", "-p", PATTERN, dst, check=False)
        if " 0% packet loss" in out:
            return True
    return False


@pytest.mark.parametrize("sites", [("port-preserving", "port-preserving")], indirect=True, ids=["port-preserving"])
def test_port_preserving_nats_are_punched_and_form_one_mesh(sites, tmp_path):
    s = sites
    got = s.wait_link("a", "b", LINK_TIMEOUT_S)
    assert got is not None and got[0] == "direct", got
    assert got[1] is not None and got[1] < s.punch_timeout_s
    assert s.wait_link("b", "a", LINK_TIMEOUT_S) is not None
    pcap = tmp_path / "wan.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", s.ns("nata"), "tcpdump", "-i", "wan", "-U", "--immediate-mode",
                             "-w", str(pcap), "udp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert dump.stderr is not None and "listening on" in dump.stderr.readline()
        assert ping_until(s, "a2", s.nodes["b"].mesh_addr, LINK_TIMEOUT_S)  # routed a2 -> a -> NAT link -> b
        assert ping_until(s, "b", s.nodes["a2"].mesh_addr, LINK_TIMEOUT_S)
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(5)
    raw = pcap.read_bytes()
    assert len(raw) > 200 and bytes.fromhex(PATTERN) not in raw
    # the two NATs talk to each other directly; the rendezvous relayed nothing
    peers = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.dst"], capture_output=True,
                           text=True, timeout=60).stdout.split()
    assert "100.64.2.1" in peers
    assert "NatLinkUp" not in s.log_text("r")
    assert "x0nat" in s.exec("a", "ip", "-6", "route", "show", "table", "6464")


@pytest.mark.parametrize("sites", [("symmetric", "port-preserving")], indirect=True, ids=["symmetric"])
def test_symmetric_nat_falls_back_to_relay(sites, tmp_path):
    s = sites
    got = s.wait_link("a", "b", LINK_TIMEOUT_S)
    assert got is not None and got[0] == "relay", got
    pcap = tmp_path / "r.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", s.ns("r"), "tcpdump", "-i", "wan", "-U", "--immediate-mode",
                             "-w", str(pcap), "udp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert dump.stderr is not None and "listening on" in dump.stderr.readline()
        assert ping_until(s, "a2", s.nodes["b"].mesh_addr, LINK_TIMEOUT_S)
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(5)
    # the rendezvous forwarded sealed datagrams (RELAYED, type 19) to both sites, never the pattern
    payloads = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "ip.dst", "-e", "data.data"],
                              capture_output=True, text=True, timeout=60).stdout.splitlines()
    relayed = {line.split()[0] for line in payloads if len(line.split()) == 2 and line.split()[1].startswith("13")}
    assert relayed == {"100.64.1.1", "100.64.2.1"}
    assert bytes.fromhex(PATTERN) not in pcap.read_bytes()
