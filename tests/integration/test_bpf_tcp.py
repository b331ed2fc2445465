"""The TCP tracepoint programs on real sockets inside a namespace: state changes, RTT samples and
SYN retransmissions are seen. The tracepoints fire for every socket on the machine; the programs are
scoped to the test's namespace, so the counts are exactly what the test caused."""

from __future__ import annotations

import sys

from tests.integration.bpf_support import BPF_DIR
from tests.integration.netns import run
from x0node.telemetry.loader import netns_inode
from x0node.telemetry.probes import Probes

TRAFFIC = r"""
import socket, sys
mode = sys.argv[1]
if mode == "echo":
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
    port = srv.getsockname()[1]
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", port)); a, _ = srv.accept()
        for _ in range(50):
            c.sendall(b"x" * 1000); a.recv(65536); a.sendall(b"y" * 10); c.recv(65536)
        c.close(); a.close()
else:
    try:
        socket.create_connection(("10.77.0.2", 9), timeout=1.6)
    except OSError:
        pass
"""


def test_state_changes_rtt_and_retransmits_are_counted(namespaces):
    ns = namespaces.add()
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None, tcp_netns_ino=netns_inode(f"/run/netns/{ns}"))
    try:
        assert probes.load_tcp() == ["tcp_states", "tcp_rtt", "tcp_retrans"], probes.errors
        before = probes.tcp()
        run(sys.executable, "-c", TRAFFIC, "echo", ns=ns)
        # nobody answers ARP for 10.77.0.2 on this veth, so the SYN is never answered and the
        # kernel retransmits it after ~1 s
        run("ip", "link", "add", "x0tr0", "type", "veth", "peer", "name", "x0tr1", ns=ns)
        run("ip", "addr", "add", "10.77.0.1/24", "dev", "x0tr0", ns=ns)
        run("ip", "link", "set", "x0tr0", "up", ns=ns)
        run("ip", "link", "set", "x0tr1", "up", ns=ns)
        run(sys.executable, "-c", TRAFFIC, "syn", ns=ns)
        after = probes.tcp()
    finally:
        probes.close()

    def delta(name: str) -> int:
        return after.transitions.get(name, 0) - before.transitions.get(name, 0)

    assert before.transitions == {} and before.rtt_samples == 0 and before.retransmits == 0
    assert delta("SYN_SENT->ESTABLISHED") == 3  # three echo connections; the fourth never connects
    assert delta("SYN_RECV->ESTABLISHED") == 3  # the accepted side
    assert delta("ESTABLISHED->FIN_WAIT1") == 3
    assert delta("SYN_SENT->CLOSE") == 1  # the unanswered connect gives up
    assert after.rtt_samples >= 100
    assert after.rtt_mean_us is not None and after.rtt_mean_us > 0
    assert after.retransmits_by_state.get("SYN_SENT", 0) >= 1
    assert set(after.retransmits_by_state) == {"SYN_SENT"}


def test_sockets_of_other_namespaces_are_not_counted(namespaces):
    ns, other = namespaces.add(), namespaces.add()
    probes = Probes(bpf_dir=str(BPF_DIR), pin_root=None, tcp_netns_ino=netns_inode(f"/run/netns/{other}"))
    try:
        probes.load_tcp()
        run(sys.executable, "-c", TRAFFIC, "echo", ns=ns)
        tcp = probes.tcp()
    finally:
        probes.close()
    assert tcp.transitions == {} and tcp.rtt_samples == 0
