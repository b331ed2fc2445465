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
    assert raw[IDX["link_changes"]] == 2  # b and d went away
    later = fs.update(Counters(cpu_busy=400, cpu_total=2000, mem_total_kb=1000, mem_avail_kb=250, ip_in=300, ip_delivered=100, ip_forwarded=10, ip_out_local=5, if_tx_packets=15, if_bytes=1_250_000, if_errors=50, capacity_bps=10e6), nbs[:1], 400.0)
    assert later[IDX["link_changes"]] == 0  # outside the window


def test_link_samples_are_averaged_between_updates():
    fs = FeatureState()
    fs.update(Counters(), [], 0.0)
    for loss in (0.0, 0.1, 0.2):
        fs.observe_links([nv("a", "up", 10 * (1 + loss), loss)])
    raw = fs.update(Counters(), [nv("a", "up", 12.0, 0.1)], 30.0)
    assert np.isclose(raw[IDX["loss_max"]], 0.1) and np.isclose(raw[IDX["rtt_ms"]], 11.25)
    fs.observe_links([nv("a", "init", None, 0.0)])
    raw = fs.update(Counters(), [], 60.0)
    assert raw[IDX["loss_max"]] == NEUTRAL_RAW[IDX["loss_max"]] and raw[IDX["link_changes"]] == 2  # up, then down


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
