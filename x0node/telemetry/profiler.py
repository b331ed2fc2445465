"""Per-program run counts and run time from the kernel's BPF statistics.

Rules:
- figures come only from the kernel (struct bpf_prog_info run_cnt / run_time_ns), which counts them
  while stats are enabled: kernel.bpf_stats_enabled=1, or while some process holds a
  BPF_ENABLE_STATS fd (what `StatsSession` does, so nothing global is left switched on; it needs
  CAP_SYS_ADMIN, as does walking all program ids in `read_all` — `read_fds` works without it);
- `ns_per_run` and `deltas` are pure; `read_all` does the syscalls;
- unreadable programs (gone between listing and opening) are skipped, never fatal.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from x0node.telemetry import libbpf
from x0node.telemetry.libbpf import BpfError
from x0node.telemetry.loader import BPF_PROG_TYPE_NAMES

OUR_PROGRAMS = frozenset({"xdp_mac_stats", "tcp_states", "tcp_rtt", "tcp_retrans", "tcp_retrans_2args"})
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


@dataclass(frozen=True)
class ProgStats:
    id: int
    name: str
    type: str
    tag: str
    run_cnt: int
    run_time_ns: int
    xlated_bytes: int
    verified_insns: int
    map_ids: tuple[int, ...] = ()

    @property
    def ns_per_run(self) -> float | None:
        return ns_per_run(self.run_cnt, self.run_time_ns)


def ns_per_run(run_cnt: int, run_time_ns: int) -> float | None:
    return run_time_ns / run_cnt if run_cnt > 0 else None


def parse_prog_info(raw: bytes) -> ProgStats:
    """Decode the prefix of struct bpf_prog_info (uapi/linux/bpf.h) that we read."""
    if len(raw) < 220:
        raise ValueError("bpf_prog_info prefix too short")
    ptype, pid = struct.unpack_from("<II", raw, 0)
    tag = raw[8:16].hex()
    xlated_len = struct.unpack_from("<I", raw, 20)[0]
    name = raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    run_time_ns, run_cnt = struct.unpack_from("<QQ", raw, 192)
    verified = struct.unpack_from("<I", raw, 216)[0]
    return ProgStats(pid, name, BPF_PROG_TYPE_NAMES.get(ptype, str(ptype)), tag, run_cnt, run_time_ns, xlated_len, verified)


def deltas(before: list[ProgStats], after: list[ProgStats]) -> list[ProgStats]:
    """Per-program counts accumulated between two readings (programs present in both)."""
    prev = {p.id: p for p in before}
    out = []
    for p in after:
        b = prev.get(p.id)
        if b is None:
            continue
        out.append(
            ProgStats(p.id, p.name, p.type, p.tag, max(0, p.run_cnt - b.run_cnt), max(0, p.run_time_ns - b.run_time_ns),
                      p.xlated_bytes, p.verified_insns, p.map_ids)
        )
    return out


def prog_map_ids(fd: int, count: int) -> tuple[int, ...]:
    import ctypes

    if count <= 0:
        return ()
    ids = (ctypes.c_uint32 * count)()
    buf = ctypes.create_string_buffer(libbpf.PROG_INFO_BYTES)
    struct.pack_into("<I", buf, 52, count)
    struct.pack_into("<Q", buf, 56, ctypes.addressof(ids))
    ln = ctypes.c_uint32(libbpf.PROG_INFO_BYTES)
    libbpf.check(libbpf.lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(ln)), "prog map ids")
    return tuple(ids)


def read_all(names: frozenset[str] | None = None) -> list[ProgStats]:
    """Stats of every loaded program (or those whose name is in `names`)."""
    out = []
    for pid in libbpf.prog_ids():
        try:
            fd = libbpf.prog_fd_by_id(pid)
        except BpfError:
            continue
        try:
            raw = libbpf.obj_info(fd, libbpf.PROG_INFO_BYTES)
            st = parse_prog_info(raw)
            if names is not None and st.name not in names:
                continue
            nmaps = struct.unpack_from("<I", raw, 52)[0]
            out.append(ProgStats(**{**st.__dict__, "map_ids": prog_map_ids(fd, min(nmaps, 64))}))
        except (BpfError, ValueError):
            continue
        finally:
            os.close(fd)
    return out


def read_fds(fds: dict[str, int]) -> list[ProgStats]:
    """Stats of programs we hold fds for (no id walk, so no CAP_SYS_ADMIN needed)."""
    out = []
    for fd in fds.values():
        try:
            out.append(parse_prog_info(libbpf.obj_info(fd, libbpf.PROG_INFO_BYTES)))
        except (BpfError, ValueError):
            continue
    return out


def stats_enabled_sysctl() -> bool:
    try:
        with open(STATS_SYSCTL, encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


class StatsSession:
    """Kernel BPF run-time stats switched on for as long as this object is open."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def __enter__(self) -> StatsSession:
        self.fd = libbpf.enable_run_stats()
        return self

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc: object) -> None:
        self.close()
