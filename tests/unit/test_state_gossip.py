"""The gossip core on a small simulated mesh: authentication, refusals by reason, scopes, TTLs, rebuild."""

from __future__ import annotations

import random

import pytest

from tests.sim.state_mesh import StateSim
from x0node.proto.identity import Identity
from x0node.proto.protocol import SIGNATURE_BYTES
from x0node.proto.trust import Credential, TrustAnchor, TrustStore
from x0node.proto.wire import DecodeError, Reader
from x0node.state import revocations
from x0node.state.gossip import (
    CATCHUP_RESENDS,
    CATCHUP_RETRY_S,
    F_CRED,
    F_WANT_CRED,
    HEADER_BYTES,
    MSG_VERSION,
    T_DELTA,
    T_VECTOR,
    Gossip,
    Neighbour,
)
from x0node.state.record import Kind, Record, Scope, encode_lww


def line3(**kw) -> StateSim:
    sim = StateSim(3, [(0, 1), (1, 2)], seed=5, **kw)
    sim.run_for(0.5)
    return sim


def signed(ident: Identity, ns: str, key: str, value: bytes, version: int, scope: Scope = Scope.MESH,
           ttl: int = 0) -> Record:
    r = Record(ident.node_id, version, scope, Kind.LWW, ttl, ns, key, encode_lww(value))
    return Record(*[getattr(r, f) for f in ("origin", "version", "scope", "kind", "ttl_s", "ns", "key", "payload")],
                  ident.sign(r.signed_message()))


def test_write_reaches_every_node():
    sim = line3()
    sim.write(0, "kv", "a", value=b"1")
    assert sim.run_until_converged(2.0) is not None
    assert sim.nodes[2].gossip.store.entry("kv", "a")["value"] == 1


def test_uncertified_origin_changes_nothing_and_is_counted():
    sim = line3()
    before = sim.nodes[2].gossip.store.digest()
    rogue = Identity.from_seed(b"\x09" * 32).with_certificate(TrustAnchor.from_seed(b"\x08" * 32).certify(
        Identity.from_seed(b"\x09" * 32).public_key))
    r = signed(rogue, "kv", "evil", b"1", 1 << 40)
    # node 1 (certified) carries the rogue record to node 2
    g1 = sim.nodes[1].gossip
    g1.store.put(r, Credential(rogue.public_key, rogue.certificate))
    g1._push([r], None, sim.now)
    sim._flush(1)
    sim.run_for(0.2)
    g2 = sim.nodes[2].gossip
    assert g2.refused["uncertified"] >= 1 and g2.store.get(rogue.node_id, ("kv", "evil")) is None
    assert g2.store.digest() == before


def test_forged_record_signature_is_refused():
    sim = line3()
    g1 = sim.nodes[1].gossip
    ident0 = sim.nodes[0].gossip.identity
    good = signed(ident0, "kv", "k", b"1", 1 << 40)
    forged = Record(good.origin, good.version, good.scope, good.kind, 0, "kv", "k", encode_lww(b"2"), good.signature)
    g1.store.put(forged, Credential(ident0.public_key, ident0.certificate))
    g1._push([forged], None, sim.now)
    sim._flush(1)
    sim.run_for(0.1)
    assert sim.nodes[2].gossip.refused["bad_signature"] >= 1
    assert sim.nodes[2].gossip.store.get(ident0.node_id, ("kv", "k")) is None


def test_tampered_and_replayed_datagrams_are_dropped():
    sim = line3()
    g0, g1 = sim.nodes[0].gossip, sim.nodes[1].gossip
    g0.write("kv", "x", sim.now, value=b"1")
    out = g0.datagrams_to_send()
    assert out
    data = out[0].payload
    g1.receive("m0", sim.addr(0), data[:-1] + bytes([data[-1] ^ 1]), sim.now)
    assert g1.drops["bad_signature"] == 1
    g1.receive("m0", sim.addr(0), data, sim.now)
    g1.receive("m0", sim.addr(0), data, sim.now)
    assert g1.drops["replay"] == 1
    g1.receive("m0", sim.addr(0), bytes([MSG_VERSION, 2]) + b"garbage", sim.now)
    assert g1.drops["decode"] == 1


def test_revoked_origin_is_purged_and_refused():
    sim = line3()
    sim.write(0, "kv", "a", value=b"1")
    sim.run_until_converged(2.0)
    victim = sim.nodes[0].gossip.me
    crl = sim.anchor.revoke([victim], serial=1, issued_at=1)
    for n in sim.nodes[1:]:
        assert n.gossip.trust.install_revocations(crl) is None
        n.gossip.purge_untrusted(sim.now)
        assert n.gossip.store.get(victim, ("kv", "a")) is None
    sim.write(0, "kv", "b", value=b"2")
    sim.run_for(1.0)
    assert sim.nodes[1].gossip.drops["revoked"] >= 1
    assert sim.nodes[2].gossip.store.get(victim, ("kv", "b")) is None


def test_crl_validator_refuses_a_list_not_signed_by_the_anchor():
    sim = line3()
    for n in sim.nodes:
        n.gossip.validators[revocations.CRL_NS] = revocations.validator(n.gossip.trust)
    fake = TrustAnchor.from_seed(b"\x07" * 32).revoke([b"\x01" * 16], serial=9, issued_at=1)
    g0 = sim.nodes[0].gossip
    r = signed(g0.identity, "crl", "anchor", fake.encode(), g0.hlc.now(2_000_000_000_000))
    g0.store.put(r, g0.cred)
    g0._push([r], None, sim.now)
    sim._flush(0)
    sim.run_for(0.5)
    assert sim.nodes[1].gossip.refused["bad_crl"] >= 1
    assert revocations.best(sim.nodes[1].gossip.store, sim.nodes[1].gossip.trust) is None
    real = sim.anchor.revoke([b"\x01" * 16], serial=3, issued_at=1)
    sim.write(0, "crl", "anchor", value=real.encode())
    sim.run_until_converged(2.0)
    assert revocations.best(sim.nodes[2].gossip.store, sim.nodes[2].gossip.trust).serial == 3


def test_hop_scope_reaches_neighbours_only_and_expires():
    sim = line3()
    sim.write(0, "hop", "features", value=b"[1,2]", ttl_s=2, scope=Scope.HOP)
    sim.run_for(0.2)
    assert len(sim.nodes[1].gossip.store.hop) == 1 and not sim.nodes[2].gossip.store.hop
    assert sim.nodes[0].gossip.store.digest() == sim.nodes[1].gossip.store.digest()  # not in digests
    sim.run_for(3.5)
    assert not sim.nodes[1].gossip.store.hop


def test_mesh_ttl_expires_everywhere():
    sim = line3()
    sim.write(0, "kv", "short", value=b"1", ttl_s=2)
    sim.run_until_converged(2.0)
    assert sim.nodes[2].gossip.store.count == 1
    sim.run_for(4.0)
    assert all(n.gossip.store.count == 0 for n in sim.nodes)


def test_lost_store_is_rebuilt_from_peers_including_own_records():
    sim = line3()
    sim.write(0, "kv", "mine", value=b"1")
    sim.run_until_converged(2.0)
    old = sim.nodes[0].gossip
    fresh = Gossip(old.identity, old.trust, random.Random(99), sim.now)
    fresh.set_wall_clock(sim.wall0, 0.0)
    sim.nodes[0].gossip = fresh
    fresh.set_neighbours([Neighbour("m1", sim.nodes[1].gossip.me, sim.addr(1))], sim.now)
    sim._flush(0)
    assert sim.run_until_converged(3.0) is not None
    assert fresh.store.get(fresh.me, ("kv", "mine")) is not None
    rec = fresh.write("kv", "mine", sim.now, value=b"2")
    assert rec.version > old.store.get(old.me, ("kv", "mine")).version


def test_snapshot_load_rechecks_every_record():
    sim = line3()
    sim.write(0, "kv", "a", value=b"1")
    sim.run_until_converged(2.0)
    g = sim.nodes[1].gossip
    data = g.snapshot()
    other = Gossip(g.identity, g.trust, random.Random(1), 0.0)
    assert other.load_snapshot(data, 0.0) == 1
    with pytest.raises(DecodeError):
        other.load_snapshot(data[:-3] + b"abc", 0.0)
    strict = Gossip(g.identity, TrustStore(anchors=[TrustAnchor.from_seed(b"\x05" * 32).public_key]),
                    random.Random(1), 0.0)
    assert strict.load_snapshot(data, 0.0) == 0 and strict.counters["load_refused"] == 1


def test_local_misuse_raises_value_error():
    sim = line3()
    g = sim.nodes[0].gossip
    for ns, kw in (("nope", {"value": b"1"}), ("kv", {"incr": 1}), ("g.c", {"incr": -1}),
                   ("kv", {"value": b"x" * 5000}), ("hop", {"value": b"1", "scope": Scope.HOP})):
        with pytest.raises(ValueError):
            g.write(ns, "k", sim.now, **kw)


def test_lost_link_is_probed_and_a_healed_one_found_without_the_router():
    sim = StateSim(4, [(0, 1), (1, 2), (2, 3)], seed=6, detect_s=0.3)
    sim.run_for(1.0)
    sim.links[(1, 2)].up = False  # silent: no neighbour report comes back on its own
    sim._push(sim.now + 0.3, "nbrs", 1)
    sim._push(sim.now + 0.3, "nbrs", 2)
    sim.run_for(7.0)  # past NEIGHBOUR_HOLD_S: the neighbour is gone, the interface is probed
    assert "m2" in sim.nodes[1].gossip.trickles and not any(k[0] == "m2" for k in sim.nodes[1].gossip.neighbours)
    sim.write(0, "kv", "left", value=b"1")
    sim.write(3, "kv", "right", value=b"2")
    sim.run_for(1.0)
    assert not sim.converged()
    sim.links[(1, 2)].up = True  # healed, and the "router" never reports it: digests find it
    assert sim.run_until_converged(5.0) is not None
    sim.run_for(70.0)
    sim.links[(0, 1)].up = False
    sim._push(sim.now + 0.3, "nbrs", 0)
    sim.run_for(70.0)  # probing stops after PROBE_FOR_S
    assert "m1" not in sim.nodes[0].gossip.trickles


def _flags(payload: bytes) -> int:
    return payload[HEADER_BYTES]


def test_digest_carries_the_credential_only_until_every_neighbour_holds_it():
    sim = line3()
    sim.write(0, "kv", "a", value=b"1")
    assert sim.run_until_converged(2.0) is not None
    sim.run_for(20.0)  # digests both ways: each says it holds its neighbours' credentials
    g1 = sim.nodes[1].gossip
    assert all(p.knows_me for p in g1.peers.values())
    sent: list[tuple[str | None, int]] = []
    for n in sim.nodes:
        n.gossip._send = lambda ifname, dst, payload, kind, f=n.gossip._send: (  # type: ignore[method-assign]
            sent.append((dst, payload[HEADER_BYTES])), f(ifname, dst, payload, kind))
    sim.run_for(16.0)
    assert sent and all(dst is None and not flags & F_CRED for dst, flags in sent)  # idle: bare multicast only
    g1._send_digest("m0", None, 0)
    bare = g1.datagrams_to_send()[-1].payload
    assert not _flags(bare) & F_CRED
    g1._send_digest("m0", sim.addr(0), F_WANT_CRED)  # a unicast digest about credentials always has it
    assert _flags(g1.datagrams_to_send()[-1].payload) & F_CRED
    # node 2 restarts with nothing: a bare digest is dropped as unknown, it asks, and it catches up
    for n in sim.nodes:
        del n.gossip._send
    ident2 = sim.nodes[2].gossip.identity
    fresh = Gossip(ident2, TrustStore(anchors=[sim.anchor.public_key]), random.Random(9), sim.now)
    fresh.set_wall_clock(sim.wall0 + sim.now, sim.now)
    sim.nodes[2].gossip = fresh
    fresh.receive("m1", sim.addr(1), bare, sim.now)
    assert fresh.drops["unknown_sender"] == 1
    asked = fresh.datagrams_to_send()
    assert asked and _flags(asked[-1].payload) & F_WANT_CRED
    sim._refresh_neighbours(2)
    assert sim.run_until_converged(3.0) is not None
    assert fresh.store.entry("kv", "a")["value"] == 1


def test_a_differing_digest_after_a_partition_brings_the_missing_records_without_a_vector_round_trip():
    sim = StateSim(2, [(0, 1)], seed=8)
    sim.run_for(1.0)
    g0, g1 = sim.nodes[0].gossip, sim.nodes[1].gossip
    g0._send_digest("m1", None, 0)
    g1.receive("m0", sim.addr(0), g0.datagrams_to_send()[-1].payload, sim.now)  # equal: node 1 notes it
    assert g1.peers[g0.me].synced_lsn == g1.lsn
    sim.links[(0, 1)].up = False
    g1.write("kv", "during", sim.now, value=b"1")
    g1.datagrams_to_send()  # the eager push is lost on the cut link
    g0._send_digest("m1", None, 0)
    g1.receive("m0", sim.addr(0), g0.datagrams_to_send()[-1].payload, sim.now)  # the first after the heal
    out = g1.datagrams_to_send()
    kinds = [o.payload[1] for o in out]
    assert T_VECTOR in kinds and T_DELTA in kinds
    for o in out:
        if o.payload[1] == T_DELTA:  # only the DELTA arrives: no VECTOR ever reaches node 0
            g0.receive("m1", sim.addr(1), o.payload, sim.now)
    assert g0.store.entry("kv", "during")["value"] == 1
    assert g1.counters["records_caught_up"] == 1
    # a differing digest soon after does not bring the same records again; CATCHUP_RETRY_S later it
    # does, at most CATCHUP_RESENDS times
    g0.write("kv", "other", sim.now, value=b"2")
    steps = [(0.1, 1)] + [(0.1 + i * CATCHUP_RETRY_S, 1 + i) for i in range(1, CATCHUP_RESENDS + 1)]
    for dt, sent in steps + [(0.1 + (CATCHUP_RESENDS + 1) * CATCHUP_RETRY_S, 1 + CATCHUP_RESENDS)]:
        g0._send_digest("m1", None, 0)
        g1.receive("m0", sim.addr(0), g0.datagrams_to_send()[-1].payload, sim.now + dt)
        assert g1.counters["records_caught_up"] == sent


def test_a_push_leaves_out_credentials_the_neighbour_holds():
    sim = line3()
    sim.write(0, "kv", "a", value=b"1")
    assert sim.run_until_converged(2.0) is not None
    sim.run_for(20.0)  # equal digests heard both ways: node 2 holds node 0's and node 1's credentials
    g1, g2 = sim.nodes[1].gossip, sim.nodes[2].gossip
    sent: list[bytes] = []
    g1._send = lambda ifname, dst, payload, kind, f=g1._send: (  # type: ignore[method-assign]
        sent.append(payload) if ifname == "m2" and kind == T_DELTA else None, f(ifname, dst, payload, kind))
    sim.write(0, "kv", "b", value=b"2")
    sim.run_for(0.2)
    assert sent and g2.store.entry("kv", "b")["value"] == 2
    msg = g2._parse(T_DELTA, Reader(sent[0][HEADER_BYTES:-SIGNATURE_BYTES]))
    assert msg["cred"] is None and all(scred is None for _, scred, _ in msg["sections"])
