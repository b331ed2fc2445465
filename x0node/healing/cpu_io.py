"""This node's CPU pressure as its own control group accounts it (cgroup v1 `cpu` controller): the
I/O adapter behind the monitor's `cpu` indicator when the node is a group, not the whole host.

Rules and invariants:
- The node's group is the nearest group, from the daemon's own (`/proc/self/cgroup`) up to but not
  including the hierarchy's root, that carries a CPU limit (`cpu.cfs_quota_us` > 0): the CPU the node
  may use. Its pressure over an interval is the share of its CFS periods in which it was throttled
  (`cpu.stat`: Δnr_throttled / Δnr_periods) — 1.0 when the node's processes want more than the limit
  every period (a busy process beside the daemon), 0 when they fit. The kernel counts periods only
  while the group has runnable tasks, so an idle node reads 0, not "no data".
- Without a limited group the node cannot be starved by its own limit: `read()` gives 0.0 in
  source "cgroup", and None in source "auto" (the caller keeps the host-wide reading of /proc/stat,
  which is right when the daemon runs the whole device). Source "host" never reads groups.
- `ip netns exec` remounts /sys, hiding /sys/fs/cgroup: the hierarchy is then mounted read-only inside
  the daemon's own mount namespace (tmpfs on /sys/fs/cgroup, the hierarchy below it, as systemd lays it
  out), the way telemetry mounts bpffs. Nothing is mounted when the hierarchy is visible, and nothing
  is ever written to a group.
- Bad input never hurts: unreadable or malformed files give None for that read (counted in `errors`);
  a counter that went backwards (a new group) restarts the interval.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pathlib

log = logging.getLogger("x0node.healing")

CGROUP_MOUNT = pathlib.Path("/sys/fs/cgroup")
CONTROLLER = "cpu"
SOURCES = ("auto", "host", "cgroup")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MAX_DEPTH = 32


def controllers_and_path(proc_cgroup: str, controller: str = CONTROLLER) -> tuple[str, str] | None:
    """(the hierarchy's controller list as mounted, e.g. "cpu" or "cpu,cpuacct"; our path in it)."""
    for line in proc_cgroup.splitlines()[:64]:
        parts = line.split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):
            return parts[1], parts[2] or "/"
    return None


def find_mount(mountinfo: str, controllers: str) -> tuple[pathlib.Path, str] | None:
    """(mount point, root of the hierarchy it shows) of a cgroup v1 mount with exactly `controllers`."""
    want = set(controllers.split(","))
    found = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or len(r) < 3 or r[0] != "cgroup":
            continue
        if want <= set(r[2].split(",")):
            found = (pathlib.Path(f[4]), f[3])  # later mounts shadow earlier ones
    return found


def throttled_share(prev: tuple[int, int] | None, cur: tuple[int, int] | None) -> float | None:
    """Δnr_throttled / Δnr_periods between two `cpu.stat` readings (None without a usable interval)."""
    if prev is None or cur is None:
        return None
    periods, throttled = cur[0] - prev[0], cur[1] - prev[1]
    if periods < 0 or throttled < 0:
        return None  # reset: a new group
    if periods == 0:
        return 0.0  # no runnable task in any period: nothing wanted more than the limit
    return min(1.0, throttled / periods)


def parse_cpu_stat(text: str) -> tuple[int, int] | None:
    vals: dict[str, int] = {}
    for line in text.splitlines()[:32]:
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            vals[k] = int(v)
    if "nr_periods" not in vals or "nr_throttled" not in vals:
        return None
    return vals["nr_periods"], vals["nr_throttled"]


class NodeCpu:
    """Reads the node group's throttled share once per `read()` (the healing loop's cycle)."""

    def __init__(self, source: str = "auto", proc: pathlib.Path = pathlib.Path("/proc"),
                 mount_root: pathlib.Path = CGROUP_MOUNT, may_mount: bool = True) -> None:
        if source not in SOURCES:
            raise ValueError(f"cpu source must be one of {SOURCES}")
        self.source = source
        self.errors = 0
        self.group: pathlib.Path | None = None  # the limited group last read
        self._proc, self._mount_root, self._may_mount = proc, mount_root, may_mount
        self._own: pathlib.Path | None = None
        self._top: pathlib.Path | None = None
        self._prev: tuple[pathlib.Path, tuple[int, int]] | None = None
        if source != "host":
            self._own, self._top = self._locate()

    def _locate(self) -> tuple[pathlib.Path | None, pathlib.Path | None]:
        try:
            got = controllers_and_path((self._proc / "self" / "cgroup").read_text())
            if got is None:
                return None, None
            controllers, path = got
            mounted = find_mount((self._proc / "self" / "mountinfo").read_text(), controllers)
            if mounted is None and self._may_mount:
                mounted = self._mount(controllers)
            if mounted is None:
                return None, None
            point, root = mounted
            rel = os.path.relpath(path, root) if path.startswith(root) else None
            if rel is None or rel.startswith(".."):
                return None, None
            own = (point / rel).resolve() if rel != "." else point
            return own, point
        except (OSError, ValueError):
            self.errors += 1
            return None, None

    def _mount(self, controllers: str) -> tuple[pathlib.Path, str] | None:
        libc = ctypes.CDLL(None, use_errno=True)
        root = self._mount_root
        point = root / controllers
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        if not point.is_dir():
            with contextlib.suppress(OSError):
                if any(root.iterdir()):
                    return None  # something lives there already; never hide it
            if libc.mount(b"tmpfs", str(root).encode(), b"tmpfs", flags, b"mode=0755") != 0:
                log.warning("healing: cannot mount tmpfs on %s (errno %d)", root, ctypes.get_errno())
                return None
            point.mkdir(exist_ok=True)
        if libc.mount(b"cgroup", str(point).encode(), b"cgroup", flags | MS_RDONLY, controllers.encode()) != 0:
            log.warning("healing: cannot mount the %s hierarchy (errno %d)", controllers, ctypes.get_errno())
            return None
        log.info("healing: mounted the cgroup %s hierarchy at %s", controllers, point)
        return point, "/"

    def limited_group(self) -> pathlib.Path | None:
        """The nearest group from ours up (below the root) with a CPU limit, or None."""
        g, top = self._own, self._top
        for _ in range(MAX_DEPTH):
            if g is None or top is None or g == top or top not in g.parents:
                return None
            try:
                quota = int((g / "cpu.cfs_quota_us").read_text().strip())
            except (OSError, ValueError):
                self.errors += 1
                return None
            if quota > 0:
                return g
            g = g.parent
        return None

    def read(self) -> float | None:
        """The node's CPU pressure now (0..1), or None: keep the host-wide reading."""
        if self.source == "host":
            return None
        group = self.limited_group()
        self.group = group
        if group is None:
            self._prev = None
            return 0.0 if self.source == "cgroup" else None
        try:
            cur = parse_cpu_stat((group / "cpu.stat").read_text())
        except OSError:
            cur = None
        if cur is None:
            self.errors += 1
            return None if self.source == "auto" else 0.0
        prev = self._prev[1] if self._prev is not None and self._prev[0] == group else None
        self._prev = (group, cur)
        share = throttled_share(prev, cur)
        if share is None and self.source == "cgroup":
            return 0.0
        return share
