from __future__ import annotations

from x0node.web.host_stats import HostStats, parse_cpu, parse_meminfo

STAT1 = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n"
STAT2 = "cpu  150 0 150 900 0 0 0 0 0 0\n"
MEM = "MemTotal:        1024 kB\nMemFree:          100 kB\nMemAvailable:     256 kB\n"


def test_parsers():
    assert parse_cpu(STAT1) == (200, 1000)
    assert parse_cpu("garbage") is None and parse_cpu("cpu a b c d") is None
    assert parse_meminfo(MEM) == (768 * 1024, 1024 * 1024)
    assert parse_meminfo("MemTotal: x kB") is None


def test_sample_deltas_and_missing_files(tmp_path):
    (tmp_path / "stat").write_text(STAT1)
    (tmp_path / "meminfo").write_text(MEM)
    h = HostStats(tmp_path)
    assert h.sample()["cpu_percent"] == 20.0
    (tmp_path / "stat").write_text(STAT2)
    s = h.sample()
    assert s["cpu_percent"] == 50.0 and s["mem_total_bytes"] == 1024 * 1024
    assert HostStats(tmp_path / "nope").sample() == {"cpu_percent": None, "mem_used_bytes": None, "mem_total_bytes": None}
