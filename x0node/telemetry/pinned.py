"""Read the running daemon's counters from its pinned maps (for `x0node bpf show`).

Rules: read-only (maps are opened with bpf_obj_get and only looked up); a missing pin directory or
map gives an empty result, not an error; per-interface names are resolved in the caller's network
namespace (run it where the daemon runs, e.g. under `ip netns exec`).
"""

from __future__ import annotations

import glob
import os
import socket
import struct
from dataclasses import dataclass

from x0node.telemetry import counters, libbpf
from x0node.telemetry.libbpf import BpfError
from x0node.telemetry.loader import DEFAULT_PIN_ROOT, BpfMap, MapInfo, netns_inode


@dataclass(frozen=True)
class PinnedView:
    pin_dir: str
    interfaces: dict[int, counters.IfCounters]  # by ifindex
    sources: list[counters.SourceCounters]

    def named_interfaces(self) -> dict[str, counters.IfCounters]:
        return {ifname(i): c for i, c in self.interfaces.items()}


def open_map(path: str) -> BpfMap:
    fd = libbpf.obj_get(path)
    raw = libbpf.obj_info(fd, libbpf.MAP_INFO_BYTES)
    mtype, _id, ks, vs, me = struct.unpack_from("<IIIII", raw, 0)
    name = raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return BpfMap(MapInfo(name, mtype, ks, vs, me), fd, libbpf.num_possible_cpus())


def ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return f"ifindex{index}"


def read_xdp(pin_root: str = DEFAULT_PIN_ROOT, netns_dir: str | None = None) -> PinnedView | None:
    """Counters of xdp_mac_stats pinned under `pin_root` for this namespace (or `netns_dir`)."""
    ns_dir = netns_dir or os.path.join(pin_root, f"ns{netns_inode()}")
    pin_dir = os.path.join(ns_dir, "xdp_mac_stats")
    if not os.path.isdir(pin_dir):
        return None
    maps: list[BpfMap] = []
    try:
        slots = open_map(os.path.join(pin_dir, "if_slots"))
        maps.append(slots)
        hashed = open_map(os.path.join(pin_dir, "if_stats"))
        maps.append(hashed)
        macs = open_map(os.path.join(pin_dir, "mac_stats"))
        maps.append(macs)
        totals: dict[int, counters.IfCounters] = {}
        for slot in range(slots.info.max_entries):
            for v in slots.percpu_values(struct.pack("<I", slot)):
                owner = struct.unpack_from("<Q", v)[0]
                if owner:
                    c = counters.if_counters([v])
                    totals[owner] = counters.add(totals.get(owner, counters.IfCounters()), c)
        for key in hashed.keys():
            (index,) = struct.unpack("<I", key)
            c = counters.if_counters(hashed.percpu_values(key))
            totals[index] = counters.add(totals.get(index, counters.IfCounters()), c)
        sources = [counters.source_counters(k, macs.percpu_values(k)) for k in macs.keys()]
    except (BpfError, OSError):
        return None
    finally:
        for m in maps:
            os.close(m.fd)
    sources.sort(key=lambda s: (-s.packets, s.source))
    return PinnedView(pin_dir, dict(sorted(totals.items())), sources)


def namespaces(pin_root: str = DEFAULT_PIN_ROOT) -> list[str]:
    return sorted(glob.glob(os.path.join(pin_root, "ns*")))
