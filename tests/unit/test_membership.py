from x0node.proto.membership import Membership

A, B = b"\x01" * 16, b"\x02" * 16


def test_lifecycle_and_pruning():
    mm = Membership(dead_node_timeout_s=60)
    assert mm.register(A, 1, 0.0) and not mm.register(A, 1, 1.0)
    mm.register(B, 2, 0.0)
    mm.update_reachability({A: (100, 1), B: (200, 2)}, 1.0)
    assert mm.nodes[A].reachable
    mm.update_reachability({A: (100, 1)}, 2.0)
    assert not mm.nodes[B].reachable
    assert mm.prune_due(61.0) == [] and mm.prune_due(62.0) == [B]
    assert mm.next_prune() == 62.0
    assert mm.leave(B) and not mm.leave(B)
    assert (mm.joins, mm.leaves) == (2, 1)


def test_statistics_two_way_links():
    mm = Membership()
    mm.register(A, 1, 0.0)
    mm.update_reachability({A: (100, 1)}, 0.0)
    st = mm.statistics({A: [(B, 100, 0)], B: [(A, 110, 1)], b"\x03" * 16: [(A, 5, 0)]})
    assert st["links"] == 1 and st["quality_histogram"] == {0: 1} and st["max_hops"] == 1


def test_bounded():
    mm = Membership(max_nodes=1)
    assert mm.register(A, 1, 0.0)
    assert not mm.register(B, 1, 0.0)
