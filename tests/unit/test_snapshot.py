import random

from x0node.telemetry import snapshot
from x0node.telemetry.counters import EMPTY_TCP, IfCounters, SourceCounters, TcpCounters


def _ifs(pk: int, drops: int) -> dict[str, snapshot.InterfaceState]:
    return {"eth1": snapshot.InterfaceState("native", IfCounters(pk, pk * 100, pk - drops, drops, 0, drops))}


def test_rates_from_previous_snapshot():
    s1 = snapshot.build(10.0, _ifs(100, 0), [], EMPTY_TCP, None, None, random.Random(1))
    assert s1.rates == {}
    tcp = TcpCounters({}, 20, 0, {}, EMPTY_TCP.rtt_buckets, 10, 1000, 0)
    s2 = snapshot.build(12.0, _ifs(300, 20), [], tcp, s1, None, random.Random(1))
    r = s2.rates
    assert r["interval_s"] == 2.0
    assert r["interfaces"]["eth1"]["rx_pps"] == 100.0
    assert r["interfaces"]["eth1"]["drop_ratio"] == 0.1
    assert r["tcp"]["retransmits_per_s"] == 10.0 and r["tcp"]["rtt_mean_us"] == 100.0


def test_peers_bounded_exact_without_epsilon():
    sources = [SourceCounters(f"{i:016x}", i, i * 10) for i in range(100)]
    s = snapshot.build(1.0, {}, sources, EMPTY_TCP, None, None, random.Random(1), peers_max=3)
    assert [(p.source, p.packets) for p in s.peers] == [(f"{99:016x}", 99), (f"{98:016x}", 98), (f"{97:016x}", 97)]


def test_noisy_peers_are_deterministic_with_seed_and_monotonic():
    sources = [SourceCounters("aa" * 8, 1000, 100000)]
    a = snapshot.build(1.0, {}, sources, EMPTY_TCP, None, 0.5, random.Random(9))
    b = snapshot.build(1.0, {}, sources, EMPTY_TCP, None, 0.5, random.Random(9))
    assert a.peers == b.peers
    prev = a
    for i in range(50):
        nxt = snapshot.build(2.0 + i, {}, sources, EMPTY_TCP, prev, 0.5, random.Random(i))
        assert nxt.peers[0].packets >= prev.peers[0].packets
        assert nxt.peers[0].bytes >= prev.peers[0].bytes
        prev = nxt


def test_as_dict_shape():
    s = snapshot.build(5.0, _ifs(10, 1), [SourceCounters("ab" * 8, 9, 900)], EMPTY_TCP, None, 1.0, random.Random(2))
    d = s.as_dict()
    assert set(d) == {"version", "time", "bpf", "reason", "interfaces", "peers", "tcp", "rates", "privacy"}
    assert d["interfaces"]["eth1"]["mode"] == "native" and d["interfaces"]["eth1"]["dropped"] == 1
    assert d["privacy"] == {"epsilon": 1.0, "noised": ["peers"]}
    assert snapshot.empty(1.0, "no bpf").as_dict()["bpf"] is False
