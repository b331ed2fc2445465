from __future__ import annotations

from x0node.web import view_shapes


def test_core_spellings_are_mapped():
    n = view_shapes.neighbours([{"node_id": "ab", "address": "fe80::1", "quality": "EXCELLENT",
                                 "last_heard_s_ago": 0.2, "state": "up"}, "junk"])
    assert n == [{"node_id": "ab", "address": "fe80::1", "addr": "fe80::1", "quality": "excellent",
                  "last_heard_s_ago": 0.2, "last_seen_s": 0.2, "state": "up"}]
    t = view_shapes.topology({"self": "aa", "nodes": [{"node_id": "aa", "mesh_address": "fd00::1"}, {"node_id": "bb"}],
                              "edges": [{"a": "aa", "b": "bb", "cost": 3, "quality": "WEIRD"}]})
    assert t["nodes"][0]["mesh_addr"] == "fd00::1" and t["nodes"][0]["self"] and not t["nodes"][1]["self"]
    assert t["links"] == [{"a": "aa", "b": "bb", "cost": 3, "quality": "unknown"}]
    assert view_shapes.routes([{"dest": "x/128", "origin": "aa"}])[0]["node_id"] == "aa"
    assert view_shapes.stats({"spf_total_ms": 1500})["spf_seconds_total"] == 1.5
    assert view_shapes.status({"mesh_address": "fd00::1"})["mesh_addr"] == "fd00::1"


def test_documented_keys_win_and_junk_is_harmless():
    assert view_shapes.neighbours([{"addr": "a", "address": "b"}])[0]["addr"] == "a"
    assert view_shapes.topology(None) == {"nodes": [], "links": []}
    assert view_shapes.neighbours(None) == [] and view_shapes.routes("x") == [] and view_shapes.stats(3) == {}
