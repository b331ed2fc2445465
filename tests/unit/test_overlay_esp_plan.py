"""x0node/overlay/esp_plan.py: which kernel ESP states, policies and routes two nodes want, stepped in
time through real handshakes (channel.py) with no kernel: offers, make-before-break rekey, expiry,
revocation, a peer without ESP, refused kernel calls."""

from __future__ import annotations

from tests.unit.test_overlay_channel import ANCHOR, chans, establish, exchange, key, node
from x0node.overlay import channel as ch
from x0node.overlay import esp_plan as ep
from x0node.overlay import handshake as hs


class Side:
    """One node: its channels, its planner, and a 'kernel' that applies every action (or refuses)."""

    def __init__(self, ident, chan, esp: bool = True) -> None:
        self.ident, self.ch = ident, chan
        self.plan = ep.EspPlanner(key(ident), {hs.CIPHER_CHACHA20_POLY1305} if esp else set())
        self.refuse = False
        self.log: list[ep.Action] = []
        self.sent: list[bytes] = []  # sealed offers (channels.send returns them when a session is up)

    def step(self, now: float) -> list[ep.Action]:
        actions = self.plan.plan(self.ch, now)
        for a in actions:
            self.plan.done(a, not self.refuse)
        self.log += actions
        for k, offer in self.plan.offers(self.ch, now):
            data = self.ch.send(k, offer, now)
            if data is not None:
                self.sent.append(data)
        return actions

    def out_spis(self) -> set[int]:
        return {s.spi for s in self.plan.states.values() if not s.inbound}

    def in_spis(self) -> set[int]:
        return {s.spi for s in self.plan.states.values() if s.inbound}


def deliver(src: Side, dst: Side, now: float) -> None:
    got = exchange(src.ch, dst.ch, key(src.ident), now)
    for data in src.sent:
        r = dst.ch.receive(data, now, key(src.ident))
        if r is not None:
            got.append(r)
    src.sent.clear()
    for k, payload in got:
        if ep.is_control(payload):
            dst.plan.on_offer(dst.ch, k, payload)


def settle(a: Side, b: Side, now: float, rounds: int = 3) -> None:
    for _ in range(rounds):
        a.step(now)
        deliver(a, b, now)
        b.step(now)
        deliver(b, a, now)


def pair(esp_b: bool = True):
    ia, ib = node(1), node(2)
    ca, cb = chans(ia, 1), chans(ib, 2)
    establish((ia, ib, ca, cb))
    return Side(ia, ca), Side(ib, cb, esp_b)


def test_both_ends_install_matching_states_after_offers():
    a, b = pair()
    acts = a.step(0.0)  # a's session is up: only its inbound state, no outbound before b's offer
    assert [x.item.inbound for x in acts] == [True]
    assert a.plan.path_of(key(b.ident)) == "userspace"
    settle(a, b, 0.0)
    sa, sb = a.ch.peers[key(b.ident)].current, b.ch.peers[key(a.ident)].current
    assert a.out_spis() == b.in_spis() == {sa.peer_index} == {sb.my_index}
    assert b.out_spis() == a.in_spis() == {sb.peer_index}
    assert a.plan.path_of(key(b.ident)) == b.plan.path_of(key(a.ident)) == "esp"
    # the two ends hold the same key for each direction, and it is not the userspace key
    out_a = next(s for s in a.plan.states.values() if not s.inbound)
    in_b = next(s for s in b.plan.states.values() if s.inbound)
    assert out_a.key == in_b.key and len(out_a.key) == hs.ESP_KEY_BYTES
    assert out_a.algorithm == "rfc7539esp(chacha20,poly1305)" and out_a.src == key(a.ident)
    assert 0 < out_a.hard_expires_s <= ch.REJECT_AFTER_S + ep.LIFETIME_MARGIN_S
    assert a.plan.policies == {ep.PolicySpec(key(a.ident), key(b.ident))}
    assert a.plan.routes == {ep.RouteSpec(key(b.ident))}
    assert all(s.spi >= hs.MIN_INDEX for s in a.plan.states.values())
    assert a.step(0.0) == []  # nothing more to do: the plan is stable


def test_peer_without_esp_stays_userspace():
    a, b = pair(esp_b=False)
    settle(a, b, 0.0)
    assert a.out_spis() == set() and a.plan.routes == set() and a.plan.policies == set()
    assert b.plan.states == {}
    assert a.plan.path_of(key(b.ident)) == "userspace"


def test_forged_or_stale_offer_is_refused():
    a, b = pair()
    settle(a, b, 0.0)
    before = set(a.plan.peer_offered)
    assert not a.plan.on_offer(a.ch, key(b.ident), ep.encode_offer(0x12345678, hs.CIPHER_CHACHA20_POLY1305))
    assert not a.plan.on_offer(a.ch, key(b.ident), b"\x00junk")
    assert not a.plan.on_offer(a.ch, b"\x01" * 16, ep.encode_offer(1, 1))  # unknown peer
    assert a.plan.peer_offered == before and a.plan.counters["offers_refused"] == 3


def test_rekey_is_make_before_break():
    a, b = pair()
    settle(a, b, 0.0)
    old_out = a.out_spis()
    t = ch.REKEY_AFTER_S * 1.2
    assert a.plan.rekeys(a.ch, t) == []  # no traffic seen: an idle peer is not rekeyed
    a.plan.note_traffic(key(b.ident), 1000, t)
    assert a.plan.rekeys(a.ch, t) == [key(b.ident)]
    a.ch.connect(key(b.ident), t)
    a.log.clear()
    exchange(a.ch, b.ch, key(a.ident), t)  # INIT
    exchange(b.ch, a.ch, key(b.ident), t)  # RESP: a has the new session
    settle(a, b, t)
    new_out = a.out_spis()
    assert new_out and new_out != old_out
    adds = [i for i, x in enumerate(a.log) if x.op == "add" and isinstance(x.item, ep.StateSpec) and not x.item.inbound]
    dels = [i for i, x in enumerate(a.log) if x.op == "del" and isinstance(x.item, ep.StateSpec) and not x.item.inbound]
    assert adds and dels and max(adds) < min(dels)  # the new outbound state was in before the old one left
    assert not any(x.op == "del" and not isinstance(x.item, ep.StateSpec) for x in a.log)  # route, policy stay
    assert len(a.in_spis()) == 2  # the previous session still receives


def test_expiry_removes_everything_route_first():
    a, b = pair()
    settle(a, b, 0.0)
    acts = a.step(ch.REJECT_AFTER_S + 1)
    assert a.plan.states == {} and a.plan.policies == set() and a.plan.routes == set()
    kinds = [type(x.item).__name__ for x in acts]
    assert kinds.index("RouteSpec") < kinds.index("PolicySpec") < kinds.index("StateSpec")


def test_revoked_peer_loses_its_states():
    a, b = pair()
    settle(a, b, 0.0)
    assert a.out_spis()
    assert a.ch.trust.install_revocations(ANCHOR.revoke([b.ident.node_id], serial=1, issued_at=0)) is None
    a.ch.tick(ch.TRUST_RECHECK_S * 2)
    a.step(ch.TRUST_RECHECK_S * 2)
    assert a.plan.states == {} and a.plan.routes == set()


def test_refused_kernel_call_keeps_the_session_on_userspace():
    a, b = pair()
    a.refuse = True
    settle(a, b, 0.0)
    assert a.plan.states == {} and a.plan.counters["failures"] >= 1
    assert b.out_spis() == set()  # a never offered, so b never sends ESP to a
    a.refuse = False
    assert a.step(0.0) == []  # that session is not retried; the next one will be


def test_removal_order():
    a, b = pair()
    settle(a, b, 0.0)
    kinds = [type(x.item).__name__ for x in a.plan.removal()]
    assert kinds[0] == "RouteSpec" and kinds[1] == "PolicySpec" and set(kinds[2:]) == {"StateSpec"}


def test_offer_codec():
    assert ep.decode_offer(ep.encode_offer(0x1234, 2)) == (0x1234, 2)
    assert ep.decode_offer(b"\x60" + bytes(11)) is None
    assert ep.is_control(ep.encode_offer(1, 1)) and not ep.is_control(b"\x60abc")
