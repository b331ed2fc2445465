"""BPF_PROG_TEST_RUN tests of each program: the kernel runs the real object on a synthetic input
(no interface, no traffic) and we read the maps back."""

from __future__ import annotations

import struct

import pytest

from tests.integration.bpf_support import BPF_DIR
from x0node.telemetry import counters, libbpf
from x0node.telemetry.loader import BpfObject
from x0node.telemetry.machash import mac_id

XDP_DROP, XDP_PASS = 1, 2
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def _frame(src: bytes, size: int = 64) -> bytes:
    f = b"\xff" * 6 + src + b"\x88\xb5"
    return f + bytes(size - len(f))


@pytest.fixture
def obj(request):
    name = request.param
    o = BpfObject(str(BPF_DIR / f"{name}.bpf.o"), pin_root=None)
    if name == "xdp_mac_stats":
        o.set_global(".rodata", KEY)
    o.load()
    yield o
    o.close()


def _array(o: BpfObject, name: str) -> list[int]:
    m = o.maps[name]
    return [counters.sum_u64(m.percpu_values(struct.pack("<I", i))) for i in range(m.info.max_entries)]


LO_IFINDEX = 1  # BPF_PROG_TEST_RUN runs XDP programs as if received on lo


def _ifc(o: BpfObject) -> counters.IfCounters:
    slot = o.maps["if_slots"].percpu_values(struct.pack("<I", LO_IFINDEX))
    assert o.maps["if_stats"].keys() == []  # no slot collision: the hash path stays unused
    return counters.if_counters(slot, LO_IFINDEX)


@pytest.mark.parametrize("obj", ["xdp_mac_stats"], indirect=True)
def test_xdp_counts_hashed_source_and_passes(obj):
    src = bytes.fromhex("02aabbccddee")
    res = libbpf.test_run(obj.prog_fds["xdp_mac_stats"], data=_frame(src, 100), repeat=1000)
    assert res.retval == XDP_PASS
    m = obj.maps["mac_stats"]
    keys = m.keys()
    assert len(keys) == 1
    s = counters.source_counters(keys[0], m.percpu_values(keys[0]))
    assert (s.source, s.packets, s.bytes) == (mac_id(KEY, src), 1000, 100_000)
    ifc = _ifc(obj)
    assert (ifc.rx_packets, ifc.passed, ifc.dropped) == (1000, 1000, 0)


@pytest.mark.parametrize("obj", ["xdp_mac_stats"], indirect=True)
def test_xdp_passes_and_counts_a_zero_source(obj):
    res = libbpf.test_run(obj.prog_fds["xdp_mac_stats"], data=_frame(bytes(6)), repeat=4)
    assert res.retval == XDP_PASS
    (key,) = obj.maps["mac_stats"].keys()
    assert counters.source_counters(key, obj.maps["mac_stats"].percpu_values(key)).source == mac_id(KEY, bytes(6))
    assert _ifc(obj).passed == 4


@pytest.mark.parametrize("obj", ["xdp_mac_stats"], indirect=True)
@pytest.mark.parametrize("src", [bytes.fromhex("0180c2000000"), bytes.fromhex("ffffffffffff"), bytes.fromhex("330000000001")])
def test_xdp_drops_group_sources(obj, src):
    res = libbpf.test_run(obj.prog_fds["xdp_mac_stats"], data=_frame(src), repeat=3)
    assert res.retval == XDP_DROP
    assert obj.maps["mac_stats"].keys() == []
    ifc = _ifc(obj)
    assert (ifc.rx_packets, ifc.passed, ifc.dropped, ifc.drop_bad_src) == (3, 0, 3, 3)


@pytest.mark.parametrize("obj", ["xdp_mac_stats"], indirect=True)
def test_xdp_packet_is_not_modified(obj):
    frame = _frame(bytes.fromhex("02aabbccddee"), 80)
    res = libbpf.test_run(obj.prog_fds["xdp_mac_stats"], data=frame, repeat=1)
    assert res.data_out == frame


@pytest.mark.parametrize("obj", ["tcp_states"], indirect=True)
def test_tcp_states_counts_transition_from_arguments(obj):
    fd = obj.prog_fds["tcp_states"]
    for old, new in [(2, 1), (2, 1), (1, 4), (4, 99)]:  # SYN_SENT->ESTABLISHED x2, ESTABLISHED->FIN_WAIT1, bad
        libbpf.test_run(fd, ctx=struct.pack("<Qqq", 0, old, new))
    trans = _array(obj, "transitions")
    assert {counters.transition_name(i): n for i, n in enumerate(trans) if n} == {
        "SYN_SENT->ESTABLISHED": 2,
        "ESTABLISHED->FIN_WAIT1": 1,
    }
    ev = _array(obj, "state_events")
    # sk is NULL in a test run: its protocol is unreadable, which is counted, not fatal
    assert ev[counters.EV_SEEN] == 4 and ev[counters.EV_COUNTED] == 3
    assert ev[counters.EV_UNREADABLE] == 4 and ev[counters.EV_OUT_OF_RANGE] == 1


@pytest.mark.parametrize("obj", ["tcp_rtt"], indirect=True)
def test_tcp_rtt_unreadable_socket_gives_no_sample(obj):
    libbpf.test_run(obj.prog_fds["tcp_rtt"], ctx=struct.pack("<QQ", 0, 0))
    assert sum(_array(obj, "rtt_hist")) == 0
    ev = _array(obj, "rtt_events")
    assert ev[counters.RTT_UNREADABLE] == 1 and ev[counters.RTT_SAMPLES] == 0


@pytest.mark.parametrize("obj", ["tcp_retrans"], indirect=True)
def test_tcp_retrans_counts_total_and_failures(obj):
    fd = obj.prog_fds["tcp_retrans"]
    libbpf.test_run(fd, ctx=struct.pack("<QQq", 0, 0, 0))
    libbpf.test_run(fd, ctx=struct.pack("<QQq", 0, 0, -11))
    ev = _array(obj, "retrans_events")
    assert ev[counters.RT_TOTAL] == 2 and ev[counters.RT_FAILED] == 1
    assert _array(obj, "retrans_by_state")[0] == 2  # state unreadable from a NULL socket


@pytest.mark.parametrize("obj", ["tcp_retrans"], indirect=True)
def test_tcp_retrans_two_argument_alternative_counts_without_failures(obj):
    """The variant for kernels whose tracepoint has no error argument reads (sk, skb) only."""
    fd = obj.prog_fds["tcp_retrans_2args"]
    libbpf.test_run(fd, ctx=struct.pack("<QQ", 0, 0))
    ev = _array(obj, "retrans_events")
    assert ev[counters.RT_TOTAL] == 1 and ev[counters.RT_FAILED] == 0


def test_alternatives_for_one_tracepoint_attach_once():
    o = BpfObject(str(BPF_DIR / "tcp_retrans.bpf.o"), pin_root=None)
    try:
        o.load()
        # this kernel's tcp_retransmit_skb passes the error: the first alternative attaches, alone
        assert o.attach_tracepoints() == ["tcp_retrans"]
    finally:
        o.close()


def test_tcp_programs_skip_sockets_outside_the_namespace():
    obj_netns = 4026531840  # any non-zero namespace inode
    for name, ctx, events, slot in (
        ("tcp_states", struct.pack("<Qqq", 0, 2, 1), "state_events", counters.EV_OTHER_NETNS),
        ("tcp_rtt", struct.pack("<QQ", 0, 0), "rtt_events", counters.RTT_OTHER_NETNS),
        ("tcp_retrans", struct.pack("<QQq", 0, 0, 0), "retrans_events", counters.RT_OTHER_NETNS),
    ):
        o = BpfObject(str(BPF_DIR / f"{name}.bpf.o"), pin_root=None)
        try:
            o.set_global(".rodata", struct.pack("<I", obj_netns))
            o.load()
            libbpf.test_run(o.prog_fds[name], ctx=ctx)
            ev = _array(o, events)
            # a NULL socket's namespace is unreadable, so it is not the configured one: skipped
            assert ev[slot] == 1 and sum(ev) == 1, (name, ev)
        finally:
            o.close()
