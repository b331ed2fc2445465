"""The node-CPU adapter's pure parts: /proc/self/cgroup and mountinfo parsing, cpu.stat, the throttled
share between two readings, and the sources' fallbacks on a fake hierarchy in a temporary directory."""

from __future__ import annotations

import pathlib

from x0node.healing.cpu_io import NodeCpu, controllers_and_path, find_mount, parse_cpu_stat, throttled_share

PROC_CGROUP = "9:name=systemd:/\n2:cpuacct:/\n1:cpu:/x0tb-1/n3/daemon\n0::/\n"
MOUNTINFO = ("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
             "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
             "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n")


def test_our_group_and_its_hierarchy_are_found():
    assert controllers_and_path(PROC_CGROUP) == ("cpu", "/x0tb-1/n3/daemon")
    assert controllers_and_path("1:cpu,cpuacct:/a\n") == ("cpu,cpuacct", "/a")
    assert controllers_and_path("0::/\n") is None
    assert find_mount(MOUNTINFO, "cpu") == (pathlib.Path("/sys/fs/cgroup/cpu"), "/")
    assert find_mount(MOUNTINFO, "memory") is None
    assert find_mount("garbage\n\n1 2 3\n", "cpu") is None


def test_cpu_stat_and_the_throttled_share():
    assert parse_cpu_stat("nr_periods 120\nnr_throttled 30\nthrottled_time 999\n") == (120, 30)
    assert parse_cpu_stat("nr_periods x\n") is None
    assert throttled_share((100, 10), (150, 60)) == 1.0  # throttled in every period of the interval
    assert throttled_share((100, 10), (200, 35)) == 0.25
    assert throttled_share((100, 10), (100, 10)) == 0.0  # nothing runnable: nothing starved
    assert throttled_share((100, 10), (50, 5)) is None  # reset: a new group
    assert throttled_share(None, (1, 1)) is None


def _hierarchy(tmp_path: pathlib.Path, quota: int) -> NodeCpu:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    root = tmp_path / "cg"
    (proc / "self" / "cgroup").write_text(PROC_CGROUP)
    (proc / "self" / "mountinfo").write_text(MOUNTINFO.replace("/sys/fs/cgroup/cpu ", f"{root}/cpu "))
    for g, q in (("x0tb-1", -1), ("x0tb-1/n3", quota), ("x0tb-1/n3/daemon", -1)):
        d = root / "cpu" / g
        d.mkdir(parents=True)
        (d / "cpu.cfs_quota_us").write_text(f"{q}\n")
        (d / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\n")
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    return root


def test_the_limited_group_above_the_daemon_is_read(tmp_path):
    root = _hierarchy(tmp_path, 20000)
    node = root / "cpu" / "x0tb-1" / "n3"
    cpu = NodeCpu("cgroup", proc=tmp_path / "proc", may_mount=False)
    assert cpu.limited_group() == node
    assert cpu.read() == 0.0  # first reading: no interval yet
    (node / "cpu.stat").write_text("nr_periods 10\nnr_throttled 9\n")
    assert cpu.read() == 0.9
    (node / "cpu.stat").write_text("nr_periods 20\nnr_throttled 9\n")
    assert cpu.read() == 0.0


def test_without_a_limit_cgroup_reads_zero_and_auto_keeps_the_host(tmp_path):
    _hierarchy(tmp_path, -1)
    assert NodeCpu("cgroup", proc=tmp_path / "proc", may_mount=False).read() == 0.0
    assert NodeCpu("auto", proc=tmp_path / "proc", may_mount=False).read() is None
    assert NodeCpu("host", proc=tmp_path / "proc", may_mount=False).read() is None


def test_bad_files_never_raise(tmp_path):
    root = _hierarchy(tmp_path, 20000)
    (root / "cpu" / "x0tb-1" / "n3" / "cpu.stat").write_text("\x00\xff nonsense")
    cpu = NodeCpu("auto", proc=tmp_path / "proc", may_mount=False)
    assert cpu.read() is None and cpu.errors == 1
    (tmp_path / "proc" / "self" / "cgroup").write_text("")
    assert NodeCpu("cgroup", proc=tmp_path / "proc", may_mount=False).read() == 0.0
