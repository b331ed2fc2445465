from __future__ import annotations

import dataclasses

from x0node.healing.observation import (
    MAX_NEIGHBOURS,
    RTT_MAX_MS,
    ParseDrops,
    metrics_from_features,
    routing_from_views,
)
from x0node.proto.views import (
    DropsView,
    InterfaceView,
    LinkView,
    NeighbourView,
    NodeView,
    RouteView,
    StatsView,
    TopologyView,
)

AB, CD, EE = "ab" * 8, "cd" * 8, "ee" * 8


def nbr(node_id=AB, state="up", loss=0.02, rtt=3.5, ifname="eth1", addr="fe80::1") -> NeighbourView:
    return NeighbourView(node_id, ifname, addr, state, rtt, loss, None, "good", 12, 0.1, 5.0)


def node(node_id, reachable=True) -> NodeView:
    return NodeView(node_id, f"fd00::{node_id[:2]}", node_id == EE, reachable, (), None, None, None)


def stats(*ifaces: InterfaceView) -> StatsView:
    return StatsView(EE, "fd00::ee", ifaces, 1, 1, 1, 1, DropsView({}, {}), {}, 0, None, 0.0, 0, {}, {})


def views():
    neighbours = (nbr(), nbr(CD, state="init", loss=7, rtt=None, addr="fe80::2"))
    routes = (RouteView("fd00::1/128", "fe80::1", "eth1", 12, AB),)
    topology = TopologyView((node(AB), node(EE)), (LinkView(AB, EE, 12, "good"),))
    return neighbours, routes, topology, stats(InterfaceView("eth1", True, 0))


def test_maps_the_core_read_model_onto_typed_observations():
    obs, drops = routing_from_views(EE.upper(), *views(), transitions={("eth1", AB): 3})
    assert obs.self_id == EE and not drops.counts
    up, init = obs.neighbours
    assert (up.node_id, up.up, up.loss, up.rtt_ms, up.cost, up.transitions, up.address) == (
        AB, True, 0.02, 3.5, 12, 3, "fe80::1")
    assert init.up is False and init.loss == 1.0  # clamped to a fraction
    assert obs.first_hop(obs.routes[0]) == AB and obs.routes[0].origin == AB
    assert obs.adjacency()[EE] == {AB}
    assert obs.interfaces[0].up and obs.address_of(AB) == "fd00::ab"


def test_the_json_form_of_the_views_reads_the_same():
    n, r, t, s = views()
    as_json = ([dataclasses.asdict(x) for x in n], [dataclasses.asdict(x) for x in r], dataclasses.asdict(t),
               dataclasses.asdict(s))
    assert routing_from_views(EE, *as_json)[0] == routing_from_views(EE, n, r, t, s)[0]


def test_bad_entries_are_dropped_and_counted_without_losing_the_rest():
    n, r, t, s = views()
    neighbours = n + (None, nbr("x" * 200), nbr(ifname=""), nbr("ff", loss=float("nan")))
    routes = r + ({"dest": "x"}, "nope")
    topology = {"nodes": [{"node_id": ""}], "links": [{"a": "x", "b": "x"}, 3]}
    bad_stats = {"interfaces": [{"name": ""}, "eth2"]}
    obs, drops = routing_from_views(EE, neighbours, routes, topology, bad_stats)
    assert len(obs.neighbours) == 2 and len(obs.routes) == 1 and not obs.nodes and not obs.edges
    assert drops.counts == {"bad_neighbour": 4, "bad_route": 2, "bad_node": 1, "bad_edge": 2, "bad_interface": 2}
    obs, drops = routing_from_views(EE, "not a list", None, None, None)
    assert obs.neighbours == () and drops.counts == {"neighbours_not_a_list": 1}


def test_tables_are_bounded():
    many = tuple(nbr(f"{i:04x}") for i in range(MAX_NEIGHBOURS + 10))
    drops = ParseDrops()
    obs, _ = routing_from_views(EE, many, (), None, None, drops=drops)
    assert len(obs.neighbours) == MAX_NEIGHBOURS and drops.counts["neighbours_over_limit"] == 10
    obs, _ = routing_from_views(EE, (nbr(rtt=1e12),), (), None, None)
    assert obs.neighbours[0].rtt_ms == RTT_MAX_MS


def test_metrics_from_the_anomaly_feature_vector():
    m = metrics_from_features("AB", {"cpu_util": 0.5, "mem_util": 2.0, "fwd_ratio": "x", "if_errors_per_s": -1}, 7.0)
    assert (m.node_id, m.cpu_util, m.mem_util, m.fwd_ratio, m.if_errors_per_s, m.at_s) == ("ab", 0.5, 1.0, None, None, 7.0)
