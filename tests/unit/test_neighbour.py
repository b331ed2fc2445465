from x0node.proto.neighbour import Neighbour, NeighbourState, ms
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


def test_loss_window_counts_gaps():
    n = _n()
    for s in range(1, 33):
        if s % 4:
            n.ka_window.accept(s)
            n.keepalive_seen(s)
    assert abs(n.loss() - 0.25) < 0.04


def test_cost_hysteresis():
    n = _n()
    n.refresh_advertised(0.0, force=True)
    c0 = n.adv_cost
    n.rtt_ms = 1.0  # +10 units = +10 %: below hysteresis
    assert not n.refresh_advertised(5.0)
    assert n.adv_cost == c0
    n.rtt_ms = 5.0  # +50 %: re-advertise
    assert n.refresh_advertised(6.0)
    assert n.adv_cost > c0
    n.rtt_ms = 60.0  # class change (FAIR) is immediate
    assert n.refresh_advertised(6.1)
    assert n.adv_quality is Quality.FAIR


def test_echo_and_session_reset():
    n = _n()
    n.heard(2.0, 1234)
    assert n.echo(2.05) == (1234, 50)
    n.ka_window.accept(3)
    n.reset_session(7, b"j" * 32)
    assert n.echo(3.0) == (0, 0) and n.epoch == 7 and n.ka_window.highest is None
