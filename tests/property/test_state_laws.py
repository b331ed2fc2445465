"""Hypothesis: the CRDT laws (merge commutative, associative, idempotent) for every type in
x0node/state/crdt.py, and convergence of random replicas under any delivery order, duplication and
loss, both for the bare types and for the gossip protocol on a lossy simulated mesh."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim.state_mesh import StateSim, random_links
from x0node.state.crdt import GCounter, Hlc, LWWMap, LWWRegister, ORSet, PNCounter

ORIGINS = [bytes([i]) * 16 for i in range(4)]
origin = st.sampled_from(ORIGINS)


def _ops_to_replica(kind: str, ops: list[tuple]):
    """Apply ops as each origin would (origin-local versions from an HLC), returning per-origin states."""
    hlc = Hlc()
    if kind == "g":
        out = GCounter()
        for o, n in ops:
            out.increment(o, n)
        return out
    if kind == "pn":
        out = PNCounter()
        for o, n in ops:
            out.increment(o, n)
        return out
    if kind == "lww":
        out = LWWMap()
        for o, k, v in ops:
            out.set(k, hlc.now(1000), o, v)
        return out
    out = ORSet()
    for o, e, add in ops:
        (out.add if add else out.remove)(e, o, hlc.now(1000))
    return out


g_ops = st.lists(st.tuples(origin, st.integers(0, 5)), max_size=8)
pn_ops = st.lists(st.tuples(origin, st.integers(-5, 5)), max_size=8)
lww_ops = st.lists(st.tuples(origin, st.sampled_from("abc"), st.one_of(st.none(), st.integers(0, 3))), max_size=8)
or_ops = st.lists(st.tuples(origin, st.sampled_from("xyz"), st.booleans()), max_size=8)
STRATS = {"g": g_ops, "pn": pn_ops, "lww": lww_ops, "or": or_ops}


def _state(kind: str, x):
    if kind == "g":
        return x.counts
    if kind == "pn":
        return (x.p.counts, x.n.counts)
    if kind == "lww":
        return x.regs
    return x.elems


def _laws(kind: str, a_ops, b_ops, c_ops) -> None:
    a, b, c = (_ops_to_replica(kind, o) for o in (a_ops, b_ops, c_ops))
    assert _state(kind, a.merge(b)) == _state(kind, b.merge(a))
    assert _state(kind, a.merge(b).merge(c)) == _state(kind, a.merge(b.merge(c)))
    assert _state(kind, a.merge(a)) == _state(kind, a)
    assert a.merge(b).value == b.merge(a).value


@given(g_ops, g_ops, g_ops)
def test_gcounter_laws(a, b, c):
    _laws("g", a, b, c)


@given(pn_ops, pn_ops, pn_ops)
def test_pncounter_laws(a, b, c):
    _laws("pn", a, b, c)


@given(lww_ops, lww_ops, lww_ops)
def test_lww_map_laws(a, b, c):
    _laws("lww", a, b, c)


@given(or_ops, or_ops, or_ops)
def test_orset_laws(a, b, c):
    _laws("or", a, b, c)


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 100))
def test_lww_register_laws(v1, v2, n):
    a = LWWRegister((v1, ORIGINS[0]), n)
    b = LWWRegister((v2, ORIGINS[1]), n + 1)
    assert a.merge(b) == b.merge(a) and a.merge(a) == a


@given(st.lists(st.integers(0, 10**6), max_size=20), st.lists(st.integers(0, 2**50), max_size=5))
def test_hlc_monotonic(walls, remotes):
    h = Hlc()
    last = 0
    for i, w in enumerate(walls):
        if i < len(remotes):
            h.observe(remotes[i])
        t = h.now(w)
        assert t > last and t >= w << 16
        if i < len(remotes):
            assert t > remotes[i]
        last = t


def test_orset_add_wins_over_concurrent_remove():
    a, b = ORSet(), ORSet()
    a.add("e", ORIGINS[0], 10)
    b = b.merge(a)
    b.remove("e", ORIGINS[1], 20)  # observed a's add
    a.add("e", ORIGINS[0], 30)  # concurrent re-add, unseen by b's remove
    assert a.merge(b).contains("e") and b.merge(a).contains("e")
    c = a.merge(b)
    c.remove("e", ORIGINS[2], 40)
    assert not c.contains("e")


# --- replicas of random updates converge under any order, duplication and loss (bare types) ---------------

@given(or_ops, st.randoms(use_true_random=False), st.integers(0, 3))
def test_orset_any_delivery_order_converges(ops, rnd, dups):
    # every origin's update as its own delta (one origin's contribution), delivered in any order, some
    # twice, some lost and re-sent later (anti-entropy): the replicas end equal
    deltas = []
    full = ORSet()
    hlc = Hlc()
    for o, e, add in ops:
        (full.add if add else full.remove)(e, o, hlc.now(1000))
        deltas.append(ORSet({e: {o: full.elems[e][o]}}))
    replicas = [ORSet(), ORSet()]
    for r in replicas:
        order = deltas + [rnd.choice(deltas) for _ in range(dups)] if deltas else []
        rnd.shuffle(order)
        lost = set(rnd.sample(range(len(order)), k=len(order) // 3)) if order else set()
        for i, d in enumerate(order):
            if i not in lost:
                r.elems = r.merge(d).elems
        for i in sorted(lost):  # repair
            r.elems = r.merge(order[i]).elems
    assert replicas[0].value == replicas[1].value


# --- the protocol: random writes on random replicas converge on a lossy, duplicating, reordering mesh ------

@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.0, 0.4), st.floats(0.0, 0.2),
       st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["kv", "g.c", "pn.c", "set.s"]), st.integers(0, 4)),
                min_size=1, max_size=25))
def test_gossip_replicas_converge(seed, loss, dup, writes):
    sim = StateSim(10, random_links(10, seed), seed=seed, loss=loss, dup=dup, lat_min_s=0.0005, lat_max_s=0.02)
    sim.run_for(0.5)
    for node, ns, x in writes:
        kw: dict = {"kv": {"value": str(x).encode()}, "g.c": {"incr": x}, "pn.c": {"incr": x - 2},
                    "set.s": {"add": x % 2 == 0}}[ns]
        sim.write(node, ns, f"k{x}", **kw)
        sim.run_for(sim.rng.uniform(0.0, 0.05))
    assert sim.run_until_converged(60.0) is not None
    views = [n.gossip.store.objects() for n in sim.nodes]
    assert all(v == views[0] for v in views)
    # every acknowledged write is present: each node's own last counter/LWW contribution is held everywhere
    for n in sim.nodes:
        for rec in n.gossip.store.records(n.gossip.me):
            assert all(m.gossip.store.get(rec.origin, rec.oid) == rec for m in sim.nodes)
