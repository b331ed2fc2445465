"""`make run`'s plan (image/run.py): the fault commands it prints are valid for the mesh it builds, for
every size it accepts, and the VM's two neighbours are placed so that a fault on the ring moves routes
from one to the other."""

from __future__ import annotations

import shlex

import pytest

from image import run
from x0lab.testbed import faults
from x0lab.testbed.topology import parse


@pytest.mark.parametrize("nodes", range(run.MIN_NODES, run.MAX_NODES + 1))
def test_printed_faults_are_valid_for_the_ring(nodes: int) -> None:
    ring = parse(f"ring:{nodes}")
    a, b = run.attach_points(nodes)
    assert a != b and {a, b} <= set(range(1, nodes + 1))
    if nodes >= 4:
        assert not ring.has_link(a, b)  # two separate ways into the ring
    examples = run.fault_examples(nodes)
    assert len(examples) >= 2
    for words, what in examples:
        assert what
        argv = shlex.split(words)
        assert argv[0] == "fault"
        kind = faults.KINDS[argv[1]]
        n_nodes = 2 if kind.target == "link" else 1
        targets = [int(x) for x in argv[2:2 + n_nodes]]
        assert all(1 <= t <= nodes for t in targets)
        if kind.target == "link":
            assert ring.has_link(*targets), (words, ring.links)
        values = argv[2 + n_nodes:]
        faults.validate(kind.name, {p.name: v for p, v in zip(kind.params, values, strict=False)})


def test_link_fault_cuts_the_vm_side_of_the_route() -> None:
    # link-down b-far: far is b's ring neighbour and not attached, so its route must move to a
    words = run.fault_examples(5)[0][0].split()
    a, b = run.attach_points(5)
    assert words[:2] == ["fault", "link-down"] and int(words[2]) == b and int(words[3]) not in (a, b)


def test_cli_command_names_the_run_dir(tmp_path) -> None:
    cmd = shlex.split(run.x0node_command(tmp_path / "my mesh"))
    assert cmd[1:] == ["testbed", "--run-dir", str(tmp_path / "my mesh")]
    assert cmd[0].endswith("x0node")


def test_lab_unit_setting_is_a_valid_local_override() -> None:
    # what lab_unit writes to /data/x0node/config.local.toml passes the daemon's own validation and sets
    # the dead interval the neighbours of `make run` get too
    import tomllib

    from image import qemu
    from x0node.daemon.config import LOCAL_CONFIG_NAME, merge, validate

    local = tomllib.loads(qemu.LAB_LOCAL_CONFIG)
    sections = validate(merge({"node": {"interfaces": ["eth1"]}}, local))
    assert sections["routing"]["hello_missed_dead"] == qemu.LAB_HELLO_MISSED_DEAD == run.LAB_HELLO_MISSED_DEAD
    assert sections["node"]["watchdog_s"] == qemu.LAB_WATCHDOG_S
    assert qemu.LAB_LOCAL_CONFIG_FILE == f"x0node/{LOCAL_CONFIG_NAME}"


def test_virtio_mesh_ports_report_a_link_speed(tmp_path) -> None:
    # the VM's mesh NICs (TAP and UDP links) carry a link speed, so the guest's x0node takes their
    # rate from the kernel instead of timing the emulated CPU with probe trains; the LAN port does not
    from image.board import load_board
    from image.qemu import MESH_NIC_SPEED_MBPS, VM, MeshLink, TapLink

    vm = VM(board=load_board("x86_64"), disk=tmp_path / "d.img", vmdir=tmp_path, web_port=1, http_port=2,
            udp_port=3, tap_links=[TapLink(7, "52:54:00:00:00:01")],
            mesh_links=[MeshLink(4000, 4001, "52:54:00:00:00:02")])
    devices = [a for a in vm.command() if a.startswith("virtio-net-pci,")]
    mesh = [d for d in devices if "netdev=up" not in d]
    assert len(mesh) == 2 and all(f"speed={MESH_NIC_SPEED_MBPS},duplex=full" in d for d in mesh), devices
    assert all("speed=" not in d for d in devices if "netdev=up" in d)
