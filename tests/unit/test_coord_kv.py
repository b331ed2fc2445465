"""The quorum KV: signed records and their order, the ring's preference lists, quorum puts and gets
under loss, read repair, hinted handoff, and the durable log (torn tail, re-verification)."""

from __future__ import annotations

import random

import pytest

from x0node.coord import kv
from x0node.coord.kvstore import KvLog
from x0node.coord.record import Record
from x0node.coord.ring import Ring
from x0node.coord.wire import Type
from x0node.proto.identity import Identity
from x0node.proto.trust import TrustAnchor, TrustStore
from x0node.proto.wire import DecodeError

ANCHOR = TrustAnchor.from_seed(b"\x07" * 32)


def ident(i: int) -> Identity:
    base = Identity.from_seed(bytes([i]) * 32)
    return base.with_certificate(ANCHOR.certify(base.public_key))


TRUST = TrustStore(anchors=[ANCHOR.public_key])


def test_record_roundtrip_verify_and_tamper():
    me = ident(1)
    rec = Record.make(me, "app/x", b"v1", 5)
    back = Record.decode(rec.encode())
    assert back == rec and back.verify(TRUST) is None
    bad = Record(rec.key, b"v2", rec.version, rec.credential, rec.signature)
    assert bad.verify(TRUST) == "bad_record_signature"
    stranger = Record.make(Identity.from_seed(b"\x09" * 32), "app/x", b"v", 9)
    assert stranger.verify(TRUST) == "uncertified"
    with pytest.raises(DecodeError):
        Record.decode(rec.encode()[:-1])
    with pytest.raises(ValueError):
        Record.make(me, "nope/x", b"", 1)
    tomb = Record.make(me, "app/x", None, 6)
    assert tomb.newer_than(rec) and Record.decode(tomb.encode()).value is None


def test_ring_preference_and_sloppy_quorum():
    nodes = {ident(i).node_id for i in range(1, 9)}
    ring = Ring(nodes)
    full = ring.preference("dns/a", 3, nodes)
    assert len({n for n, _ in full}) == 3 and all(h is None for _, h in full)
    dead = full[0][0]
    sloppy = ring.preference("dns/a", 3, nodes - {dead})
    assert (sloppy[0][1], sloppy[0][0] != dead) == (dead, True)
    assert [n for n, _ in sloppy[1:]] == [n for n, _ in full[1:]]
    # removing a node keeps the key's other replicas where they were
    smaller = Ring(nodes - {dead}).preference("dns/a", 3, nodes - {dead})
    assert {n for n, _ in full[1:]} <= {n for n, _ in smaller}


class Mesh:
    """Coordinator + replicas exchanging messages with seeded loss; records go through encode/decode."""

    def __init__(self, n: int, loss: float, seed: int) -> None:
        self.ids = [ident(i + 1) for i in range(n)]
        self.replicas = {i.node_id: kv.Replica() for i in self.ids}
        self.co = kv.Coordinator(self.ids[0].node_id)
        self.rng = random.Random(seed)
        self.loss = loss
        self.down: set[bytes] = set()
        self.now = 0.0
        self.done: dict[int, dict] = {}

    def step(self) -> None:
        out, self.co.outbox = self.co.outbox, []
        for node, kind, hdr, recs in out:
            if node in self.down or self.rng.random() < self.loss:
                continue
            rep = self.replicas[node]
            if kind is Type.KV_PUT:
                rec = Record.decode(recs[0])
                hint = bytes.fromhex(hdr["h"]) if "h" in hdr else None
                rep.store(rec, hint, self.now)
                if hdr["n"] and self.rng.random() >= self.loss:
                    self.co.on_ack(node, hdr["n"], self.now)
            elif self.rng.random() >= self.loss:
                self.co.on_value(node, hdr["n"], rep.get(hdr["k"]), self.now)
        self.now += 0.01
        self.co.tick(self.now)
        self.done.update(dict(self.co.results))
        self.co.results = []

    def run(self, nonce: int) -> dict:
        while nonce not in self.done:
            self.step()
        return self.done[nonce]


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_quorum_put_then_get_under_loss(loss):
    m = Mesh(5, loss, seed=11)
    ring = Ring(set(m.replicas))
    alive = set(m.replicas)
    for i in range(30):
        rec = Record.make(m.ids[i % 5], f"app/k{i}", str(i).encode(), 100 + i)
        res = m.run(m.co.start_put(rec, ring.preference(rec.key, 3, alive), m.now))
        assert res["ok"], res
        holders = [n for n, r in m.replicas.items() if r.get(rec.key) == rec]
        assert len(holders) >= 2  # acknowledged by a write quorum: on >= 2 replicas
        got = m.run(m.co.start_get(rec.key, ring.preference(rec.key, 3, alive), m.now))
        assert got["ok"] and got["record"] == rec


def test_no_quorum_is_an_error_not_an_ack():
    m = Mesh(5, 0.0, seed=1)
    ring = Ring(set(m.replicas))
    rec = Record.make(m.ids[0], "app/x", b"1", 1)
    prefs = ring.preference("app/x", 3, set(m.replicas))
    m.down = {n for n, _ in prefs[1:]}
    assert not m.run(m.co.start_put(rec, prefs, m.now))["ok"]


def test_read_repair_and_hinted_handoff():
    m = Mesh(5, 0.0, seed=2)
    ring = Ring(set(m.replicas))
    alive = set(m.replicas)
    old = Record.make(m.ids[1], "app/r", b"old", 1)
    new = Record.make(m.ids[1], "app/r", b"new", 2)
    prefs = ring.preference("app/r", 3, alive)
    for n, _ in prefs:
        m.replicas[n].store(old, None, 0)
    m.replicas[prefs[0][0]].store(new, None, 0)
    got = m.run(m.co.start_get("app/r", prefs, m.now))
    for _ in range(5):
        m.step()
    if got["record"] == new:  # the newest copy was among the first answers: everyone is repaired
        assert all(m.replicas[n].get("app/r") == new for n, _ in prefs)
    # a stand-in holds a hint and hands the record to the intended node when it is back
    target = prefs[0][0]
    sloppy = ring.preference("app/h", 3, alive - {target})
    rec = Record.make(m.ids[2], "app/h", b"h", 3)
    assert m.run(m.co.start_put(rec, sloppy, m.now))["ok"]
    stand_in = next((n for n, h in sloppy if h is not None), None)
    if stand_in is not None:
        intended = dict((h, n) for n, h in sloppy if h is not None)
        assert m.replicas[stand_in].hints
        sends = m.replicas[stand_in].handoffs(alive, m.now)
        assert [(n, r) for n, r in sends] == [(h, rec) for h in intended]
        m.replicas[stand_in].handed_off(sends[0][0], "app/h", rec.version)
        assert not m.replicas[stand_in].hints


def test_log_survives_torn_tail_and_reverifies(tmp_path):
    log = KvLog(tmp_path / "kv.log")
    me = ident(1)
    recs = [Record.make(me, f"app/{i}", b"x", i + 1) for i in range(5)]
    log.append([(r, None) for r in recs[:4]])
    log.append([(recs[4], b"\x01" * 16)])
    with open(tmp_path / "kv.log", "ab") as fh:
        fh.write(b"\x40\x00\x00\x00partial")
    again = KvLog(tmp_path / "kv.log")
    got, hints, refused = again.load(TRUST)
    assert got == recs and hints == [(b"\x01" * 16, "app/4")] and refused == 0
    assert (tmp_path / "kv.log").stat().st_size == again.size
    other = TrustStore(anchors=[TrustAnchor.from_seed(b"\x08" * 32).public_key])
    assert KvLog(tmp_path / "kv.log").load(other)[2] == 5  # untrusted writer: refused on load too


def test_get_waits_for_the_replica_that_holds_the_write():
    m = Mesh(5, 0.0, seed=3)
    ring = Ring(set(m.replicas))
    prefs = ring.preference("app/late", 3, set(m.replicas))
    rec = Record.make(m.ids[0], "app/late", b"x", 7)
    m.replicas[prefs[2][0]].store(rec, None, 0)  # the first two asked have nothing (yet)
    got = m.run(m.co.start_get("app/late", prefs, m.now))
    assert got["record"] == rec and got["replies"] == 3
    for _ in range(3):
        m.step()
    assert all(m.replicas[n].get("app/late") == rec for n, _ in prefs)  # and read repair filled them in
