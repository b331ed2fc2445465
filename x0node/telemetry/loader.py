"""Load CO-RE BPF objects, pin their maps under bpffs, attach and detach them.

Rules and invariants:
- an object is validated (x0node.telemetry.validator) by the caller before `BpfObject.open`; the loader
  itself never decides policy, it only loads what it is given;
- maps are pinned under `<pin_root>/ns<netns inode>/<object name>/` (one directory per network
  namespace, so daemons of several namespaces sharing one bpffs never touch each other's pins; bpffs is
  mounted if it is not, e.g. inside `ip netns exec`, which remounts /sys); `close()` detaches every
  attachment it made, destroys its links, unpins its maps and removes its pin directories, leaving
  nothing behind;
- XDP is attached to Ethernet interfaces only (ARPHRD_ETHER), through rtnetlink (pyroute2,
  IFLA_XDP) with XDP_FLAGS_UPDATE_IF_NOEXIST, so a
  program somebody else attached is never replaced; mode "auto" tries native (driver) mode first and
  falls back to generic (skb) mode, and the mode actually used is reported;
- detaching names our program (IFLA_XDP_EXPECTED_FD + XDP_FLAGS_REPLACE), so it cannot remove a
  program we did not attach.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import logging
import os
import shutil
from dataclasses import dataclass

from x0node.telemetry import libbpf
from x0node.telemetry.libbpf import BpfError

log = logging.getLogger(__name__)

DEFAULT_PIN_ROOT = "/sys/fs/bpf/x0node"
BPFFS_MOUNT = "/sys/fs/bpf"
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
XDP_MODES = ("auto", "native", "generic")
ARPHRD_ETHER = 1  # include/uapi/linux/if_arp.h
BPF_PROG_TYPE_NAMES = {
    0: "unspec", 1: "socket_filter", 2: "kprobe", 3: "sched_cls", 4: "sched_act", 5: "tracepoint",
    6: "xdp", 7: "perf_event", 8: "cgroup_skb", 9: "cgroup_sock", 10: "lwt_in", 11: "lwt_out",
    12: "lwt_xmit", 13: "sock_ops", 14: "sk_skb", 15: "cgroup_device", 16: "sk_msg",
    17: "raw_tracepoint", 18: "cgroup_sock_addr", 19: "lwt_seg6local", 20: "lirc_mode2",
    21: "sk_reuseport", 22: "flow_dissector", 23: "cgroup_sysctl", 24: "raw_tracepoint_writable",
    25: "cgroup_sockopt", 26: "tracing", 27: "struct_ops", 28: "ext", 29: "lsm", 30: "sk_lookup",
    31: "syscall", 32: "netfilter",
}
BPF_MAP_TYPE_NAMES = {
    0: "unspec", 1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
    6: "percpu_array", 7: "stack_trace", 8: "cgroup_array", 9: "lru_hash", 10: "lru_percpu_hash",
    11: "lpm_trie", 12: "array_of_maps", 13: "hash_of_maps", 14: "devmap", 15: "sockmap",
    16: "cpumap", 17: "xskmap", 18: "sockhash", 19: "cgroup_storage", 20: "reuseport_sockarray",
    21: "percpu_cgroup_storage", 22: "queue", 23: "stack", 24: "sk_storage", 25: "devmap_hash",
    26: "struct_ops", 27: "ringbuf", 28: "inode_storage", 29: "task_storage", 30: "bloom_filter",
    31: "user_ringbuf", 32: "cgrp_storage",
}
PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})
BPF_FS_TYPE = "bpf"


@dataclass(frozen=True)
class MapInfo:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int

    @property
    def type_name(self) -> str:
        return BPF_MAP_TYPE_NAMES.get(self.type, f"type{self.type}")

    @property
    def percpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES

    @property
    def internal(self) -> bool:
        """libbpf's maps for globals (.rodata, .bss, .data) carry a dot in their name."""
        return "." in self.name


@dataclass(frozen=True)
class ProgInfo:
    name: str
    section: str
    type: int
    insn_count: int
    insns: bytes  # raw struct bpf_insn array as in the object (before load)

    @property
    def type_name(self) -> str:
        return BPF_PROG_TYPE_NAMES.get(self.type, f"type{self.type}")


@dataclass
class XdpAttachment:
    ifname: str
    ifindex: int
    mode: str  # "native" or "generic"
    netns: str | None
    prog_fd: int
    flags: int


@dataclass
class BpfMap:
    info: MapInfo
    fd: int
    ncpus: int

    def lookup(self, key: bytes) -> bytes | None:
        """Raw value; for per-CPU maps all CPUs' values, each padded to 8 bytes (kernel layout)."""
        if self.info.percpu:
            size = ((self.info.value_size + 7) // 8) * 8 * self.ncpus
        else:
            size = self.info.value_size
        return libbpf.map_lookup(self.fd, key, size)

    def delete(self, key: bytes) -> bool:
        return libbpf.map_delete(self.fd, key)

    def keys(self, limit: int | None = None) -> list[bytes]:
        return libbpf.map_keys(self.fd, self.info.key_size, limit or self.info.max_entries)

    def update(self, key: bytes, value: bytes) -> None:
        libbpf.map_update(self.fd, key, value)

    def percpu_values(self, key: bytes) -> list[bytes]:
        """The per-CPU values of a per-CPU map for `key` ([] if absent)."""
        raw = self.lookup(key)
        if raw is None:
            return []
        stride = ((self.info.value_size + 7) // 8) * 8 if self.info.percpu else self.info.value_size
        count = self.ncpus if self.info.percpu else 1
        return [raw[i * stride : i * stride + self.info.value_size] for i in range(count)]


def _mountinfo_fstype(path: str) -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    fstype = None
    for line in lines:  # later mounts shadow earlier ones
        parts = line.split(" - ")
        left = parts[0].split()
        if len(left) > 4 and left[4] == path and len(parts) > 1:
            fstype = parts[1].split()[0]
    return fstype


def ensure_bpffs(mountpoint: str = BPFFS_MOUNT) -> None:
    """Mount bpffs at `mountpoint` unless it is already there (e.g. after `ip netns exec`)."""
    if _mountinfo_fstype(mountpoint) == BPF_FS_TYPE:
        return
    os.makedirs(mountpoint, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"bpf", mountpoint.encode(), b"bpf", 0, b"mode=0700")
    if rc != 0:
        err = ctypes.get_errno()
        raise BpfError(f"cannot mount bpffs at {mountpoint}", err)
    log.info("mounted bpffs at %s", mountpoint)


def netns_inode(path: str = "/proc/self/ns/net") -> int:
    """Inode number identifying a network namespace (of this process by default)."""
    return os.stat(path).st_ino


def _cstr(value: bytes | None) -> str:
    return value.decode() if value else ""


class BpfObject:
    """One opened (and later loaded) BPF ELF object."""

    def __init__(self, path: str, pin_root: str | None = DEFAULT_PIN_ROOT) -> None:
        self.path = path
        self.name = os.path.basename(path).split(".")[0]
        self.pin_dir = os.path.join(pin_root, f"ns{netns_inode()}", self.name) if pin_root else None
        self._lib = libbpf.lib()
        libbpf.drain_messages()
        ptr = self._lib.bpf_object__open_file(path.encode(), None)
        if not ptr:
            raise BpfError(f"cannot open BPF object {path}", libbpf.last_errno(), "\n".join(libbpf.drain_messages()))
        self._obj: int | None = ptr
        self._loaded = False
        self._log_bufs: dict[str, ctypes.Array[ctypes.c_char]] = {}
        self._links: list[int] = []
        self._pinned: list[str] = []
        self.xdp: list[XdpAttachment] = []
        self.maps: dict[str, BpfMap] = {}
        self.prog_fds: dict[str, int] = {}

    # --- introspection before load -------------------------------------------------------------
    def _prog_ptrs(self) -> list[int]:
        out, cur = [], None
        while True:
            cur = self._lib.bpf_object__next_program(self._obj, cur)
            if not cur:
                return out
            out.append(cur)

    def _map_ptrs(self) -> list[int]:
        out, cur = [], None
        while True:
            cur = self._lib.bpf_object__next_map(self._obj, cur)
            if not cur:
                return out
            out.append(cur)

    def programs(self) -> list[ProgInfo]:
        progs = []
        for p in self._prog_ptrs():
            n = int(self._lib.bpf_program__insn_cnt(p))
            insns = ctypes.string_at(self._lib.bpf_program__insns(p), n * 8) if n else b""
            progs.append(
                ProgInfo(
                    _cstr(self._lib.bpf_program__name(p)),
                    _cstr(self._lib.bpf_program__section_name(p)),
                    int(self._lib.bpf_program__type(p)),
                    n,
                    insns,
                )
            )
        return progs

    def map_infos(self) -> list[MapInfo]:
        return [self._map_info(m) for m in self._map_ptrs()]

    def _map_info(self, m: int) -> MapInfo:
        return MapInfo(
            _cstr(self._lib.bpf_map__name(m)),
            int(self._lib.bpf_map__type(m)),
            int(self._lib.bpf_map__key_size(m)),
            int(self._lib.bpf_map__value_size(m)),
            int(self._lib.bpf_map__max_entries(m)),
        )

    def set_global(self, map_suffix: str, data: bytes) -> None:
        """Set the initial contents of a globals map (e.g. ".rodata") before load."""
        for m in self._map_ptrs():
            info = self._map_info(m)
            if info.name.endswith(map_suffix):
                if len(data) != info.value_size:
                    raise BpfError(f"{info.name}: initial value is {len(data)} bytes, map holds {info.value_size}")
                buf = ctypes.create_string_buffer(data, len(data))
                libbpf.check(self._lib.bpf_map__set_initial_value(m, buf, len(data)), f"set {info.name}")
                return
        raise BpfError(f"{self.path}: no {map_suffix} map")

    # --- load ------------------------------------------------------------------------------------
    def load(self, log_level: int = 0) -> None:
        """Load programs and create maps; on failure the BpfError carries the verifier log."""
        for p in self._prog_ptrs():
            name = _cstr(self._lib.bpf_program__name(p))
            buf = ctypes.create_string_buffer(libbpf.VERIFIER_LOG_BYTES if log_level else 256 * 1024)
            self._log_bufs[name] = buf
            self._lib.bpf_program__set_log_buf(p, buf, len(buf))
            if log_level:
                self._lib.bpf_program__set_log_level(p, log_level)
        libbpf.drain_messages()
        rc = self._lib.bpf_object__load(self._obj)
        if rc < 0:
            verifier = "\n".join(b.value.decode(errors="replace") for b in self._log_bufs.values() if b.value)
            msgs = "\n".join(libbpf.drain_messages())
            raise BpfError(f"kernel refused {self.path}", -rc, (verifier + "\n" + msgs).strip())
        self._loaded = True
        ncpus = libbpf.num_possible_cpus()
        for p in self._prog_ptrs():
            self.prog_fds[_cstr(self._lib.bpf_program__name(p))] = int(self._lib.bpf_program__fd(p))
        for m in self._map_ptrs():
            info = self._map_info(m)
            self.maps[info.name] = BpfMap(info, int(self._lib.bpf_map__fd(m)), ncpus)
        if self.pin_dir:
            self._pin_maps()

    def verifier_log(self, prog: str) -> str:
        buf = self._log_bufs.get(prog)
        return buf.value.decode(errors="replace") if buf is not None else ""

    def _pin_maps(self) -> None:
        assert self.pin_dir is not None
        ensure_bpffs(os.path.dirname(self.pin_dir) if not self.pin_dir.startswith(BPFFS_MOUNT) else BPFFS_MOUNT)
        os.makedirs(self.pin_dir, mode=0o700, exist_ok=True)
        for m in self._map_ptrs():
            info = self._map_info(m)
            if info.internal:
                continue
            path = os.path.join(self.pin_dir, info.name)
            if os.path.exists(path):
                os.unlink(path)  # stale pin from a crashed run of ours (our own directory)
            libbpf.check(self._lib.bpf_map__pin(m, path.encode()), f"pin {info.name} at {path}")
            self._pinned.append(path)

    # --- attach ----------------------------------------------------------------------------------
    def attach_tracepoints(self) -> list[str]:
        """Attach every raw tracepoint / tracepoint program by its section name; returns their names.
        Programs sharing one section are alternatives for kernels that differ (e.g. in a tracepoint's
        arguments): tried in the object's order, the first that attaches is kept, the others stay
        unattached; the section fails only if none attaches."""
        attached = []
        sections: dict[str, list[int]] = {}
        for p in self._prog_ptrs():
            sec = _cstr(self._lib.bpf_program__section_name(p))
            if sec.startswith(("raw_tp/", "raw_tracepoint/", "tp/", "tracepoint/", "tp_btf/")):
                sections.setdefault(sec, []).append(p)
        for sec, progs in sections.items():
            failure: BpfError | None = None
            for p in progs:
                libbpf.drain_messages()
                link = self._lib.bpf_program__attach(p)
                if link:
                    self._links.append(link)
                    attached.append(_cstr(self._lib.bpf_program__name(p)))
                    failure = None
                    break
                failure = BpfError(f"cannot attach {sec}", libbpf.last_errno(), "\n".join(libbpf.drain_messages()))
                if len(progs) > 1:
                    log.info("%s: alternative %s not attached (%s)", sec, _cstr(self._lib.bpf_program__name(p)),
                             failure)
            if failure is not None:
                raise failure
        return attached

    def attach_xdp(self, prog: str, ifname: str, mode: str = "auto", netns: str | None = None) -> XdpAttachment:
        """Attach program `prog` at XDP on `ifname` (in `netns`, if given)."""
        if mode not in XDP_MODES:
            raise ValueError(f"xdp mode must be one of {XDP_MODES}")
        fd = self.prog_fds[prog]
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise BpfError(f"no interface {ifname}", errno_mod.ENODEV)
            idx = found[0]
            (link,) = ipr.get_links(idx)
            if link["ifi_type"] != ARPHRD_ETHER:
                raise BpfError(
                    f"{ifname} is not an Ethernet interface (link type {link['ifi_type']}); "
                    "xdp_mac_stats reads Ethernet source addresses",
                    errno_mod.EINVAL,
                )
            tries = {"auto": ["native", "generic"], "native": ["native"], "generic": ["generic"]}[mode]
            last: NetlinkError | None = None
            for m in tries:
                flags = XDP_FLAGS_UPDATE_IF_NOEXIST | (XDP_FLAGS_DRV_MODE if m == "native" else XDP_FLAGS_SKB_MODE)
                try:
                    ipr.link("set", index=idx, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})
                except NetlinkError as exc:
                    last = exc
                    if exc.code == errno_mod.EBUSY:
                        break  # another program is attached: never replace it
                    log.info("xdp %s mode refused on %s: %s", m, ifname, exc)
                    continue
                att = XdpAttachment(ifname, idx, m, netns, fd, flags)
                self.xdp.append(att)
                if m == "generic" and mode == "auto":
                    log.warning("xdp on %s runs in generic (skb) mode: native mode was refused", ifname)
                return att
            code = last.code if last else errno_mod.EINVAL
            raise BpfError(f"cannot attach XDP program {prog} to {ifname}", code)

    def detach_xdp(self, att: XdpAttachment) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        mode_flag = att.flags & (XDP_FLAGS_DRV_MODE | XDP_FLAGS_SKB_MODE)
        try:
            with IPRoute(netns=att.netns) if att.netns else IPRoute() as ipr:
                ipr.link(
                    "set",
                    index=att.ifindex,
                    xdp={
                        "attrs": [
                            ("IFLA_XDP_FD", -1),
                            ("IFLA_XDP_EXPECTED_FD", att.prog_fd),
                            ("IFLA_XDP_FLAGS", mode_flag | XDP_FLAGS_REPLACE),
                        ]
                    },
                )
        except NetlinkError as exc:
            if exc.code not in (errno_mod.ENODEV, errno_mod.EEXIST):  # interface gone / program already replaced
                raise BpfError(f"cannot detach XDP from {att.ifname}", exc.code) from exc
        finally:
            if att in self.xdp:
                self.xdp.remove(att)

    # --- teardown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Detach everything, unpin maps, remove the pin directory, free the object. Idempotent."""
        errors: list[str] = []
        for att in list(self.xdp):
            try:
                self.detach_xdp(att)
            except (BpfError, OSError) as exc:
                errors.append(str(exc))
        for link in self._links:
            self._lib.bpf_link__destroy(link)
        self._links.clear()
        for path in self._pinned:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._pinned.clear()
        if self.pin_dir and os.path.isdir(self.pin_dir):
            try:
                os.rmdir(self.pin_dir)
            except OSError:
                shutil.rmtree(self.pin_dir, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(self.pin_dir))  # the namespace directory, once empty
            except OSError:
                pass
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = None
        self.maps.clear()
        self.prog_fds.clear()
        if errors:
            log.warning("while closing %s: %s", self.path, "; ".join(errors))

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
