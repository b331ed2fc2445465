"""The node's set of BPF probes: validated, loaded, attached, read, and torn down together.

Rules:
- nothing is loaded without passing the validator (manifest sha256, license, sections, limits);
- the SipHash key for source MACs is drawn from os.urandom at load, written into the program's
  read-only globals and not kept by this object or written anywhere else;
- TCP tracepoints fire for every socket on the machine; the programs count only sockets of one
  network namespace (this process's by default), so a node's TCP figures are its own;
- each tracepoint object is loaded on its own: one that the kernel refuses is reported in `errors`
  and the others keep working;
- reads are bounded (SOURCES_READ_MAX) and return decoded aggregates (x0node.telemetry.counters).
"""

from __future__ import annotations

import logging
import os
import struct

from x0node.telemetry import counters, validator
from x0node.telemetry.libbpf import BpfError
from x0node.telemetry.loader import DEFAULT_PIN_ROOT, BpfObject, XdpAttachment, netns_inode

log = logging.getLogger(__name__)

XDP_OBJECT = "xdp_mac_stats"
TCP_OBJECTS = ("tcp_states", "tcp_rtt", "tcp_retrans")
DEVICE_BPF_DIR = "/usr/lib/x0node/bpf"  # where the image installs them (image/payload.py)
DEV_BPF_DIR = os.path.join(validator.REPO_ROOT, "build", "bpf")
SOURCES_READ_MAX = 1024
MAC_KEY_BYTES = 16
VERIFIER_LOG_LOGGED_CHARS = 4000


def default_bpf_dir() -> str:
    env = os.environ.get("X0NODE_BPF_DIR")
    if env:
        return env
    return DEVICE_BPF_DIR if os.path.isdir(DEVICE_BPF_DIR) else DEV_BPF_DIR


def _u32(i: int) -> bytes:
    return struct.pack("<I", i)


class Probes:
    def __init__(
        self,
        bpf_dir: str | None = None,
        manifest: str | None = None,
        pin_root: str | None = DEFAULT_PIN_ROOT,
        policy: validator.Policy | None = None,
        mac_key: bytes | None = None,
        tcp_netns_ino: int | None = None,
    ) -> None:
        """`mac_key` fixes the SipHash key (tests only); by default a fresh random key is drawn.
        `tcp_netns_ino`: count TCP events of this network namespace (inode number; 0 = all
        namespaces; default: the namespace of this process)."""
        self.bpf_dir = bpf_dir or default_bpf_dir()
        self.manifest = manifest
        self.pin_root = pin_root
        self.policy = policy
        self.objects: dict[str, BpfObject] = {}
        self.errors: dict[str, str] = {}
        self.attachments: dict[str, XdpAttachment] = {}
        self._mac_key = mac_key
        self.tcp_netns_ino = netns_inode() if tcp_netns_ino is None else tcp_netns_ino

    def path(self, name: str) -> str:
        return os.path.join(self.bpf_dir, f"{name}.bpf.o")

    def _open(self, name: str) -> BpfObject:
        validator.validate_file(self.path(name), self.manifest, self.policy)
        return BpfObject(self.path(name), pin_root=self.pin_root)

    def load_xdp(self) -> BpfObject:
        if XDP_OBJECT in self.objects:
            return self.objects[XDP_OBJECT]
        obj = self._open(XDP_OBJECT)
        try:
            key = self._mac_key if self._mac_key is not None else os.urandom(MAC_KEY_BYTES)
            self._mac_key = None  # not kept after load
            obj.set_global(".rodata", key)
            obj.load()
        except BpfError as exc:
            obj.close()
            if exc.log:
                log.warning("%s refused; verifier log (end):\n%s", XDP_OBJECT, exc.log[-VERIFIER_LOG_LOGGED_CHARS:])
            raise
        except BaseException:
            obj.close()
            raise
        self.objects[XDP_OBJECT] = obj
        return obj

    def load_tcp(self) -> list[str]:
        """Load and attach each TCP tracepoint object; returns the names now running."""
        running = []
        for name in TCP_OBJECTS:
            if name in self.objects:
                running.append(name)
                continue
            try:
                obj = self._open(name)
            except (validator.ValidationError, BpfError) as exc:
                self.errors[name] = str(exc)
                log.warning("telemetry probe %s not loaded: %s", name, exc)
                continue
            try:
                obj.set_global(".rodata", struct.pack("<I", self.tcp_netns_ino))
                obj.load()
                obj.attach_tracepoints()
            except BpfError as exc:
                obj.close()
                self.errors[name] = str(exc)
                log.warning("telemetry probe %s not loaded: %s", name, exc)
                if exc.log:
                    log.warning("%s verifier log (end):\n%s", name, exc.log[-VERIFIER_LOG_LOGGED_CHARS:])
                continue
            self.objects[name] = obj
            self.errors.pop(name, None)
            running.append(name)
        return running

    def attach(self, ifname: str, mode: str = "auto", netns: str | None = None) -> XdpAttachment:
        obj = self.load_xdp()
        if ifname in self.attachments:
            return self.attachments[ifname]
        att = obj.attach_xdp(XDP_OBJECT, ifname, mode, netns)
        self.attachments[ifname] = att
        log.info("xdp_mac_stats attached to %s in %s mode", ifname, att.mode)
        return att

    def refresh(self, netns: str | None = None) -> list[str]:
        """Forget attachments whose interface is gone or was re-created (new ifindex), and clear their
        per-interface counters so the bounded if_stats map never fills with dead entries. Returns
        the interface names forgotten (the caller re-attaches them when they come back)."""
        if not self.attachments:
            return []
        from pyroute2 import IPRoute

        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            current = {name: ipr.link_lookup(ifname=name) for name in self.attachments}
        gone = []
        for name, found in current.items():
            att = self.attachments[name]
            if found and found[0] == att.ifindex:
                continue
            gone.append(name)
            del self.attachments[name]
            obj = self.objects.get(XDP_OBJECT)
            if obj is not None:
                if att in obj.xdp:
                    obj.xdp.remove(att)  # the kernel dropped the program with the interface
                self._release_if(obj, att.ifindex)
            log.info("xdp: interface %s went away; will re-attach when it is back", name)
        return gone

    def detach(self, ifname: str) -> None:
        att = self.attachments.pop(ifname, None)
        if att is not None and XDP_OBJECT in self.objects:
            self.objects[XDP_OBJECT].detach_xdp(att)

    # --- reads ---------------------------------------------------------------------------------------
    def _if_counters(self, obj: BpfObject, ifindex: int) -> counters.IfCounters:
        slot = obj.maps["if_slots"].percpu_values(_u32(ifindex & (counters.IF_SLOTS - 1)))
        fast = counters.if_counters(slot, ifindex)
        slow = obj.maps["if_stats"].percpu_values(_u32(ifindex))
        return counters.add(fast, counters.if_counters(slow, ifindex)) if slow else fast

    def _release_if(self, obj: BpfObject, ifindex: int) -> None:
        slots = obj.maps["if_slots"]
        key = _u32(ifindex & (counters.IF_SLOTS - 1))
        values = slots.percpu_values(key)
        if values:
            slots.update(key, b"".join(counters.release_slot(values, ifindex)))
        obj.maps["if_stats"].delete(_u32(ifindex))

    def interfaces(self) -> dict[str, counters.IfCounters]:
        obj = self.objects.get(XDP_OBJECT)
        if obj is None:
            return {}
        return {name: self._if_counters(obj, att.ifindex) for name, att in self.attachments.items()}

    def sources(self, limit: int = SOURCES_READ_MAX) -> list[counters.SourceCounters]:
        obj = self.objects.get(XDP_OBJECT)
        if obj is None:
            return []
        m = obj.maps["mac_stats"]
        out = []
        for k in m.keys(min(limit, SOURCES_READ_MAX)):
            vals = m.percpu_values(k)
            if vals:
                out.append(counters.source_counters(k, vals))
        out.sort(key=lambda s: (-s.packets, s.source))
        return out

    def _array(self, obj_name: str, map_name: str) -> list[int]:
        obj = self.objects.get(obj_name)
        if obj is None:
            return []
        m = obj.maps[map_name]
        return [counters.sum_u64(m.percpu_values(_u32(i))) for i in range(m.info.max_entries)]

    def tcp(self) -> counters.TcpCounters:
        trans = self._array("tcp_states", "transitions")
        events = self._array("tcp_states", "state_events")
        hist = self._array("tcp_rtt", "rtt_hist")
        rtt_ev = self._array("tcp_rtt", "rtt_events")
        by_state = self._array("tcp_retrans", "retrans_by_state")
        rt_ev = self._array("tcp_retrans", "retrans_events")
        return counters.TcpCounters(
            transitions={counters.transition_name(i): n for i, n in enumerate(trans) if n},
            retransmits=rt_ev[counters.RT_TOTAL] if rt_ev else 0,
            retransmit_failures=rt_ev[counters.RT_FAILED] if rt_ev else 0,
            retransmits_by_state={counters.state_name(i): n for i, n in enumerate(by_state) if n},
            rtt_buckets=tuple(hist) if hist else (0,) * counters.HIST_BUCKETS,
            rtt_samples=rtt_ev[counters.RTT_SAMPLES] if rtt_ev else 0,
            rtt_sum_us=rtt_ev[counters.RTT_SUM_US] if rtt_ev else 0,
            unreadable=(events[counters.EV_UNREADABLE] if events else 0)
            + (rtt_ev[counters.RTT_UNREADABLE] if rtt_ev else 0),
        )

    def prog_fds(self) -> dict[str, int]:
        """Our loaded programs' fds by name (their kernel stats need no CAP_SYS_ADMIN through these)."""
        return {name: fd for obj in self.objects.values() for name, fd in obj.prog_fds.items()}

    def close(self) -> None:
        for obj in self.objects.values():
            obj.close()
        self.objects.clear()
        self.attachments.clear()
