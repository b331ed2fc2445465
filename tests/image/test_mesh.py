"""Two x86_64 VMs joined by a point-to-point Ethernet link (`MeshLink.pair`: a UDP tunnel over 127.0.0.1)
form a mesh: both are provisioned with certificates from the same trust anchor, come up with their second
Ethernet port (eth1) as a mesh interface (eth0 is the LAN port), and ping each other's mesh address
through the firewall. The web UI is not reachable from the mesh: a connection from one node to the
other's mesh address on the UI's port is dropped and counted (regression for the exposure finding)."""

from __future__ import annotations

import errno
import re

import pytest

from image.qemu import MeshLink
from tests.image.conftest import BOOT_TIMEOUT_S, daemon_present, nft_packets

BOARD = "x86_64"
PROMPT = re.compile(r"root@x0[^\n]*# ")
CONVERGE_S = 90
# Two emulated (TCG) guests on a shared, loaded host see each other's 0.1 s keepalives seconds late, and
# the default 0.25 s dead interval flaps the adjacency every second; a real link does not. The test is
# about forming a mesh through the image's firewall, so the guests get a 2 s dead interval.
EMULATION_CONFIG = {"x0node/config.local.toml": b"[routing]\nhello_missed_dead = 20\n"}


# The loop below takes up to 2 s a round (1 s timeout + 1 s pause) and the counted ping up to 6 s.
PING_WAIT_S = 2 * CONVERGE_S + 60


def _ping_cmd(addr: str) -> str:
    # Wait (bounded) for the route to appear, then a short counted ping.
    return (f"for i in $(seq 1 {CONVERGE_S}); do ping -6 -c 1 -W 1 {addr} >/dev/null 2>&1 && break; sleep 1; done; "
            f"ping -6 -c 3 -W 2 {addr}")


def test_two_vms_form_a_mesh(vms) -> None:
    if not daemon_present():
        pytest.skip("the daemon (`x0node run`) is not in this tree")
    link1, link2 = MeshLink.pair("52:54:00:00:64:01", "52:54:00:00:64:02")
    vm1, id1 = vms.make(BOARD, "mesh1", extra=EMULATION_CONFIG, mesh_links=[link1])
    vm2, id2 = vms.make(BOARD, "mesh2", extra=EMULATION_CONFIG, mesh_links=[link2])
    vm1.start()
    vm2.start()
    for vm, ident in ((vm1, id1), (vm2, id2)):
        node_id, mesh_addr, _ = vm.wait_ready(BOOT_TIMEOUT_S[BOARD] * 2)
        assert (node_id, mesh_addr) == (ident.node_id, ident.mesh_addr)
        vm.wait_for(PROMPT, 120)
    for vm, peer in ((vm1, id2), (vm2, id1)):
        rc, out = vm.shell(_ping_cmd(peer.mesh_addr), timeout_s=PING_WAIT_S)
        if rc != 0 or " 0% packet loss" not in out:
            _, state = vm.shell("ip -6 route; ip -br link; journalctl -u x0node -n 40 --no-pager", timeout_s=60)
            pytest.fail(f"{vm.vmdir.name} cannot reach {peer.mesh_addr}:\n{out}\n{state}")
    # (grep on the device: a long file read back over a loaded serial console can come back garbled)
    rc, out = vm1.shell("grep -q 'iifname \"eth1\" goto mesh' /run/x0node/firewall.nft && "
                        "grep -q 'iifname \"eth0\" goto lan' /run/x0node/firewall.nft && echo ROLES-OK")
    assert rc == 0 and "ROLES-OK" in out, out

    # the UI over the mesh: the listener is there (dual-stack on ::, port 443) but the firewall drops it
    rc, out = vm1.shell("nft -j list counter inet x0tta6bl4 drop_mesh")
    before = nft_packets(out)
    rc, out = vm2.shell(_connect_cmd(id1.mesh_addr, 443), timeout_s=60)
    # timed out: dropped, not refused (111); matched as a whole line, as a daemon log line may share the output
    assert re.search(rf"^{errno.EAGAIN}$", out, re.M), out
    rc, out = vm1.shell("nft -j list counter inet x0tta6bl4 drop_mesh")
    assert nft_packets(out) > before, out
    rc, out = vm1.shell("ss -Htln 'sport = :443'")
    assert rc == 0 and ":443" in out, out  # the UI does listen; only the firewall keeps the mesh out


def _connect_cmd(addr: str, port: int) -> str:
    """Prints connect()'s errno: 0 connected, 111 refused, 11 (EAGAIN) no answer within 5 s."""
    return ("python3 -I -c 'import socket,sys; s=socket.socket(socket.AF_INET6); s.settimeout(5); "
            f"print(s.connect_ex((sys.argv[1], int(sys.argv[2]))))' {addr} {port}")

