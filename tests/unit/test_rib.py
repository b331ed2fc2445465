from x0node.proto.rib import ROUTE_RETRY_S, Rib, Route, RouteResult


def _apply(rib, changes, now=0.0, refuse=()):
    for ch in changes:
        rib.result(RouteResult(ch, "enetunreach" if ch.dest in refuse else None), now)


def test_diff_add_replace_metric_del():
    rib = Rib()
    r1 = Route("fd00::1/128", "m0", "fe80::1", 100, "aa")
    r2 = Route("fd00::2/128", "m0", "fe80::1", 200, "bb")
    ch = rib.diff({r1.dest: r1, r2.dest: r2})
    assert [(c.op, c.dest) for c in ch] == [("add", "fd00::1/128"), ("add", "fd00::2/128")]
    assert rib.installed == {}  # nothing claimed before the table confirms it
    _apply(rib, ch)
    assert rib.installed == {r1.dest: r1, r2.dest: r2}
    assert rib.diff({r1.dest: r1, r2.dest: r2}) == []
    r1m = Route("fd00::1/128", "m0", "fe80::1", 150, "aa")
    r2b = Route("fd00::2/128", "m1", "fe80::9", 300, "bb")
    ch = rib.diff({r1m.dest: r1m, r2b.dest: r2b})
    assert [(c.op, c.dest, c.ifname) for c in ch] == [("metric", "fd00::1/128", "m0"), ("replace", "fd00::2/128", "m1")]
    _apply(rib, ch)
    ch = rib.diff({r2b.dest: r2b})
    assert [(c.op, c.dest) for c in ch] == [("del", "fd00::1/128")]
    _apply(rib, ch)
    assert rib.installed == {r2b.dest: r2b}
    _apply(rib, rib.withdraw_all())
    assert rib.installed == {}


def test_refused_route_is_not_claimed_counted_and_retried_later():
    rib = Rib()
    r1 = Route("fd00::1/128", "m0", "fe80::1", 100)
    r2 = Route("fd00::2/128", "m0", "fe80::1", 100)
    ch = rib.diff({r1.dest: r1, r2.dest: r2}, now=1.0)
    _apply(rib, ch, 1.0, refuse={r1.dest})
    assert rib.installed == {r2.dest: r2} and rib.refusals == {"enetunreach": 1}
    assert rib.next_retry() == 1.0 + ROUTE_RETRY_S
    assert rib.diff({r1.dest: r1, r2.dest: r2}, now=2.0) == []  # not hammered
    moved = Route("fd00::1/128", "m1", "fe80::7", 100)
    assert [c.op for c in rib.diff({moved.dest: moved, r2.dest: r2}, now=2.0)] == ["add"]  # other next hop: asked
    rib2 = Rib()
    _apply(rib2, rib2.diff({r1.dest: r1}, now=0.0), 0.0, refuse={r1.dest})
    assert [c.op for c in rib2.diff({r1.dest: r1}, now=ROUTE_RETRY_S)] == ["add"]  # retried after the hold


def test_refused_delete_keeps_the_route_claimed_and_asks_again():
    rib = Rib()
    r1 = Route("fd00::1/128", "m0", "fe80::1", 100)
    _apply(rib, rib.diff({r1.dest: r1}))
    ch = rib.diff({})
    _apply(rib, ch, refuse={r1.dest})
    assert rib.installed == {r1.dest: r1}  # still in the table
    assert [c.op for c in rib.diff({})] == ["del"]
