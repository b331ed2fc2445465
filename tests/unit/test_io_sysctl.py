from __future__ import annotations

from x0node.io import sysctl


def test_sysctl_writer(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "all").mkdir()
    for key in list(sysctl.MESH_IF_SYSCTLS) + ["forwarding"]:
        (tmp_path / "m1" / key).write_text("0\n")
    (tmp_path / "all" / "forwarding").write_text("0\n")
    sysctl.configure_interface("m1", root=tmp_path)
    assert (tmp_path / "all" / "forwarding").read_text() == "1"
    for key, value in sysctl.MESH_IF_SYSCTLS.items():
        assert (tmp_path / "m1" / key).read_text().strip() == value
    assert sysctl.write_sysctl("absent", "forwarding", "1", root=tmp_path) is False
