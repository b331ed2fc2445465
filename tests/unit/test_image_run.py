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
