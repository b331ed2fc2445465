"""`make demo`: a 5-node mesh (a line, so n1 -> n5 is 4 hops) of x0node daemons in namespaces.

Rules: uses the testbed's default run directory so that `x0node testbed status|fault|down` work on it
afterwards; if a demo mesh is already up it is reported, not duplicated. Leaves the mesh running.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

from x0lab.testbed import measure
from x0lab.testbed.bed import Testbed, TestbedError, up
from x0lab.testbed.cli import DEFAULT_RUN_DIR

TOPOLOGY = "line:5"


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces)", file=sys.stderr)
        return 2
    web = importlib.util.find_spec("x0node.web.service") is not None
    try:
        bed = Testbed.open(DEFAULT_RUN_DIR)
        print(f"a testbed is already up in {DEFAULT_RUN_DIR}; `make demo-down` removes it")
    except TestbedError:
        print(f"starting {TOPOLOGY}: 5 namespaces, 4 veth links, one x0node daemon each ...")
        bed = up(DEFAULT_RUN_DIR, TOPOLOGY, "x0node", web=web)
    took = measure.wait_converged(bed, 30.0)
    if took is None:
        print("routes did not converge within 30 s; see the logs under", DEFAULT_RUN_DIR, file=sys.stderr)
        return 1
    print(f"routes converged (every node routes to every other) {took:.2f} s after the check began\n")
    n1, n5 = bed.nodes[1], bed.nodes[5]
    out = bed.exec(1, "ping", "-6", "-n", "-c", "3", "-i", "0.2", n5.mesh_addr, check=False)
    print(f"$ ip netns exec {n1.ns} ping -6 -c 3 {n5.mesh_addr}   # n1 -> n5, 4 hops")
    print(out.strip())
    ttl = re.search(r"ttl=(\d+)", out)
    if ttl:
        print(f"(reply hop limit {ttl.group(1)} = 64 - {64 - int(ttl.group(1))} forwarding hops)")
    route = bed.exec(1, "ip", "-6", "route", "get", n5.mesh_addr, check=False).strip()
    print(f"\n$ ip netns exec {n1.ns} ip -6 route get {n5.mesh_addr}\n{route}\n")
    print("Look around:")
    print("  x0node testbed status [--json]                 # namespaces, node ids, mesh addresses")
    print(f"  ip netns exec {n1.ns} ip -6 route show table 6464   # our routes (proto 78)")
    print(f"  ip netns exec {n1.ns} ip -6 rule                 # our lookup rule")
    print("  x0node testbed fault link-down 2 3             # or link-silent 2 3 | loss 2 3 20 | congest 2 3 4mbit")
    print("  x0node testbed fault partial-blackhole 3 40    # or hang 3 | kill 3 | cpu-hog 3 | mem-pressure 3")
    print("  x0node testbed heal 2 3 ; x0node testbed heal 3 # (x0node testbed fault --help lists every fault)")
    print(f"  less {n1.data_dir}/x0node.log                # the daemon's log")
    if web and n1.api:
        print(f"  web UI of node 1: {n1.api} (inside the mesh), e.g. from its namespace:")
        print(f"    ip netns exec {n1.ns} chromium --headless ... http://[::1]:8080/  (setup code in "
              f"{n1.data_dir}/web/setup-code)")
    print("  make demo-down                                  # remove everything")
    return 0


if __name__ == "__main__":
    sys.exit(main())
