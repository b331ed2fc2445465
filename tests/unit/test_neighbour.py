from x0node.proto.neighbour import CHANGE_CLASS, CHANGE_COST, CHANGE_NONE, Neighbour, NeighbourState, ms
from x0node.proto.quality import Quality


def _n(now=0.0):
    return Neighbour("m0", b"\x01" * 16, b"\x02" * 32, "fe80::1", 1, b"k" * 32, 0.1, now)


def test_dead_deadlines():
    n = _n()
    n.last_hello_s = 0.0
    n.heard(1.0, 5)
    assert n.dead_at(2, 100.0) == 100.0  # INIT: hold from last HELLO
    n.state = NeighbourState.UP
    assert abs(n.dead_at(2, 100.0) - 1.25) < 1e-9


def test_rtt_from_echo_and_holding_delay():
    n = _n()
    sent = ms(10.0)
    n.rtt_sample(10.030, sent, 10)  # 30 ms later, held 10 ms -> 20 ms
    assert abs(n.rtt_ms - 20.0) < 1.01
    n.rtt_sample(10.5, 0, 0)  # no echo: ignored
    assert abs(n.rtt_ms - 20.0) < 1.01
    n.rtt_sample(10.5, (sent - 20_000_000) % (1 << 32), 0)  # absurd sample dropped
    assert abs(n.rtt_ms - 20.0) < 1.01


def _keepalive(n: Neighbour, low16: int) -> int:
    seq = n.full_seq(low16)
    assert n.ka_window.accept(seq)
    n.control_seen(seq)
    return seq


def test_loss_estimate_counts_gaps_across_the_16_bit_wrap():
    n = _n()
    n.control_seen(64999)  # the HELLO's full number
    for i in range(2000):
        if i % 4:
            assert _keepalive(n, (65000 + i) % 65536) == 65000 + i  # extended past the 16-bit wrap
    assert abs(n.loss() - 0.25) < 0.07
    for i in range(2000, 3500):  # then a clean link: the estimate decays
        _keepalive(n, (65000 + i) % 65536)
    assert n.loss() < 0.001


def test_sequence_extension_and_clock_check():
    n = _n()
    n.control_seen((3 << 16) + 65530)
    assert n.full_seq(5) == (4 << 16) + 5  # just past the wrap: the next era
    assert n.full_seq(65000) == (3 << 16) + 65000  # a little behind: this era
    assert n.full_seq(65530 - 40000 & 0xFFFF) == (4 << 16) + (65530 - 40000)  # 40000 behind looks ahead
    n.heard(100.0, 50_000)
    assert n.clock_ok(51_000, 101.0) and n.clock_ok(50_000 + 8_000, 101.0)  # within 10 s of our clock
    assert not n.clock_ok(50_000 - 600_000, 101.0)  # ten minutes in the past
    assert not n.clock_ok(50_000 + 60_000, 101.0)  # a minute ahead
    n.heard(200.0, (1 << 32) - 500)
    assert n.clock_ok(500, 201.0)  # one second later, across the millisecond counter's wrap


def test_class_upgrade_needs_margin():
    n = _n()
    n.rtt_ms = 60.0
    n.refresh_advertised(0.0, force=True)
    assert n.adv_quality is Quality.FAIR
    n.rtt_ms = 45.0  # GOOD by the threshold (50 ms) but not with the margin (needs < 40 ms)
    n.refresh_advertised(10.0)
    assert n.adv_quality is Quality.FAIR
    n.rtt_ms = 35.0
    assert n.refresh_advertised(20.0) != CHANGE_NONE and n.adv_quality is Quality.GOOD
    n.rtt_ms = 55.0  # worse than GOOD's 50 ms, but 55 x 0.8 = 44 still qualifies: stays
    n.refresh_advertised(30.0)
    assert n.adv_quality is Quality.GOOD
    n.rtt_ms = 70.0  # 70 x 0.8 = 56 fails GOOD: downgrade
    assert n.refresh_advertised(40.0) != CHANGE_NONE and n.adv_quality is Quality.FAIR


def test_cost_hysteresis():
    n = _n()
    n.refresh_advertised(0.0, force=True)
    c0 = n.adv_cost
    n.rtt_ms = 1.0  # +10 units = +10 %: below hysteresis
    assert n.refresh_advertised(5.0) == CHANGE_NONE
    assert n.adv_cost == c0
    n.rtt_ms = 5.0  # +50 %: re-advertise
    assert n.refresh_advertised(6.0) == CHANGE_COST
    assert n.adv_cost > c0
    n.rtt_ms = 70.0
    assert n.refresh_advertised(6.5) == CHANGE_NONE  # rate limited
    assert n.refresh_advertised(7.1) == CHANGE_COST
    assert n.adv_quality is Quality.FAIR


def test_class_only_change_is_reported_as_such():
    n = _n()
    n.refresh_advertised(0.0, force=True)
    assert n.adv_quality is Quality.EXCELLENT
    n.loss_ewma = 0.0011  # just over EXCELLENT's 0.1 %, but inside the band (x 0.8 = 0.088 %)
    assert n.refresh_advertised(2.0) == CHANGE_NONE
    n.loss_ewma = 0.002  # x 0.8 = 0.16 % fails EXCELLENT; cost moves < 1 %: class-only change
    assert n.refresh_advertised(3.0) == CHANGE_CLASS and n.adv_quality is Quality.GOOD


def test_echo_and_session_reset():
    n = _n()
    n.heard(2.0, 1234)
    assert n.echo(2.05) == (1234, 50)
    n.ka_window.accept(3)
    n.reset_session(7, b"j" * 32)
    assert n.echo(3.0) == (0, 0) and n.epoch == 7 and n.ka_window.highest is None


def _feed_rtt(n, start_s, samples_ms, interval_s=0.1):
    """One echo per keepalive interval, each answered after `sample` ms of round trip."""
    t = start_s
    for sample in samples_ms:
        t += interval_s
        n.rtt_sample(t, (ms(t) - round(sample)) % (1 << 32), 0)
    return t


def test_scheduling_spikes_do_not_move_the_cost():
    """Samples inflated by a busy host (every few samples a long wait to be scheduled) leave the base
    RTT, and so the class and cost, where the quiet samples put them."""
    n = _n()
    t = _feed_rtt(n, 0.0, [1.0] * 10)
    n.refresh_advertised(t, force=True)
    c0, q0 = n.adv_cost, n.adv_quality
    spiky = [1.0 if i % 4 == 0 else 40.0 + i for i in range(200)]
    for chunk in range(0, 200, 10):
        t = _feed_rtt(n, t, spiky[chunk:chunk + 10])
        assert n.refresh_advertised(t) == CHANGE_NONE
    assert (n.adv_cost, n.adv_quality) == (c0, q0)
    assert n.rtt_ms > 20.0  # the displayed RTT still shows what the samples said


def test_a_lasting_delay_raises_the_cost_within_a_window():
    n = _n()
    t = _feed_rtt(n, 0.0, [1.0] * 10)
    n.refresh_advertised(t, force=True)
    c0 = n.adv_cost
    t = _feed_rtt(n, t + 1.0, [30.0] * 29)  # not yet a whole window of slow samples
    assert n.refresh_advertised(t) == CHANGE_NONE
    t = _feed_rtt(n, t, [30.0] * 2)
    assert n.refresh_advertised(t) == CHANGE_COST
    assert n.adv_cost >= c0 + 250 and n.adv_quality is Quality.GOOD


def test_rtt_samples_counted_in_the_histogram():
    from x0node.proto.neighbour import RTT_HISTOGRAM_BOUNDS_MS

    n = _n()
    for t, rtt_ms in ((10.0, 0), (11.0, 3), (12.0, 3), (13.0, 7000)):
        n.rtt_sample(t + rtt_ms / 1000.0, ms(t), 0)
    n.rtt_sample(14.0, 0, 0)  # no echo: not a sample
    counts = dict(zip([*RTT_HISTOGRAM_BOUNDS_MS, "inf"], n.rtt_hist, strict=True))
    assert counts[0.0] == 1 and counts[5.0] == 2 and counts["inf"] == 1 and sum(n.rtt_hist) == 4
    assert abs(n.rtt_hist_sum_ms - 7006) <= 4


def test_control_counts_grow_with_every_packet_and_every_gap():
    n = _n()
    n.control_seen(100)
    for seq in (101, 102, 105, 106, 110):  # 2 + 3 numbers skipped
        _keepalive(n, seq)
    assert (n.ctl_received, n.ctl_missed) == (6, 5)
    _keepalive(n, 108)  # late, inside the window: received, the gap it fills stays counted
    assert (n.ctl_received, n.ctl_missed) == (7, 5)
    n.reset_session(2, b"k" * 32)  # a new session restarts the sequence, not the counts
    n.control_seen(5)
    assert (n.ctl_received, n.ctl_missed) == (8, 5)
