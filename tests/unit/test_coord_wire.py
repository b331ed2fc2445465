"""Coordination datagrams (signature, trust, replay) and the group secret (sealing, password, file);
config validation, value rules and RTT-sized timers; the /api/v1/kv routes' authentication."""

from __future__ import annotations

import pytest

from tests.unit.test_web_support import do_setup, fast_argon2, make_app  # noqa: F401
from x0node.coord import secret
from x0node.coord.api import add_routes
from x0node.coord.config import validate_config
from x0node.coord.service import validate_value
from x0node.coord.timers import RttTable, timers_for
from x0node.coord.wire import Codec, Datagram, Type
from x0node.daemon.config import ConfigError
from x0node.proto.identity import Identity
from x0node.proto.trust import TrustAnchor, TrustStore

ANCHOR = TrustAnchor.from_seed(b"\x05" * 32)


def ident(i: int) -> Identity:
    base = Identity.from_seed(bytes([i]) * 32)
    return base.with_certificate(ANCHOR.certify(base.public_key))


def codecs() -> tuple[Codec, Codec]:
    store = TrustStore(anchors=[ANCHOR.public_key])
    return Codec(ident(1), store), Codec(ident(2), store)


def test_seal_open_replay_and_tamper():
    a, b = codecs()
    data = a.seal(Type.PING, {"n": 1})
    d = b.open(data)
    assert isinstance(d, Datagram) and d.header == {"n": 1} and d.sender == a.identity.node_id
    assert b.open(data) == "replay"
    flipped = bytearray(a.seal(Type.PING, {"n": 2}))
    flipped[-70] ^= 1
    assert b.open(bytes(flipped)) == "bad_signature"
    assert b.open(b"junk") == "bad_magic" and b.open(b"X0C\x01\x01") == "malformed"
    stranger = Codec(Identity.from_seed(b"\x09" * 32), TrustStore())
    assert b.open(stranger.seal(Type.PING, {"n": 1})) == "uncertified"
    b.trust.revoked = frozenset({a.identity.node_id})
    assert b.open(a.seal(Type.PING, {"n": 3})) == "revoked"
    with pytest.raises(ValueError):
        a.seal(Type.PING, {"x": "y" * 600})


def test_secret_sealed_to_one_member(tmp_path):
    s = secret.new_secret()
    boxed = secret.seal(s, ident(2).public_key)
    assert secret.unseal(boxed, ident(2)) == s
    assert secret.unseal(boxed, ident(3)) is None
    assert secret.password_of(s) != s and len(secret.password_of(s)) == 32
    secret.save(tmp_path / "secret", s)
    assert secret.load(tmp_path / "secret") == s
    (tmp_path / "secret").chmod(0o644)
    assert secret.load(tmp_path / "secret") is None  # readable by others: not used


def test_config_validation():
    ok = validate_config({"members": ["a" * 32, "b" * 32, "c" * 32], "dns_listen": ["127.0.0.1:5353"]})
    assert ok["kv"] and ok["reclaim_after_s"] == 86400.0
    for bad, key in (({"members": ["a" * 32, "b" * 32]}, "members"), ({"members": ["x"]}, "members[0]"),
                     ({"pool4": "10.0.0.1/8"}, "pool4"), ({"pool6_len": 96}, "pool6_len"),
                     ({"dns_listen": ["nowhere"]}, "dns_listen[0]"), ({"port": 80}, "port"),
                     ({"dns_zone": "Mesh"}, "dns_zone"), ({"bogus": 1}, "bogus")):
        with pytest.raises(ConfigError) as exc:
            validate_config(bad)
        assert exc.value.key == key


def test_value_rules():
    validate_value("dns/a", b'{"aaaa": ["fd00::1"]}')
    validate_value("app/a", b"\x00anything")
    for key, value in (("dns/a", b"[]"), ("dns/a", b'{"a": ["fd00::1"]}'), ("dns/a", b'{"aaaa": ["x"]}'),
                       ("client/m", b'{"v4": "10.0.0.1"}')):
        with pytest.raises(ValueError):
            validate_value(key, value)


def test_timers_follow_rtt():
    fast, slow = timers_for(0.001), timers_for(0.2)
    assert fast.heartbeat_s == 0.05 and fast.election_min_s == 0.4
    assert slow.heartbeat_s == 0.4 and slow.election_min_s == pytest.approx(6 * slow.heartbeat_s)
    assert slow.pysyncobj()["raftMaxTimeout"] == 2 * slow.election_min_s
    t = RttTable()
    for _ in range(10):
        t.add(b"a", 0.01)
    t.add(b"b", 0.3)
    assert t.high([b"a"]) == 0.01 and t.high([b"a", b"b"]) == 0.3


async def test_kv_routes_need_a_session(aiohttp_client, tmp_path):
    svc: list = [None]
    app = make_app(tmp_path)
    add_routes(app, lambda: svc[0])
    client = await aiohttp_client(app)
    assert (await client.get("/api/v1/kv/app/x")).status == 401
    assert (await client.put("/api/v1/kv/app/x", json={"value": "1"})).status == 403  # no CSRF token
    token = await do_setup(client, tmp_path)
    h = {"X-CSRF-Token": token}
    assert (await client.get("/api/v1/kv/app/x")).status == 503

    class Svc:
        started = True
        store: dict = {}

        async def kv_put(self, key, value):
            from x0node.coord.record import check_key

            check_key(key)
            self.store[key] = value
            return {"ok": True, "acks": 2, "version": 1}

        async def kv_get(self, key):
            v = self.store.get(key)
            return {"ok": True, "found": v is not None, "value": v, "version": 1, "writer": "00"}

    svc[0] = Svc()
    assert (await client.put("/api/v1/kv/app/x", json={"value": "hi"}, headers=h)).status == 200
    assert (await (await client.get("/api/v1/kv/app/x")).json())["value"] == "hi"
    assert (await client.put("/api/v1/kv/bad/x", json={"value": "hi"}, headers=h)).status == 400
    assert (await client.put("/api/v1/kv/app/x", json={"value": 3}, headers=h)).status == 400
    assert (await client.delete("/api/v1/kv/app/x", headers=h)).status == 200


def test_kv_cli_without_a_daemon(tmp_path, capsys):
    from x0node.cli import main

    assert main(["kv", "--data-dir", str(tmp_path), "get", "dns/a"]) == 2
    assert "no coordination service answers" in capsys.readouterr().err


def test_router_read_through_the_typed_views():
    from x0node.coord.service import mesh_view, topology_neighbours
    from x0node.proto.views import LinkView, NodeView, TopologyView

    a, b, c = "a" * 32, "b" * 32, "c" * 32

    class Router:
        def topology(self):
            nodes = tuple(NodeView(n, "fd00::1", n == a, n != c, (), None, None, None) for n in (a, b, c))
            return TopologyView(nodes, (LinkView(a, b, 1, "good"), LinkView(b, c, 1, "good")))

        def neighbours(self):
            return (type("N", (), {"node_id": b, "state": "up"})(), type("N", (), {"node_id": c, "state": "init"})())

    known, reach, nbrs = mesh_view(Router())
    assert known == {bytes.fromhex(x) for x in (a, b, c)} and bytes.fromhex(c) not in reach
    assert nbrs == [bytes.fromhex(b)]
    assert topology_neighbours(Router(), b) == [a, c]
