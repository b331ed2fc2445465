"""x0node daemons in namespace meshes on the real kernel: routes, faults, restarts, intruders.

Each test builds its own testbed in a temporary run directory (names carry this process id) and
removes it. Timings are not asserted here (bench/outage.py measures them); waits have generous
deadlines so a loaded machine does not make a test fail.
"""

from __future__ import annotations

import json
import pathlib
import struct
import subprocess
import sys
import time

import pytest

from x0lab.testbed import measure, provision
from x0lab.testbed.bed import Testbed, up

CONVERGE_TIMEOUT_S = 30.0
RESUME_TIMEOUT_S = 15.0


@pytest.fixture
def ring6(tmp_path):
    bed = up(tmp_path / "bed", "ring:6", "x0node")
    try:
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None, "ring did not converge"
        yield bed
    finally:
        bed.down()


def kernel_routes(bed: Testbed, k: int) -> dict[str, str]:
    """dst -> dev of the node's routes in our table with our protocol."""
    return {r["dst"]: r["dev"] for r in bed.routes(k)}


def test_full_reachability_ring6(ring6):
    bed = ring6
    for a in bed.nodes:
        routes = kernel_routes(bed, a)
        assert {bed.nodes[b].mesh_addr for b in bed.nodes if b != a} <= set(routes)
        for b in bed.nodes:
            if a != b:
                # a retry window: a loaded machine may delay a keepalive long enough for a brief flap
                assert measure.wait_ping(bed, a, bed.nodes[b].mesh_addr, RESUME_TIMEOUT_S), f"n{a} -> n{b}"
    # routes carry our protocol and table only; the main table holds none of ours
    main = json.loads(bed.exec(1, "ip", "-j", "-6", "route", "show", "table", "main"))
    assert not [r for r in main if r.get("protocol") in (78, "78")]
    rules = bed.exec(1, "ip", "-6", "rule")
    assert "lookup 6464" in rules


@pytest.mark.parametrize("kind", ["link-down", "link-silent", "loss", "kill"])
def test_traffic_resumes_after_fault(ring6, kind):
    bed = ring6
    dst = bed.nodes[4].mesh_addr
    dev = measure.route_dev(bed, 1, dst)
    nb = next(j for j, ifname in bed.nodes[1].ifaces.items() if ifname == dev)
    if kind == "kill":
        bed.fault("kill", nb)
    elif kind == "loss":
        bed.fault("loss", 1, nb, percent=30)
    else:
        bed.fault(kind, nb, 1)
    assert measure.wait_ping(bed, 1, dst, RESUME_TIMEOUT_S), f"no traffic n1 -> n4 after {kind}"
    if kind in ("link-down", "link-silent", "kill"):
        # routed around: the path no longer starts on the broken link
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while measure.route_dev(bed, 1, dst) == dev and time.monotonic() < deadline:
            time.sleep(0.05)
        assert measure.route_dev(bed, 1, dst) != dev
    if kind == "kill":
        bed.restart(nb)
    else:
        bed.heal(nb, 1)
    assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
    assert measure.wait_ping(bed, 1, bed.nodes[nb].mesh_addr, RESUME_TIMEOUT_S)


def test_killed_node_pruned_and_restarted_node_rejoins(ring6):
    bed = ring6
    victim = bed.nodes[3]
    old_id, addr = victim.node_id, victim.mesh_addr
    bed.fault("kill", 3)
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(addr not in kernel_routes(bed, k) for k in bed.nodes if k != 3):
            break
        time.sleep(0.1)
    for k in bed.nodes:
        if k != 3:
            assert addr not in kernel_routes(bed, k), f"n{k} still routes to the killed node"
    # the others still reach each other (n2 and n4 around the other side of the ring)
    assert measure.wait_ping(bed, 2, bed.nodes[4].mesh_addr, RESUME_TIMEOUT_S)
    bed.restart(3)
    assert bed.nodes[3].node_id == old_id  # same key, same identity
    assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S) is not None
    for k in bed.nodes:
        if k != 3:
            assert measure.wait_ping(bed, k, addr, RESUME_TIMEOUT_S), f"n{k} cannot reach the restarted node"


def test_clean_shutdown_withdraws_our_kernel_state(ring6):
    bed = ring6
    ns = bed.nodes[2].ns
    bed.exec(2, "ip", "-6", "route", "add", "fd00:1234::/64", "dev", "lo")  # a route that is not ours
    bed.stop(2)  # SIGTERM
    out = bed.exec(2, "ip", "-6", "route", "show", "table", "all", "proto", "78")
    assert out.strip() == ""
    assert "lookup 6464" not in bed.exec(2, "ip", "-6", "rule")
    assert bed.nodes[2].mesh_addr not in bed.exec(2, "ip", "-6", "addr", "show", "dev", "lo")
    assert "fd00:1234::/64" in bed.exec(2, "ip", "-6", "route", "show")
    log = (pathlib.Path(bed.nodes[2].data_dir) / "x0node.log").read_text()
    assert "x0node stopped" in log and "Traceback" not in log
    del ns
    # its neighbours saw the graceful leave and routed around at once
    assert measure.wait_ping(bed, 1, bed.nodes[3].mesh_addr, RESUME_TIMEOUT_S)


def test_revocation_file_applied_at_run_time_and_a_bad_one_refused(ring6):
    """A new revocation list in a running node's data directory takes the revoked neighbour's
    adjacency and routes away without a restart; one that does not verify is logged, counted and
    changes nothing."""
    from x0node.proto import keyfile
    from x0node.proto.trust import TrustAnchor

    bed = ring6
    victim = bed.nodes[3]
    anchor = provision.mesh_anchor(bed.run_dir)
    rogue = TrustAnchor.from_seed(b"\x99" * 32)
    keyfile.save_revocations(pathlib.Path(bed.nodes[1].data_dir) / "revoked.crl", rogue.revoke([], 7, 0))
    keyfile.save_revocations(pathlib.Path(bed.nodes[2].data_dir) / "revoked.crl",
                             anchor.revoke([bytes.fromhex(victim.node_id)], 1, 0))
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while time.monotonic() < deadline and victim.mesh_addr in kernel_routes(bed, 2):
        time.sleep(0.1)
    routes = kernel_routes(bed, 2)
    assert victim.mesh_addr not in routes, "n2 still routes to the revoked node"
    assert bed.nodes[2].ifaces[3] not in routes.values(), "n2 still routes through the revoked node"
    assert measure.wait_ping(bed, 2, bed.nodes[4].mesh_addr, RESUME_TIMEOUT_S)  # the other way round
    log1 = pathlib.Path(bed.nodes[1].data_dir) / "x0node.log"
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while time.monotonic() < deadline and "revocation list refused (bad_signature)" not in log1.read_text():
        time.sleep(0.1)
    assert "revocation list refused (bad_signature)" in log1.read_text()
    assert victim.mesh_addr in kernel_routes(bed, 1)  # a list that does not verify changes nothing


def _seven_node_bed(tmp_path) -> Testbed:
    topo = tmp_path / "ring6plus1.txt"
    topo.write_text("1 2\n2 3\n3 4\n4 5\n5 6\n6 1\n1 7\n")
    return Testbed.create(tmp_path / "bed", f"file:{topo}", "x0node")


def test_uncertified_node_changes_no_route(tmp_path):
    bed = _seven_node_bed(tmp_path)
    try:
        bed.start_all(exclude=(7,))
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S, nodes=[1, 2, 3, 4, 5, 6]) is not None
        before = {k: kernel_routes(bed, k) for k in range(1, 7)}
        provision.uncertified_node(pathlib.Path(bed.nodes[7].data_dir), bed.run_dir)
        bed.start(7)
        time.sleep(3.0)  # many hello intervals
        after = {k: kernel_routes(bed, k) for k in range(1, 7)}
        # same destinations everywhere (next hops between equal-cost paths may move with link costs)
        assert {k: set(r) for k, r in after.items()} == {k: set(r) for k, r in before.items()}
        assert all(dev != "m7" for dev in after[1].values())
        assert all(bed.nodes[7].mesh_addr not in r for r in after.values())
        assert kernel_routes(bed, 7) == {}
        log1 = (pathlib.Path(bed.nodes[1].data_dir) / "x0node.log").read_text()
        assert bed.nodes[7].node_id not in log1  # never became a neighbour or a node
    finally:
        bed.down()


REPLAY_SENDER = r"""
import socket, struct, sys, time
group, port, ifname, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
payloads = [bytes.fromhex(x) for x in sys.stdin.read().split()]
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
for rnd in range(3):
    for p in payloads:
        s.sendto(p, (group, port, 0, idx))
        s.sendto(p, (target, port, 0, idx))
    time.sleep(0.5)
print(len(payloads))
"""


def _udp_payloads_from_pcap(path: pathlib.Path, port: int) -> list[bytes]:
    data = path.read_bytes()
    out = []
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16: off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 + 40 + 8 or frame[12:14] != b"\x86\xdd" or frame[14 + 6] != 17:
            continue
        udp = frame[54:62]
        if struct.unpack("!H", udp[2:4])[0] == port:
            out.append(frame[62:])
    return out


def test_replayed_packets_change_no_route(tmp_path):
    from x0node.proto.protocol import MESH_MCAST_GROUP, MESH_UDP_PORT

    bed = _seven_node_bed(tmp_path)
    try:
        bed.start_all(exclude=(7,))  # n7 is a bare namespace on n1's link m7: the attacker
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S, nodes=[1, 2, 3, 4, 5, 6]) is not None
        # capture what n2 sends to n1 (hellos, keepalives, LSAs, acks), including a topology change
        pcap = tmp_path / "n1-m2.pcap"
        cap = subprocess.Popen(
            ["ip", "netns", "exec", bed.nodes[1].ns, "tcpdump", "-i", "m2", "-Q", "in", "-w", str(pcap), "-U",
             "udp", "port", str(MESH_UDP_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            bed.fault("link-down", 3, 4)
            time.sleep(1.0)
            bed.heal(3, 4)
            time.sleep(1.5)
        finally:
            cap.terminate()
            cap.wait(timeout=5)
        payloads = _udp_payloads_from_pcap(pcap, MESH_UDP_PORT)
        assert len(payloads) > 10
        assert measure.wait_converged(bed, CONVERGE_TIMEOUT_S, nodes=[1, 2, 3, 4, 5, 6]) is not None
        time.sleep(1.0)
        before = {k: kernel_routes(bed, k) for k in range(1, 7)}
        n1_ll = json.loads(bed.exec(1, "ip", "-j", "-6", "addr", "show", "dev", "m7"))[0]["addr_info"][0]["local"]
        sent = subprocess.run(
            ["ip", "netns", "exec", bed.nodes[7].ns, sys.executable, "-c", REPLAY_SENDER, MESH_MCAST_GROUP,
             str(MESH_UDP_PORT), "m1", n1_ll],
            input=" ".join(p.hex() for p in payloads), capture_output=True, text=True, timeout=60, check=True,
        )
        assert int(sent.stdout.strip()) == len(payloads)
        time.sleep(1.0)
        after = {k: kernel_routes(bed, k) for k in range(1, 7)}
        assert {k: set(r) for k, r in after.items()} == {k: set(r) for k, r in before.items()}
        assert all(dev != "m7" for dev in after[1].values())
        # and the real neighbours are still up: traffic flows
        assert measure.ping_ok(bed, 1, bed.nodes[4].mesh_addr, count=2, timeout_s=2.0)
    finally:
        bed.down()
