"""CPU and memory figures of the machine for the status view, read from /proc.

Parsing is pure (`parse_cpu`, `parse_meminfo` take the files' text); `HostStats.sample()` reads the
files and reports CPU use since the previous sample (the first sample reports since boot). Missing or
malformed files give None values, never an exception.
"""

from __future__ import annotations

import pathlib
from typing import Any

PROC = pathlib.Path("/proc")


def parse_cpu(text: str) -> tuple[int, int] | None:
    """(busy jiffies, total jiffies) from the aggregate `cpu` line of /proc/stat."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                vals = [int(x) for x in parts[1:9]]
            except ValueError:
                return None
            if len(vals) < 4:
                return None
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
            total = sum(vals)
            return total - idle, total
    return None


def parse_meminfo(text: str) -> tuple[int, int] | None:
    """(used bytes, total bytes) with used = MemTotal - MemAvailable."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    if "MemTotal" not in fields or "MemAvailable" not in fields:
        return None
    return fields["MemTotal"] - fields["MemAvailable"], fields["MemTotal"]


class HostStats:
    def __init__(self, proc: pathlib.Path = PROC) -> None:
        self.proc = proc
        self._last: tuple[int, int] | None = None

    def _read(self, name: str) -> str:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return ""

    def sample(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu_percent": None, "mem_used_bytes": None, "mem_total_bytes": None}
        cpu = parse_cpu(self._read("stat"))
        if cpu is not None:
            busy, total = cpu
            if self._last is not None and total > self._last[1]:
                out["cpu_percent"] = round(100.0 * (busy - self._last[0]) / (total - self._last[1]), 1)
            elif total > 0:
                out["cpu_percent"] = round(100.0 * busy / total, 1)
            self._last = cpu
        mem = parse_meminfo(self._read("meminfo"))
        if mem is not None:
            out["mem_used_bytes"], out["mem_total_bytes"] = mem
        return out
