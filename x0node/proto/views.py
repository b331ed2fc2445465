"""Read views of the routing core: neighbours, routes, topology, statistics.

Rules: views are built on request from the core's tables, JSON-ready, and never alias live state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from x0node.proto.identity import mesh_address_of
from x0node.proto.quality import Quality

if TYPE_CHECKING:
    from x0node.proto.router import Router


def neighbours(r: Router, now: float) -> list[dict]:
    return [n.view(now) for _, n in sorted(r.hello.nbrs.items())]


def routes(r: Router) -> list[dict]:
    return [x.view() for _, x in sorted(r.routing.rib.installed.items())]


def topology(r: Router) -> dict:
    nodes = []
    edges = []
    lsas = r.lsdb.lsas()
    reach = r.routing.reach
    for origin, lsa in sorted(lsas.items()):
        nodes.append(
            {
                "node_id": origin.hex(),
                "mesh_address": mesh_address_of(origin),
                "self": origin == r.me,
                "reachable": origin == r.me or origin in reach,
                "prefixes": list(lsa.prefixes),
            }
        )
        for ln in lsa.links:
            other = lsas.get(ln.node_id)
            if other is not None and any(x.node_id == origin for x in other.links) and origin < ln.node_id:
                edges.append(
                    {"a": origin.hex(), "b": ln.node_id.hex(), "cost": ln.cost, "quality": Quality(ln.quality).name}
                )
    return {"self": r.me.hex(), "nodes": nodes, "edges": edges}


def stats(r: Router) -> dict:
    lsas = r.lsdb.lsas()
    links = {o: [(ln.node_id, ln.cost, ln.quality) for ln in lsa.links] for o, lsa in lsas.items()}
    out = r.out
    return {
        "node_id": r.me.hex(),
        "mesh_address": r.identity.mesh_address,
        "interfaces": {k: {"up": i.up, "slot": i.slots.slot} for k, i in r.interfaces.table.items()},
        "neighbours": len(r.hello.nbrs),
        "neighbours_up": len(r.hello.up_neighbours()),
        "lsdb_size": len(r.lsdb),
        "routes": len(r.routing.rib.installed),
        "drops": dict(out.drops),
        "counters": dict(out.counters),
        "spf_runs": out.counters["spf_runs"],
        "spf_last_ms": r.routing.last_ms,
        "spf_total_ms": round(r.routing.total_ms, 3),
        "retransmit_queue": r.flooding.pending_count,
        "topology": r.members.statistics(links),
    }
