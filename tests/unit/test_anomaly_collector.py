import pathlib

import numpy as np

from x0node.anomaly.collector import MIN_TRANSIT_PACKETS, Counters, FeatureState, read_counters
from x0node.anomaly.features import FEATURES, NEUTRAL_RAW
from x0node.proto.views import NeighbourView

IDX = {n: i for i, n in enumerate(FEATURES)}


def nv(node_id: str, state: str, rtt_ms: float | None, loss: float) -> NeighbourView:
    """A neighbour as the router's read model shows it."""
    return NeighbourView(node_id, "m0", "fe80::1", state, rtt_ms, loss, None, "good", 100, 0.1, None)


def _fake_tree(root: pathlib.Path, busy: int, idle: int, fwd: int, rx: int, deliver: int, if_bytes: int, err: int):
    proc, sys = root / "proc", root / "sys"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (proc / "meminfo").write_text("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n")
    (proc / "net" / "snmp").write_text(
        "Ip: Forwarding DefaultTTL InReceives InHdrErrors ForwDatagrams InDelivers\n"
        f"Ip: 1 64 {rx} 0 {fwd} {deliver}\nIcmp: InMsgs\nIcmp: 0\n")
    (proc / "net" / "snmp6").write_text("Ip6InReceives 0\nIp6InDelivers 0\nIp6OutForwDatagrams 0\n")
    st = sys / "class" / "net" / "m2" / "statistics"
    st.mkdir(parents=True, exist_ok=True)
    for k in ("rx_bytes", "tx_bytes"):
        (st / k).write_text(f"{if_bytes // 2}\n")
    for k in ("rx_errors", "tx_errors", "rx_dropped", "tx_dropped"):
        (st / k).write_text(f"{err // 4}\n")
    (st / "tx_packets").write_text("3\n")
    (sys / "class" / "net" / "m2" / "speed").write_text("10\n")  # 10 Mbit/s
    return proc, sys


def test_read_counters_parses_the_kernel_files(tmp_path):
    proc, sys = _fake_tree(tmp_path, busy=300, idle=700, fwd=50, rx=200, deliver=100, if_bytes=1000, err=8)
    c = read_counters(["m2", "../etc", "missing0"], proc, sys)
    assert c.cpu_total == 1000 and c.cpu_busy == 300
    assert c.mem_total_kb == 1000 and c.mem_avail_kb == 250
    assert (c.ip_in, c.ip_delivered, c.ip_forwarded) == (200, 100, 50)
    assert c.if_bytes == 1000 and c.if_errors == 8 and c.capacity_bps == 10e6 and c.if_tx_packets == 3


def test_missing_files_give_missing_values_not_errors(tmp_path):
    c = read_counters(["eth9"], tmp_path / "p", tmp_path / "s")
    assert c.cpu_total is None and c.if_bytes is None and c.ip_in is None


def test_feature_state_rates_and_link_features(tmp_path):
    fs = FeatureState()
    nbs = [nv("a", "up", 10.0, 0.01), nv("b", "up", 30.0, 0.2), nv("c", "init", 999.0, 1.0), nv("d", "up", None, 0.0)]
    first = fs.update(Counters(cpu_busy=100, cpu_total=1000, mem_total_kb=1000, mem_avail_kb=250, ip_in=100, ip_delivered=50, ip_forwarded=0, ip_out_local=0, if_tx_packets=0, if_bytes=0, if_errors=0, capacity_bps=10e6), nbs, 0.0)
    assert first[IDX["cpu_util"]] == NEUTRAL_RAW[IDX["cpu_util"]]  # no rate before two samples
    assert first[IDX["mem_util"]] == 0.75 and first[IDX["rtt_ms"]] == 20.0 and first[IDX["loss_max"]] == 0.2
    raw = fs.update(Counters(cpu_busy=400, cpu_total=2000, mem_total_kb=1000, mem_avail_kb=250, ip_in=300, ip_delivered=100, ip_forwarded=10, ip_out_local=5, if_tx_packets=15, if_bytes=1_250_000, if_errors=50, capacity_bps=10e6), nbs[:1], 10.0)
    assert np.isclose(raw[IDX["cpu_util"]], 0.3)
    assert np.isclose(raw[IDX["load"]], 1_250_000 * 8 / 10 / 10e6)
    assert np.isclose(raw[IDX["if_errors_per_s"]], 5.0)
    assert np.isclose(raw[IDX["fwd_ratio"]], 10 / 150)  # 200 received, 50 delivered, 10 forwarded
    assert raw[IDX["link_changes"]] == 0  # b and d just went away: not held yet
    held = fs.update(Counters(), nbs[:1], 13.0)
    assert held[IDX["link_changes"]] == 2  # still gone LINK_HOLD_S later: two losses
    later = fs.update(Counters(cpu_busy=400, cpu_total=2000, mem_total_kb=1000, mem_avail_kb=250, ip_in=300, ip_delivered=100, ip_forwarded=10, ip_out_local=5, if_tx_packets=15, if_bytes=1_250_000, if_errors=50, capacity_bps=10e6), nbs[:1], 400.0)
    assert later[IDX["link_changes"]] == 0  # outside the window


def test_link_samples_are_averaged_between_updates():
    fs = FeatureState()
    fs.update(Counters(), [], 0.0)
    for loss in (0.0, 0.1, 0.2):
        fs.observe_links([nv("a", "up", 10 * (1 + loss), loss)])
    raw = fs.update(Counters(), [nv("a", "up", 12.0, 0.1)], 30.0)
    assert np.isclose(raw[IDX["loss_max"]], 0.1) and np.isclose(raw[IDX["rtt_ms"]], 11.25)
    fs.observe_links([nv("a", "init", None, 0.0)], 58.0)  # a sample between ticks sees a drop out
    raw = fs.update(Counters(), [], 60.0)
    assert raw[IDX["loss_max"]] == NEUTRAL_RAW[IDX["loss_max"]] and raw[IDX["link_changes"]] == 0  # lost 2 s ago
    fs.observe_links([], 60.5)
    assert fs.update(Counters(), [], 61.0)[IDX["link_changes"]] == 1  # held since 58 s: one loss


def test_blackhole_shows_as_low_forward_ratio_even_when_the_kernel_counts_it_forwarded():
    fs = FeatureState()
    fs.update(Counters(ip_in=0, ip_delivered=0, ip_forwarded=0, ip_out_local=0, if_tx_packets=0), [], 0.0)
    # 1000 transit packets hit the FORWARD hook (counted) but only our own 50 packets left
    raw = fs.update(Counters(ip_in=1100, ip_delivered=100, ip_forwarded=1000, ip_out_local=50, if_tx_packets=50),
                    [], 5.0)
    assert raw[IDX["fwd_ratio"]] == 0.0


def test_counter_reset_and_idle_transit_are_neutral():
    fs = FeatureState()
    fs.update(Counters(cpu_busy=500, cpu_total=1000, ip_in=100, ip_delivered=50, ip_forwarded=40, if_bytes=100, if_errors=10), [], 0.0)
    raw = fs.update(Counters(cpu_busy=10, cpu_total=100, ip_in=100 + MIN_TRANSIT_PACKETS - 1, ip_delivered=50, ip_forwarded=40, if_bytes=50, if_errors=10), [], 5.0)
    assert raw[IDX["cpu_util"]] == NEUTRAL_RAW[IDX["cpu_util"]]
    assert raw[IDX["load"]] == NEUTRAL_RAW[IDX["load"]]
    assert raw[IDX["fwd_ratio"]] == 1.0


def test_xdp_drops_from_the_telemetry_snapshot_count_as_interface_errors():
    from x0node.anomaly.collector import xdp_dropped_total

    snap = {"bpf": True, "interfaces": {"m1": {"dropped": 40}, "m2": {"dropped": 10}, "eth0": {"dropped": 999}}}
    assert xdp_dropped_total(snap, ["m1", "m2", "m3"]) == 50
    assert xdp_dropped_total({"bpf": False, "interfaces": {}}, ["m1"]) is None
    assert xdp_dropped_total(None, ["m1"]) is None
    assert xdp_dropped_total({"bpf": True, "interfaces": {"m1": {"dropped": -1}}}, ["m1"]) == 0
    fs = FeatureState()
    fs.update(Counters(if_errors=0, xdp_dropped=0), [], 0.0)
    raw = fs.update(Counters(if_errors=10, xdp_dropped=40), [], 10.0)
    assert raw[IDX["if_errors_per_s"]] == 5.0


def _links(fs: FeatureState, t: float, up: list[str]) -> float:
    return float(fs.update(Counters(), [nv(n, "up", 5.0, 0.0) for n in up], t)[IDX["link_changes"]])


def test_loss_is_this_intervals_missed_control_packets_not_the_ewma():
    import dataclasses

    fs = FeatureState()

    def ctl(node_id, rx, miss, ewma=0.01):
        return dataclasses.replace(nv(node_id, "up", 5.0, ewma), ctl_received=rx, ctl_missed=miss)

    first = fs.update(Counters(), [ctl("a", 1000, 10), ctl("b", 500, 0)], 0.0)
    assert first[IDX["loss_max"]] == 0.01  # no earlier counts: the EWMA, as before
    raw = fs.update(Counters(), [ctl("a", 1021, 19), ctl("b", 530, 0)], 3.0)
    assert np.isclose(raw[IDX["loss_max"]], 9 / 30)  # a: 9 of 30 expected numbers missed in these 3 s
    raw = fs.update(Counters(), [ctl("a", 1051, 19), ctl("b", 5, 0, ewma=0.5)], 6.0)
    assert raw[IDX["loss_max"]] == 0.5  # a clean now; b's counts went back (a new entry): its EWMA
    raw = fs.update(Counters(), [ctl("a", 1055, 20, ewma=0.2), ctl("b", 8, 0, ewma=0.0)], 6.5)
    assert raw[IDX["loss_max"]] == 0.2  # a: too few packets for a rate (5 < MIN_CONTROL_PACKETS), its EWMA


def test_a_tick_in_which_this_node_stalled_measures_no_loss():
    import dataclasses

    from x0node.anomaly.collector import OWN_STALL_S

    fs = FeatureState()

    def ctl(rx, miss):
        return dataclasses.replace(nv("a", "up", 5.0, 0.3), ctl_received=rx, ctl_missed=miss)

    fs.update(Counters(), [ctl(1000, 0)], 0.0)
    raw = fs.update(Counters(), [ctl(1020, 10)], 3.0, stall_s=OWN_STALL_S)  # our own stall: queued packets dropped
    assert raw[IDX["loss_max"]] == 0.0 and fs.stalled_ticks == 1  # not the EWMA either
    raw = fs.update(Counters(), [ctl(1050, 10)], 6.0, stall_s=OWN_STALL_S - 0.01)
    assert raw[IDX["loss_max"]] == 0.0  # the stall's gaps stay in the stalled tick: this one is clean
    raw = fs.update(Counters(), [ctl(1070, 20)], 9.0, stall_s=0.5)
    assert np.isclose(raw[IDX["loss_max"]], 10 / 30) and fs.stalled_ticks == 1  # a short lag: loss counts
    raw = fs.update(Counters(), [ctl(1090, 30)], 12.0, stall_s=float("nan"))
    assert np.isclose(raw[IDX["loss_max"]], 10 / 30)  # no evidence of a stall


def test_the_hold_runs_from_the_routers_down_time():
    from x0node.proto.views import LostNeighbourView

    fs = FeatureState()
    _links(fs, 0.0, ["a", "b"])
    gone = [LostNeighbourView("b", "m0", 2.8, "dead")]  # declared gone 2.8 s before this sample
    raw = fs.update(Counters(), [nv("a", "up", 5.0, 0.0)], 3.0, gone)
    assert raw[IDX["link_changes"]] == 1 and fs.links_down(3.0) == 1  # held since 0.2 s: counted at once
    late = FeatureState()  # a down time older than the previous sample (which saw it UP) is not believed
    _links(late, 0.0, ["a", "b"])
    _links(late, 1.0, ["a", "b"])
    raw = late.update(Counters(), [nv("a", "up", 5.0, 0.0)], 3.0, [LostNeighbourView("b", "m0", 9.0, "dead")])
    assert raw[IDX["link_changes"]] == 0  # held since 1.0 s only: 2 s < LINK_HOLD_S
    bounce = FeatureState()  # back before the hold ran out: never counted
    _links(bounce, 0.0, ["a", "b"])
    bounce.update(Counters(), [nv("a", "up", 5.0, 0.0)], 3.0, [LostNeighbourView("b", "m0", 1.0, "dead")])
    assert _links(bounce, 3.5, ["a", "b"]) == 0


def test_a_bounce_shorter_than_the_hold_never_counts():
    fs = FeatureState()
    _links(fs, 0.0, ["a", "b", "c"])
    assert _links(fs, 3.0, ["a", "b"]) == 0  # c lost
    assert _links(fs, 4.0, ["a", "b", "c"]) == 0  # back after 1 s: a bounce (a daemon's stall)
    assert _links(fs, 30.0, ["a", "b", "c"]) == 0


def test_a_held_loss_of_one_link_counts_once_and_ages_out():
    from x0node.anomaly.collector import LINK_CHANGES_WINDOW_S, LINK_HOLD_S

    fs = FeatureState()
    _links(fs, 0.0, ["a", "b"])
    assert _links(fs, 3.0, ["a"]) == 0
    assert _links(fs, 3.0 + LINK_HOLD_S, ["a"]) == 1
    assert _links(fs, 20.0, ["a"]) == 1  # counted once, not per tick
    assert _links(fs, 25.0, ["a", "b"]) == 1  # coming back adds nothing
    assert _links(fs, 3.0 + LINK_HOLD_S + LINK_CHANGES_WINDOW_S + 1, ["a", "b"]) == 0
    solo = FeatureState()  # a node with one neighbour: losing it is one link, not a stall
    _links(solo, 0.0, ["a"])
    _links(solo, 3.0, [])
    assert _links(solo, 6.0, []) == 1


def test_losing_every_neighbour_at_once_is_a_stall_not_a_link_fault():
    fs = FeatureState()
    _links(fs, 0.0, ["a", "b", "c"])
    assert _links(fs, 3.0, []) == 0
    assert _links(fs, 9.0, []) == 0 and fs.stalls == 1  # held, but a node-wide loss counts nothing
    assert _links(fs, 12.0, ["a", "b", "c"]) == 0
    assert _links(fs, 15.0, ["a", "b"]) == 0 and _links(fs, 18.0, ["a", "b"]) == 1  # then one link: counts


def test_links_down_counts_held_losses_still_down_and_forgets_those_back():
    fs = FeatureState()
    _links(fs, 0.0, ["a", "b", "c"])
    _links(fs, 3.0, ["a", "b"])  # c lost, not held yet
    assert fs.links_down(3.0) == 0
    _links(fs, 6.0, ["a", "b"])  # held: counted, and still down
    assert fs.links_down(6.0) == 1 and fs.link_changes(6.0) == 1
    _links(fs, 9.0, ["a", "b", "c"])  # back: no longer down, still remembered by link_changes
    assert fs.links_down(9.0) == 0 and fs.link_changes(9.0) == 1
    _links(fs, 12.0, ["a"])
    _links(fs, 15.0, ["a"])
    assert fs.links_down(15.0) == 2  # b and c down now
    assert fs.links_down(15.0 + 301.0) == 0  # older than the window: forgotten
    _links(fs, 400.0, ["a", "b", "c"])
    _links(fs, 403.0, [])  # every neighbour lost at once: this node's stall, nothing down
    _links(fs, 406.0, [])
    assert fs.links_down(406.0) == 0 and fs.stalls == 1


def test_replayed_up_sets_give_the_runtime_feature():
    fs, rp = FeatureState(), FeatureState()
    seq = [(0.0, ["a", "b"]), (3.0, ["a"]), (6.0, ["a"]), (9.0, ["a", "b"]), (12.0, []), (15.0, []), (18.0, ["a"])]
    for t, up in seq:
        live = _links(fs, t, up)
        rp.observe_up(up, t)
        assert rp.link_changes(t) == live and rp.links_down(t) == fs.links_down(t)


def _fake_cgroups(root: pathlib.Path, usage_ns: int, quota: int, used: int, inactive: int, limit: int):
    cpuacct = root / "cpuacct" / "tb" / "n1"
    cpu = root / "cpu" / "tb" / "n1"
    mem = root / "memory" / "tb" / "n1"
    for d in (cpuacct, cpu, mem, root / "cpu" / "tb"):
        d.mkdir(parents=True, exist_ok=True)
    (cpuacct / "cpuacct.usage").write_text(f"{usage_ns}\n")
    (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu" / "tb" / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu" / "tb" / "cpu.cfs_period_us").write_text("100000\n")
    (mem / "memory.usage_in_bytes").write_text(f"{used}\n")
    (mem / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {inactive}\nhierarchical_memory_limit {limit}\n")


def test_node_cgroups_resolve_own_and_parent_groups_and_refuse_escapes(tmp_path):
    from x0node.anomaly.collector import node_cgroups

    text = "5:cpuacct:/tb/n1/daemon\n4:memory:/tb/n1/daemon\n1:cpu:/tb/n1/daemon\n0::/\n"
    cg = node_cgroups("parent", text, tmp_path)
    assert cg.cpuacct == tmp_path / "cpuacct" / "tb" / "n1" and cg.memory == tmp_path / "memory" / "tb" / "n1"
    assert node_cgroups("own", text, tmp_path).cpu == tmp_path / "cpu" / "tb" / "n1" / "daemon"
    assert node_cgroups("", text, tmp_path) is None
    assert node_cgroups("parent", "4:memory:/\n", tmp_path) is None  # the root has no parent
    assert node_cgroups("own", "4:memory:/a/../../etc\n", tmp_path) is None
    comounted = node_cgroups("own", "2:cpu,cpuacct:/x\n", tmp_path)
    assert comounted.cpu == comounted.cpuacct == tmp_path / "cpu,cpuacct" / "x"


def test_cgroup_cpu_and_memory_are_the_nodes_own(tmp_path):
    from x0node.anomaly.collector import node_cgroups

    text = "5:cpuacct:/tb/n1/daemon\n4:memory:/tb/n1/daemon\n1:cpu:/tb/n1/daemon\n"
    cg = node_cgroups("parent", text, tmp_path)
    proc, sys = _fake_tree(tmp_path, busy=300, idle=700, fwd=0, rx=0, deliver=0, if_bytes=0, err=0)
    _fake_cgroups(tmp_path, usage_ns=0, quota=20000, used=600, inactive=100, limit=1 << 60)
    c0 = read_counters([], proc, sys, cgroup=cg, online_cpus=2)
    assert c0.cg_cores == 0.2 and c0.cg_mem_used == 500 and c0.cg_mem_limit == 1000 * 1024  # capped by MemTotal
    _fake_cgroups(tmp_path, usage_ns=int(0.2e9 * 10 * 0.5), quota=-1, used=600, inactive=100, limit=1000)
    c1 = read_counters([], proc, sys, cgroup=cg, online_cpus=2)
    assert c1.cg_cores == 2.0 and c1.cg_mem_limit == 1000
    fs = FeatureState()
    fs.update(c0, [], 0.0)
    raw = fs.update(c1, [], 10.0)
    assert np.isclose(raw[IDX["cpu_util"]], 1e9 / 10 / 1e9 / 2.0)  # 1 s of CPU in 10 s over 2 cores
    assert np.isclose(raw[IDX["mem_util"]], 0.5)  # not the host's 0.75
    missing = read_counters([], proc, sys, cgroup=node_cgroups("own", "1:cpuacct:/gone\n", tmp_path))
    assert missing.cg_cpu_ns is None  # an unreadable group is a missing value, never an error
