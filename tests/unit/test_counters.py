import struct

import pytest

from x0node.telemetry import counters


def test_if_counters_sum_over_cpus_owned_by_the_interface():
    a = struct.pack("<7Q", 5, 1, 100, 1, 0, 0, 0)
    b = struct.pack("<7Q", 5, 2, 200, 1, 1, 0, 1)
    other = struct.pack("<7Q", 69, 9, 900, 9, 0, 0, 0)
    assert counters.if_counters([a, b, other], 5) == counters.IfCounters(3, 300, 2, 1, 0, 1)
    assert counters.if_counters([a, other]).rx_packets == 10
    assert counters.add(counters.IfCounters(1, 2), counters.IfCounters(3, 4)) == counters.IfCounters(4, 6)


def test_release_slot_frees_only_the_owner():
    a = struct.pack("<7Q", 5, 1, 100, 1, 0, 0, 0)
    other = struct.pack("<7Q", 69, 9, 900, 9, 0, 0, 0)
    assert counters.release_slot([a, other], 5) == [bytes(56), other]


def test_wrong_sizes_raise_value_error():
    with pytest.raises(ValueError):
        counters.if_counters([b"\0" * 48])
    with pytest.raises(ValueError):
        counters.source_counters(b"\0" * 7, [])
    with pytest.raises(ValueError):
        counters.u64(b"\0" * 4)


def test_source_id_is_hash_as_hex_u64():
    key = struct.pack("<Q", 0x0123456789ABCDEF)
    s = counters.source_counters(key, [struct.pack("<QQ", 2, 128), struct.pack("<QQ", 1, 64)])
    assert (s.source, s.packets, s.bytes) == ("0123456789abcdef", 3, 192)


def test_bucket_bounds_and_names():
    assert counters.bucket_upper_bound(0) == 1.0
    assert counters.bucket_upper_bound(10) == 1024.0
    assert counters.bucket_upper_bound(31) == float("inf")
    assert counters.transition_name(2 * 16 + 1) == "SYN_SENT->ESTABLISHED"
    assert counters.state_name(0) == "UNKNOWN"


def test_tcp_counters_dict():
    t = counters.TcpCounters(
        {"SYN_SENT->ESTABLISHED": 2, "LAST_ACK->CLOSE": 1}, 3, 1, {"ESTABLISHED": 3},
        tuple([0] * 5 + [4] + [0] * 26), 4, 80, 0,
    )
    d = t.to_dict()
    assert d["opened_total"] == 2 and d["closed_total"] == 1
    assert d["rtt_us"]["mean"] == 20.0 and d["rtt_us"]["buckets"] == {"32": 4}
