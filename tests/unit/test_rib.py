from x0node.proto.rib import Rib, Route


def test_diff_add_replace_del():
    rib = Rib()
    r1 = Route("fd00::1/128", "m0", "fe80::1", 100)
    r2 = Route("fd00::2/128", "m0", "fe80::1", 200)
    ch = rib.diff({r1.dest: r1, r2.dest: r2})
    assert [(c.op, c.dest) for c in ch] == [("add", "fd00::1/128"), ("add", "fd00::2/128")]
    assert rib.diff({r1.dest: r1, r2.dest: r2}) == []
    r2b = Route("fd00::2/128", "m1", "fe80::9", 300)
    ch = rib.diff({r2b.dest: r2b})
    assert [(c.op, c.dest, c.ifname) for c in ch] == [
        ("del", "fd00::1/128", "m0"),
        ("replace", "fd00::2/128", "m1"),
    ]
    assert [c.op for c in rib.withdraw_all()] == ["del"]
    assert rib.installed == {}
