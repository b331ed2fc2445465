import struct

from x0node.telemetry import profiler


def _info(pid: int, name: str, cnt: int, ns: int) -> bytes:
    raw = bytearray(256)
    struct.pack_into("<II", raw, 0, 6, pid)
    raw[8:16] = bytes(range(8))
    struct.pack_into("<I", raw, 20, 800)
    raw[64 : 64 + len(name)] = name.encode()
    struct.pack_into("<QQ", raw, 192, ns, cnt)
    struct.pack_into("<I", raw, 216, 99)
    return bytes(raw)


def test_parse_prog_info_prefix():
    s = profiler.parse_prog_info(_info(7, "xdp_mac_stats", 10, 250))
    assert (s.id, s.name, s.type, s.run_cnt, s.run_time_ns, s.verified_insns) == (7, "xdp_mac_stats", "xdp", 10, 250, 99)
    assert s.ns_per_run == 25.0 and s.tag == "0001020304050607"


def test_deltas_and_ns_per_run():
    a = [profiler.parse_prog_info(_info(1, "a", 10, 100)), profiler.parse_prog_info(_info(2, "b", 5, 50))]
    b = [profiler.parse_prog_info(_info(1, "a", 30, 500)), profiler.parse_prog_info(_info(3, "c", 1, 1))]
    (d,) = profiler.deltas(a, b)
    assert (d.id, d.run_cnt, d.run_time_ns, d.ns_per_run) == (1, 20, 400, 20.0)
    assert profiler.ns_per_run(0, 0) is None
