"""The pure parts of bench/healing.py: ping parsing, MTTR from ping samples, RCA scoring against the
fault lab's truth, the cycle-time quantile."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "healing.py"
_spec = importlib.util.spec_from_file_location("bench_healing", _PATH)
bh = importlib.util.module_from_spec(_spec)
sys.modules["bench_healing"] = bh
_spec.loader.exec_module(bh)

DT = bh.PING_INTERVAL_S


def _stream(t_start: float, seconds: float, rtt=0.1, lost=lambda t: False, slow=lambda t: False):
    out = []
    n = int(round(seconds / DT))
    for i in range(n):
        t = t_start + i * DT
        out.append(bh.Sample(t, None if lost(t) else (50.0 if slow(t) else rtt)))
    return out


def test_ping_lines_give_one_sample_per_sequence_with_late_replies_answered():
    lines = [
        "PING fd00::1(fd00::1) 1000 data bytes",
        "[100.000000] 1008 bytes from fd00::1: icmp_seq=1 ttl=63 time=0.100 ms",
        "[100.040000] no answer yet for icmp_seq=2",
        "[100.060000] no answer yet for icmp_seq=3",
        "[100.070000] 1008 bytes from fd00::1: icmp_seq=2 ttl=63 time=50.0 ms",
        "[100.080000] From fd00::9 icmp_seq=4 Destination unreachable: No route",
        "garbage",
    ]
    seq, t, rtt = bh.parse_ping_line(lines[1])
    assert (seq, rtt) == (1, 0.1) and t == pytest.approx(100.0 - 0.0001)
    samples = bh.samples_from_lines(lines)
    assert [s.rtt_ms for s in samples] == [0.1, 50.0, None, None]
    assert samples[1].t == pytest.approx(100.02)  # the earlier of the two estimates of its send time


def test_recovery_is_the_end_of_the_outage_and_short_blips_stay_within_the_slo():
    t0 = 1000.0
    limit = bh.rtt_limit_ms(0.1)
    pre = _stream(t0 - 2, 2)
    # 2.5 s outage, then clean for 10 s
    s = pre + _stream(t0, 12.5, lost=lambda t: t < t0 + 2.5)
    assert bh.recovery_s(s, t0, limit) == pytest.approx(2.5, abs=2 * DT)
    assert bh.last_window_ok(s, t0, limit)
    # one lost echo in 150 is under 1 %: never out of the SLO
    s = pre + _stream(t0, 8, lost=lambda t: abs(t - (t0 + 1)) < DT / 2)
    assert bh.recovery_s(s, t0, limit) == 0.0
    # still losing at the end: not recovered
    s = pre + _stream(t0, 10, lost=lambda t: int((t - t0) / DT) % 5 == 0)
    assert bh.recovery_s(s, t0, limit) is None and not bh.last_window_ok(s, t0, limit)
    # slow (queued) then fast again: RTT counts, not only loss
    s = pre + _stream(t0, 10, slow=lambda t: t < t0 + 4)
    assert bh.recovery_s(s, t0, limit) == pytest.approx(4.0 - 0.1 * bh.HOLD_S, abs=2 * DT)  # p90 of the window
    # a flapping path with a good spell shorter than the hold window: recovery after the last bad spell
    s = pre + _stream(t0, 12, lost=lambda t: (t - t0) < 6 and int(t - t0) % 2 == 0)
    assert bh.recovery_s(s, t0, limit) == pytest.approx(5.0, abs=2 * DT)
    assert bh.recovery_s([], t0, limit) is None
    assert bh.recovery_s(_stream(t0, 1.0), t0, limit) is None  # not even one full window observed


def test_baseline_limit_and_aggregation():
    s = _stream(0, 2, rtt=0.2) + _stream(2, 1, rtt=9.0)
    assert bh.baseline_ms(s, 2.0) == pytest.approx(0.2)
    assert bh.rtt_limit_ms(0.2) == pytest.approx(0.2 + bh.RTT_SLACK_MS)
    assert bh.rtt_limit_ms(20.0) == pytest.approx(40.0)
    assert bh.injection_mttr([1.0, 3.0]) == 3.0 and bh.injection_mttr([1.0, None]) is None
    assert bh.injection_mttr([]) is None
    assert bh.p95([1.0] * 19 + [9.0]) == 1.0 and bh.p95([1.0, 2.0, 9.0]) == 9.0  # nearest rank
    assert bh.p95([1.0, None]) is None and bh.p95([]) is None


def test_rca_scored_against_the_injected_truth():
    a, b = "bb", "aa"
    link = "link:aa~bb"
    assert bh.rca_hits([[link, "link_lossy", 0.6], ["node:bb", "node_overload", 0.2]],
                       bh.truth_accepts("lossy", a, b)) == (True, True)
    assert bh.rca_hits([["node:bb", "node_overload", 0.5], [link, "link_congested", 0.3]],
                       bh.truth_accepts("congest", a, b)) == (False, True)
    assert bh.rca_hits([[link, "link_lossy", 0.5]], bh.truth_accepts("congest", a, b)) == (False, False)
    assert bh.rca_hits([], bh.truth_accepts("blackhole", "x", None)) == (False, False)
    far = [["x", "y", 0.1]] * 3 + [["node:x", "node_blackhole", 0.1]]
    assert bh.rca_hits(far, bh.truth_accepts("blackhole", "x", None)) == (False, False)  # 4th is not top-3
    silent = bh.truth_accepts("silent", a, b, "m3")
    assert ("interface:m3", "interface_stuck") in silent and (link, "link_flapping") in silent
    assert ("node:x", "node_down") in bh.truth_accepts("hang", "x", None)
    assert ("node:x", "service_hung") in bh.truth_accepts("hang", "x", None)
    assert bh.truth_accepts("crash", "x", None) == {("node:x", "node_down")}


def test_cycle_quantile_from_prometheus_buckets():
    text = "\n".join([
        '# HELP mape_k_cycle_duration_seconds MAPE-K cycle time by phase',
        'mape_k_cycle_duration_seconds_bucket{le="0.005",phase="cycle"} 50.0',
        'mape_k_cycle_duration_seconds_bucket{le="0.01",phase="cycle"} 90.0',
        'mape_k_cycle_duration_seconds_bucket{le="0.025",phase="cycle"} 100.0',
        'mape_k_cycle_duration_seconds_bucket{le="+Inf",phase="cycle"} 100.0',
        'mape_k_cycle_duration_seconds_bucket{le="0.005",phase="monitor"} 100.0',
    ])
    buckets = bh.parse_cycle_buckets(text)
    assert buckets == {0.005: 50.0, 0.01: 90.0, 0.025: 100.0, float("inf"): 100.0}
    assert bh.histogram_quantile(0.95, list(buckets.items())) == pytest.approx(0.0175)
    assert bh.histogram_quantile(0.5, list(buckets.items())) == pytest.approx(0.005)
    assert bh.histogram_quantile(0.95, []) is None


def test_a_gauge_is_read_from_the_exposition_text():
    text = ("# HELP x0_healing_mitigations_in_force Verified mitigations held now\n"
            "# TYPE x0_healing_mitigations_in_force gauge\nx0_healing_mitigations_in_force 2.0\n"
            'x0_healing_mode{mode="active"} 1.0\n')
    assert bh.parse_gauge(text, "x0_healing_mitigations_in_force") == 2.0
    assert bh.parse_gauge(text, "x0_healing_open_incidents") is None
    assert bh.parse_gauge("", "x0_healing_mitigations_in_force") is None


def test_what_healing_adds_is_the_difference_to_routing_only_per_node():
    # two nodes, 10 s: node 1 used 0.2 s of CPU, node 2 0.4 s; a node whose counter went back (restarted) is left out
    rates = bh._mean_rates({1: (1.0, 50.0), 2: (2.0, 60.0), 3: (5.0, 70.0)},
                           {1: (1.2, 52.0), 2: (2.4, 62.0), 3: (0.1, 40.0)}, 10.0)
    assert rates == pytest.approx((3.0, 57.0))
    assert bh._mean_rates({}, {1: (1.0, 1.0)}, 10.0) is None
    results = {"healing": {"injections": [], "cpu_pct": 3.0, "rss_mb": 57.0, "proc_cpu_pct": 2.5, "proc_rss_mb": 60.0,
                           "source": "cgroup"},
               "routing": {"injections": [], "cpu_pct": 1.5, "rss_mb": 50.0, "proc_cpu_pct": 1.2, "proc_rss_mb": 55.0}}
    out = bh.summarize(results, ["silent"], 12)
    assert (out["cpu_pct"], out["rss_mb"], out["cpu_rss_source"]) == (1.5, 7.0, "cgroup")
    assert out["daemon_cpu_pct"] == {"healing": 3.0, "routing": 1.5}
    assert out["process_rss_mb"] == {"healing": 60.0, "routing": 55.0}
    alone = bh.summarize({"healing": results["healing"]}, ["silent"], 12)
    assert alone["cpu_pct"] is None and alone["daemon_cpu_pct"] == {"healing": 3.0}  # no baseline, no difference
