"""Telemetry inside the real daemon (`x0node run` with a [telemetry] section) on a two-node namespace
mesh: XDP is attached natively to the mesh interface, the counts of the neighbour's hellos appear in
/metrics and in the node status, and a clean stop detaches the program."""

from __future__ import annotations

import re
import sys
import time

from x0lab.testbed.bed import DEFAULT_WEB_PORT, Testbed

TELEMETRY_SECTION = "\n[telemetry]\ninterval_s = 0.5\nepsilon = 0\n"
FETCH = r"""
import sys, urllib.request
print(urllib.request.urlopen(f"http://[::1]:{sys.argv[1]}/metrics", timeout=10).read().decode())
"""
WAIT_S = 30.0


def test_daemon_runs_telemetry_on_its_mesh_interfaces(tmp_path):
    bed = Testbed.create(tmp_path / "bed", "line:2", "x0node", web=True)
    try:
        plain = bed.write_x0node_config

        def with_telemetry(node, extra=""):
            return plain(node, extra + TELEMETRY_SECTION)

        bed.write_x0node_config = with_telemetry  # this test's nodes run the telemetry service too
        bed.start_all()
        node = bed.node(1)
        (iface,) = node.ifaces.values()
        link = bed.exec(1, "ip", "-d", "link", "show", iface)
        assert re.search(r"prog/xdp id \d+", link), link  # native mode ("xdpgeneric" would be generic)

        metrics = ""
        deadline = time.monotonic() + WAIT_S
        pattern = re.compile(rf'x0node_xdp_rx_packets_total{{iface="{iface}"}} (\d+)')
        while time.monotonic() < deadline:
            metrics = bed.exec(1, sys.executable, "-c", FETCH, str(DEFAULT_WEB_PORT))
            m = pattern.search(metrics)
            if m and int(m.group(1)) > 0:  # the neighbour's hellos
                break
            time.sleep(0.5)
        assert m and int(m.group(1)) > 0, metrics[-3000:]
        assert "x0node_telemetry_bpf_available 1.0" in metrics
        assert f'x0node_xdp_attached{{iface="{iface}",mode="native"}} 1.0' in metrics
        assert 'x0node_xdp_peer_rx_packets_total{peer="' in metrics

        bed.stop(1)
        assert "prog/xdp" not in bed.exec(1, "ip", "-d", "link", "show", iface)
    finally:
        bed.down()
