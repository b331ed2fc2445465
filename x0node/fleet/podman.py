"""How a container node is run with podman: one place for the flags and the reason for each.

Rules and invariants:
- The node joins an existing network namespace (`--network ns:/run/netns/NAME`): that namespace holds
  its mesh interfaces, exactly as a namespace node's daemon has them. It gets CAP_NET_ADMIN (routes,
  addresses) and CAP_NET_RAW (ICMPv6 probes), and /proc/sys unmasked for the forwarding sysctls of its
  own namespace; nothing else of the host.
- The config and data directory are bind-mounted at the same paths they have on the host, so a config
  written for a namespace node runs unchanged in the container (key, certificate and anchor included).
- runc with the cgroupfs manager, and rlimits no higher than this host's hard limits: crun refuses hosts
  with cgroup v1 and an empty cgroup v2 mount ("hybrid"), and podman's default rlimits for root
  (1048576 files, 32768 processes) are refused where the host caps them lower.
- Container names carry the caller's pid so parallel runs never collide; `remove` is by that name.
"""

from __future__ import annotations

import pathlib
import resource
import subprocess  # podman with argv lists built here, never a shell # nosec B404

RUNTIME = "runc"
NOFILE_WANTED = 65536
NPROC_WANTED = 4096


def _limit(which: int, wanted: int) -> int:
    hard = resource.getrlimit(which)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def base() -> list[str]:
    return ["podman", "--runtime", RUNTIME, "--cgroup-manager", "cgroupfs"]


def pull(layout: pathlib.Path, tag: str) -> str:
    """Import an OCI layout's tag into podman's storage; returns the image id."""
    out = subprocess.run([*base(), "pull", "-q", f"oci:{layout}:{tag}"], capture_output=True, text=True,  # argv list, no shell # nosec B603
                         check=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


def run_node(image: str, name: str, netns: str, config: pathlib.Path, data_dir: pathlib.Path) -> list[str]:
    """The `podman run` command line of a detached container node in namespace `netns`."""
    nofile = _limit(resource.RLIMIT_NOFILE, NOFILE_WANTED)
    nproc = _limit(resource.RLIMIT_NPROC, NPROC_WANTED)
    mounts = {str(data_dir), str(config.parent)}
    cmd = [*base(), "run", "-d", "--name", name, "--network", f"ns:/run/netns/{netns}",
           "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--security-opt", "unmask=/proc/sys",
           "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
    for m in sorted(mounts):
        cmd += ["-v", f"{m}:{m}"]
    return [*cmd, image, "run", "--config", str(config)]


def logs(name: str) -> str:
    out = subprocess.run([*base(), "logs", name], capture_output=True, text=True, timeout=60)  # argv list, no shell # nosec B603
    return out.stdout + out.stderr


def remove(name: str) -> None:
    subprocess.run([*base(), "rm", "-f", "-t", "5", name], capture_output=True, timeout=120)  # argv list, no shell # nosec B603
