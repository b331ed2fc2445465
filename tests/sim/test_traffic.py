"""Control traffic with the default timers: a node with two mesh interfaces (a ring) sends
<= ~1.52 kB/s including 48 bytes of IPv6+UDP headers per datagram, in steady state."""

from tests.sim.mesh import SimMesh, ring
from x0node.proto.protocol import IPV6_UDP_HEADER_BYTES

BUDGET_BYTES_PER_S = 1560


def test_steady_state_traffic_per_node_within_budget():
    mesh = SimMesh(6, seed=41)
    ring(mesh, 6)
    assert mesh.run_until_converged(1.0) is not None
    mesh.run_for(5.0)
    before = [(n.tx_bytes, n.tx_packets) for n in mesh.nodes]
    window_s = 62.0  # covers about two full signed HELLOs (every ~30 s) per interface
    mesh.run_for(window_s)
    rates = []
    for n, (b0, p0) in zip(mesh.nodes, before, strict=True):
        sent = (n.tx_bytes - b0) + (n.tx_packets - p0) * IPV6_UDP_HEADER_BYTES
        rates.append(sent / window_s)
    assert max(rates) <= BUDGET_BYTES_PER_S, rates
    assert min(rates) >= 1450  # keepalives really are sent on both interfaces (10/s each)
    assert mesh.all_pairs_ok()
