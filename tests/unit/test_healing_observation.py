from __future__ import annotations

from x0node.healing.observation import (
    MAX_NEIGHBOURS,
    RTT_MAX_MS,
    ParseDrops,
    metrics_from_features,
    routing_from_views,
)


def _views():
    neighbours = [
        {"ifname": "eth1", "node_id": "AB" * 8, "address": "fe80::1", "state": "up", "rtt_ms": 3.5, "loss": 0.02,
         "quality": "GOOD", "cost": 12},
        {"ifname": "eth1", "node_id": "cd" * 8, "address": "fe80::2", "state": "init", "rtt_ms": None, "loss": 7},
    ]
    routes = [{"dest": "fd00::1/128", "ifname": "eth1", "via": "fe80::1", "metric": 12, "origin": "ab" * 8}]
    topology = {"nodes": [{"node_id": "ab" * 8, "mesh_address": "fd00::1", "reachable": True}],
                "edges": [{"a": "ee" * 8, "b": "ab" * 8, "cost": 12}]}
    stats = {"interfaces": {"eth1": {"up": True, "slot": 0}}}
    return neighbours, routes, topology, stats


def test_parses_the_router_views_into_typed_observations():
    obs, drops = routing_from_views("EE" * 8, *_views(), transitions={("eth1", "ab" * 8): 3})
    assert obs.self_id == "ee" * 8 and not drops.counts
    up, init = obs.neighbours
    assert (up.node_id, up.up, up.loss, up.rtt_ms, up.cost, up.transitions) == ("ab" * 8, True, 0.02, 3.5, 12, 3)
    assert init.up is False and init.loss == 1.0  # clamped to a fraction
    assert obs.first_hop(obs.routes[0]) == "ab" * 8
    assert obs.adjacency()["ee" * 8] == {"ab" * 8}
    assert obs.interfaces[0].up and obs.address_of("ab" * 8) == "fd00::1"


def test_bad_entries_are_dropped_and_counted_without_losing_the_rest():
    neighbours, routes, topology, stats = _views()
    neighbours = neighbours + [None, {"ifname": "x" * 100, "node_id": "a"}, {"node_id": 5, "ifname": "e"},
                               {"ifname": "e", "node_id": "ff", "loss": float("nan")}]
    routes = routes + [{"dest": "x"}, "nope"]
    topology = {"nodes": [{"node_id": ""}], "edges": [{"a": "x", "b": "x"}, 3]}
    stats = {"interfaces": {"": {}, "eth2": "up"}}
    obs, drops = routing_from_views("ee", neighbours, routes, topology, stats)
    assert len(obs.neighbours) == 2 and len(obs.routes) == 1 and not obs.nodes and not obs.edges
    assert drops.counts == {"bad_neighbour": 4, "bad_route": 2, "bad_node": 1, "bad_edge": 2, "bad_interface": 2}
    obs, drops = routing_from_views("ee", "not a list", None, None, None)
    assert obs.neighbours == () and drops.counts == {"neighbours_not_a_list": 1}


def test_tables_are_bounded():
    many = [{"ifname": "e", "node_id": f"{i:04x}", "state": "up"} for i in range(MAX_NEIGHBOURS + 10)]
    drops = ParseDrops()
    obs, _ = routing_from_views("ee", many, [], {}, {}, drops=drops)
    assert len(obs.neighbours) == MAX_NEIGHBOURS and drops.counts["neighbours_over_limit"] == 10
    obs, _ = routing_from_views("ee", [{"ifname": "e", "node_id": "ab", "state": "up", "rtt_ms": 1e12}], [], {}, {})
    assert obs.neighbours[0].rtt_ms == RTT_MAX_MS


def test_metrics_from_the_anomaly_feature_vector():
    m = metrics_from_features("AB", {"cpu_util": 0.5, "mem_util": 2.0, "fwd_ratio": "x", "if_errors_per_s": -1}, 7.0)
    assert (m.node_id, m.cpu_util, m.mem_util, m.fwd_ratio, m.if_errors_per_s, m.at_s) == ("ab", 0.5, 1.0, None, None, 7.0)
