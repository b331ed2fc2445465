"""Small hand-made routing views for the healing unit tests: a diamond me - {a, b} - c."""

from __future__ import annotations

from x0node.healing.observation import EdgeObs, InterfaceObs, NeighbourObs, NodeObs, RouteObs, RoutingObs

ME, A, B, C = "aa" * 4, "bb" * 4, "cc" * 4, "dd" * 4


def nbr(node: str, loss: float = 0.0, rtt: float | None = 2.0, up: bool = True, transitions: int = 0,
        ifname: str | None = None, timeouts: int | None = None) -> NeighbourObs:
    return NeighbourObs(node, ifname or f"e{node[:2]}", f"fe80::{node[:2]}", up, loss, rtt, "GOOD", 10, transitions,
                        timeouts=timeouts)


def diamond(via_c: str = A, loss_a: float = 0.0, rtt_a: float | None = 2.0, c_reachable: bool = True,
            up_a: bool = True, transitions_a: int = 0, a_reachable: bool = True,
            timeouts_a: int | None = None) -> RoutingObs:
    """me has neighbours a and b; c sits behind both; our route to c goes via `via_c`."""
    nbrs = (nbr(A, loss_a, rtt_a, up_a, transitions_a, timeouts=timeouts_a), nbr(B))
    nodes = tuple(NodeObs(x, f"fd00::{x[:2]}", (x != C or c_reachable) and (x != A or a_reachable))
                  for x in (ME, A, B, C))
    edges = (EdgeObs(ME, A, 10), EdgeObs(ME, B, 10), EdgeObs(A, C, 10), EdgeObs(B, C, 10))
    routes = (RouteObs(f"fd00::{A[:2]}/128", f"e{A[:2]}", f"fe80::{A[:2]}", 10, A),
              RouteObs(f"fd00::{B[:2]}/128", f"e{B[:2]}", f"fe80::{B[:2]}", 10, B))
    if c_reachable:
        routes += (RouteObs(f"fd00::{C[:2]}/128", f"e{via_c[:2]}", f"fe80::{via_c[:2]}", 20, C),)
    return RoutingObs(ME, nbrs, routes, nodes, edges, (InterfaceObs(f"e{A[:2]}", True), InterfaceObs(f"e{B[:2]}", True)))
