"""Per-node control groups (cgroup v1 `cpu`, `memory`, and `cpuacct` where mounted) for the testbed's
daemons and fault processes.

Rules and invariants:
- A testbed's groups live under the creating process's own group in each hierarchy (read from
  /proc/self/cgroup), never at a hierarchy's root: limits set above us still apply, and nothing
  outside our subtree is touched. Layout per controller: `<own>/x0tb-<testbed id>/n<k>/{daemon,hog}`;
  the node group `n<k>` carries the fault limits (CPU quota, memory limit), so both its children are
  bound by them, and the shares between `daemon` and `hog` decide who gets the CPU inside.
- A process enters its groups before it runs anything of its own: `wrap()` prefixes a command with a
  shell that writes its own pid into each group's `cgroup.procs` and then execs the command, so the
  pid (and the memory it allocates) belongs to the groups from the first instruction.
- Every directory is recorded by the caller before it is created (`plan()` lists them in creation
  order); `remove()` kills whatever still runs in a group (it can only be ours) and removes the groups
  deepest first. Values written are bounded and checked by the kernel; a missing hierarchy (a
  cgroup-v2-only host) makes `available()` false, and the testbed then runs daemons without groups.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import signal
import time

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")
OPTIONAL_CONTROLLERS = ("cpuacct",)
"""Joined when mounted: `cpuacct` lets a daemon read its node's own CPU use (`[anomaly] cgroup`)."""
LEAVES = ("daemon", "hog")
CPU_PERIOD_US = 100_000
UNLIMITED_QUOTA = -1
MEMORY_UNLIMITED = "-1"  # memory.limit_in_bytes accepts -1 for "no limit"
REMOVE_TIMEOUT_S = 5.0


def own_group(controller: str, proc_cgroup: str | None = None) -> pathlib.Path | None:
    """This process's group directory in the v1 hierarchy of `controller` (None when not mounted)."""
    text = proc_cgroup if proc_cgroup is not None else pathlib.Path("/proc/self/cgroup").read_text()
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or controller not in parts[1].split(","):
            continue
        mount = CGROUP_ROOT / parts[1]
        if not (mount / "cgroup.procs").exists():
            return None
        return mount / parts[2].lstrip("/")
    return None


def available() -> bool:
    return all(own_group(c) is not None for c in CONTROLLERS)


def plan(testbed_id: str, node: int) -> dict[str, dict[str, pathlib.Path]]:
    """{controller: {"node": dir, "daemon": dir, "hog": dir}} for node k (not created here)."""
    out: dict[str, dict[str, pathlib.Path]] = {}
    for controller in CONTROLLERS + OPTIONAL_CONTROLLERS:
        base = own_group(controller)
        if base is None and controller in OPTIONAL_CONTROLLERS:
            continue
        if base is None:
            raise OSError(f"cgroup v1 controller {controller!r} is not mounted")
        node_dir = base / f"x0tb-{testbed_id}" / f"n{node}"
        out[controller] = {"node": node_dir, **{leaf: node_dir / leaf for leaf in LEAVES}}
    return out


def create(path: pathlib.Path) -> None:
    path.mkdir(exist_ok=True)


def write(path: pathlib.Path, name: str, value: str | int) -> None:
    (path / name).write_text(f"{value}\n")


def read(path: pathlib.Path, name: str) -> str:
    return (path / name).read_text().strip()


def read_int(path: pathlib.Path, name: str) -> int:
    return int(read(path, name))


def procs(path: pathlib.Path) -> list[int]:
    try:
        return [int(x) for x in read(path, "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def stat(path: pathlib.Path, name: str) -> dict[str, int]:
    """A `key value` per line file (cpu.stat, memory.stat) as a dict."""
    out = {}
    for line in read(path, name).splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def wrap(groups: list[pathlib.Path], cmd: list[str]) -> list[str]:
    """`cmd` run by a shell that first moves itself into every group, then execs (same pid)."""
    moves = "".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))} && " for g in groups)
    return ["sh", "-c", moves + 'exec "$@"', "x0tb-cgroup", *cmd]


MOUNT_SCRIPT = (
    'if [ ! -e /sys/fs/cgroup/cgroup.procs ] && [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then '
    'mount -t tmpfs -o size=64k,mode=755 x0tb-cgroup /sys/fs/cgroup && '
    'for c in $X0TB_CGROUPS; do mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"; done; '
    'fi; exec "$@"'
)


def mount_inside(cmd: list[str]) -> list[str]:
    """`cmd` run (inside `ip netns exec`, which remounts /sys in a private mount namespace) by a shell
    that first mounts our v1 hierarchies again under the fresh /sys/fs/cgroup, so the daemon can read
    its own groups (`[anomaly] cgroup`); only in that private namespace, and only where /sys/fs/cgroup
    is an empty directory. A failed mount leaves the daemon on host-wide figures, nothing else."""
    names = []
    for controller in CONTROLLERS + OPTIONAL_CONTROLLERS:
        group = own_group(controller)
        if group is not None:
            names.append(group.relative_to(CGROUP_ROOT).parts[0])
    hier = " ".join(sorted(set(names)))
    return ["env", f"X0TB_CGROUPS={hier}", "sh", "-c", MOUNT_SCRIPT, "x0tb-cgmount", *cmd]


def set_cpu_cap(node_dir: pathlib.Path, percent_of_one_cpu: float | None) -> None:
    """Cap the node's group at a share of one CPU (None: no cap)."""
    if percent_of_one_cpu is None:
        write(node_dir, "cpu.cfs_quota_us", UNLIMITED_QUOTA)
        return
    write(node_dir, "cpu.cfs_period_us", CPU_PERIOD_US)
    write(node_dir, "cpu.cfs_quota_us", max(1000, int(CPU_PERIOD_US * percent_of_one_cpu / 100)))


def set_memory_limit(node_dir: pathlib.Path, limit_bytes: int | None) -> None:
    write(node_dir, "memory.limit_in_bytes", MEMORY_UNLIMITED if limit_bytes is None else limit_bytes)


def remove(dirs: list[str]) -> list[str]:
    """Kill every process left in the groups, remove them deepest first; returns what could not go."""
    paths = sorted({pathlib.Path(d) for d in dirs}, key=lambda p: len(p.parts), reverse=True)
    for path in paths:
        for pid in procs(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # also ends a stopped process
    left = []
    for path in paths:
        if not path.exists():
            continue
        deadline = time.monotonic() + REMOVE_TIMEOUT_S
        while True:
            try:
                path.rmdir()
                break
            except OSError:  # EBUSY while a killed process is still exiting
                if time.monotonic() > deadline:
                    left.append(str(path))
                    break
                time.sleep(0.02)
    return left
