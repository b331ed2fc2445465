"""`make run`: boot the router image in QEMU joined to a living mesh of x0node neighbours on this host.

    python -m image.run [--board x86_64] [--nodes 5] [--port N] [--run-dir DIR] [--lab-dir DIR] [--fresh] [--alone]

What it builds (all of it removed again on exit):

    n2 ─── n3 ─── n4          n1..nN: x0node daemons in network namespaces (the fault lab's testbed,
    │      ╎      │           lab/x0lab/testbed), joined in a ring by veth pairs
    n1 ─── ╎ ──── n5
     ╲     ╎                  the VM's mesh port (eth1) is a TAP in the testbed's hub namespace,
      └── VM (eth1)           bridged to n1 and n3 (hub.py); its LAN port (eth0) carries the web UI

The VM is the lab unit of `make qemu` (image/qemu.py: provisioned once with a node certificate from
the lab trust anchor build/qemu/lab-anchor.key); the testbed's nodes are certified by the same anchor
(it is copied into the testbed's run directory before the nodes are provisioned), so the VM and its
neighbours accept each other. The run prints the UI's URL, the setup code, the certificate fingerprint
and fault commands (`x0node testbed fault ...`) to watch the mesh reroute and heal in the UI.

Rules: the VM's mesh is one testbed in one run directory (default build/run/mesh); a testbed left there
by a run that was killed outright (SIGKILL) is removed first, from its own record. Ctrl-C, SIGTERM and
SIGHUP end the run: QEMU is stopped by its pid, the daemons by theirs and the namespaces by name
(`Testbed.down`); nothing is created in the host's own network namespace. Without root (namespaces)
or with `--alone` the VM boots alone, as `make qemu` does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import shutil
import sys
import time

from image.board import REPO_ROOT, load_board
from image.qemu import (
    LAB_DIR,
    LAB_HELLO_MISSED_DEAD,
    VM,
    TapLink,
    ignore_signals,
    image_path,
    lab_unit,
    stop_on_signals,
    wait_announce,
)

DEFAULT_RUN_DIR = REPO_ROOT / "build" / "run" / "mesh"
DEFAULT_NODES = 5
MIN_NODES = 3
MAX_NODES = 16
VM_MESH_MAC = "52:54:00:78:00:01"
# Bounds on waiting, not expectations: a quiet host boots in about a minute, but under TCG on a busy
# shared host the certificate alone has taken over 5 minutes.
BOOT_WAIT_S = 1800.0  # for the certificate, then for the daemon's ready line
MESH_WAIT_S = 600.0   # for every neighbour to route to the VM
POLL_S = 1.0



def attach_points(nodes: int) -> list[int]:
    """The ring nodes bridged to the VM: two that are not adjacent where the ring allows it, so faults
    on the ring move the VM's routes from one to the other."""
    return [1, 3] if nodes >= 4 else [1, 2]


def fault_examples(nodes: int) -> list[tuple[str, str]]:
    """(testbed arguments, what the UI shows) for a ring of `nodes` with the VM on attach_points."""
    a, b = attach_points(nodes)
    far = b + 1  # a ring neighbour of b that is not attached
    return [
        (f"fault link-down {b} {far}", f"the router's route to n{far}, when it goes through n{b} (the shorter way), "
                                       f"moves to n{a} (Routes, Topology)"),
        (f"fault hang {b}", f"neighbour n{b} stops answering: it goes down on the dashboard and traffic "
                            f"reroutes through n{a}; Incidents records it; `heal {b}` resumes it"),
        (f"fault loss {a} {nodes} 40", f"40 % loss on the link n{a}-n{nodes}: its quality and cost change"),
    ]


def x0node_command(run_dir: pathlib.Path) -> str:
    """How the user calls the testbed CLI of this tree on this run directory (copy-pasteable)."""
    exe = pathlib.Path(sys.executable).parent / "x0node"
    if not exe.exists():
        exe = pathlib.Path(shutil.which("x0node") or "x0node")
    try:
        shown = str(exe.relative_to(pathlib.Path.cwd()))
    except ValueError:
        shown = str(exe)
    return f"{shlex.quote(shown)} testbed --run-dir {shlex.quote(str(run_dir))}"


def _clear_stale(run_dir: pathlib.Path) -> None:
    from x0lab.testbed.bed import Testbed

    if (run_dir / "state.json").exists():
        print(f"removing the mesh a previous run left in {run_dir}", flush=True)
        Testbed.open(run_dir).down()


def start_mesh(run_dir: pathlib.Path, nodes: int, anchor: pathlib.Path):  # type: ignore[no-untyped-def]
    """The testbed (daemons not yet started) and the TAP descriptor of the VM's mesh port."""
    from x0lab.testbed import hub
    from x0lab.testbed.bed import Testbed
    from x0lab.testbed.provision import ANCHOR_FILE

    _clear_stale(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(anchor, run_dir / ANCHOR_FILE)  # the VM's anchor certifies the neighbours too
    os.chmod(run_dir / ANCHOR_FILE, 0o600)
    # The VM is emulated (TCG): its keepalives reach the neighbours up to a second late on a busy host,
    # and the default 0.25 s dead interval would flap their adjacencies to it. The neighbours get the
    # lab unit's own setting (1.05 s), which keeps the demo mesh steady; failures still show within
    # about a second.
    bed = Testbed.create(run_dir, f"ring:{nodes}", "x0node", routing={"hello_missed_dead": LAB_HELLO_MISSED_DEAD})
    try:
        fd = hub.attach(bed, attach_points(nodes))
    except BaseException:
        bed.down()
        raise
    return bed, fd


def wait_mesh(bed, vm: VM, mesh_addr: str, t0: float) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds from `t0` until every neighbour routes to the VM (None if not within MESH_WAIT_S)."""
    deadline = time.monotonic() + MESH_WAIT_S
    while time.monotonic() < deadline and vm.running():
        if all(any(r.get("dst") == mesh_addr for r in bed.routes(k)) for k in bed.nodes if bed.alive(k)):
            return time.monotonic() - t0
        time.sleep(POLL_S)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.run", description=__doc__.split("\n")[0])
    parser.add_argument("--board", default="x86_64")
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES,
                        help=f"x0node neighbours on the host ({MIN_NODES}..{MAX_NODES}, default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="host port for the web UI's HTTPS (default: a free one)")
    parser.add_argument("--run-dir", type=pathlib.Path, default=DEFAULT_RUN_DIR,
                        help="the neighbours' testbed: state, node data, logs (default %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="start from the pristine image (new node key)")
    parser.add_argument("--lab-dir", type=pathlib.Path, default=LAB_DIR,
                        help="the VM's disk and the lab trust anchor (default %(default)s, shared with make qemu)")
    parser.add_argument("--alone", action="store_true", help="boot the VM without neighbours")
    args = parser.parse_args(argv)
    if not MIN_NODES <= args.nodes <= MAX_NODES:
        parser.error(f"--nodes must be between {MIN_NODES} and {MAX_NODES}")
    t0 = time.monotonic()
    stop_on_signals()
    board = load_board(args.board)
    disk, anchor = lab_unit(board, args.fresh, args.lab_dir.resolve())
    mesh = not args.alone
    if mesh and os.geteuid() != 0:
        print("not root: no network namespaces, so the VM boots without neighbours", file=sys.stderr, flush=True)
        mesh = False
    run_dir = args.run_dir.resolve()
    bed = vm = None
    fd: int | None = None
    try:
        taps = []
        if mesh:
            bed, fd = start_mesh(run_dir, args.nodes, anchor)
            taps = [TapLink(fd, VM_MESH_MAC)]
        vm = VM(board=board, disk=disk, vmdir=disk.parent, web_port=args.port, tap_links=taps)
        vm.start()
        if fd is not None:
            os.close(fd)  # QEMU holds it now; the TAP lives as long as the VM
            fd = None
        print(f"{board.name}: booting {image_path(board).name} under TCG (pid {vm.proc.pid if vm.proc else '-'}); "
              f"serial log {vm.serial_log}", flush=True)
        if bed is not None:
            bed.start_all()
            a, b = attach_points(args.nodes)
            print(f"mesh: {args.nodes} x0node neighbours in namespaces {bed.id}-n1..n{args.nodes} (a ring), "
                  f"n{a} and n{b} on the router's mesh port eth1; run directory {run_dir}", flush=True)
        print(f"web UI (once x0node is ready): {vm.url}", flush=True)
        try:
            ready = wait_announce(vm, BOOT_WAIT_S)
            if bed is not None:
                took = wait_mesh(bed, vm, ready.mesh_addr, t0)
                if took is None:
                    print(f"warning: the neighbours do not all route to the router after {MESH_WAIT_S:.0f} s; "
                          f"logs under {run_dir}", file=sys.stderr, flush=True)
                else:
                    print(f"mesh up: all {args.nodes} neighbours route to the router, {took:.0f} s after start",
                          flush=True)
                cli = x0node_command(run_dir)
                print("inject a fault and watch the UI (heal with `... heal A B` or `... heal A`):", flush=True)
                for words, what in fault_examples(args.nodes):
                    print(f"  {cli} {words}\n      # {what}", flush=True)
                print(f"  {cli} status", flush=True)
            print("Ctrl-C (or SIGTERM) stops the VM and removes the mesh", flush=True)
        except TimeoutError as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)
        while vm.running():
            time.sleep(POLL_S)
        print(f"QEMU exited (rc={vm.proc.returncode if vm.proc else None}); see {vm.vmdir}", file=sys.stderr,
              flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        ignore_signals()
        if vm is not None:
            vm.stop()
        if fd is not None:
            os.close(fd)
        if bed is not None:
            bed.reload()  # faults and restarts made from the command line meanwhile
            bed.down()
            print("stopped: VM, neighbours and their namespaces removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
