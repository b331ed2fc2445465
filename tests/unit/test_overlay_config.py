"""x0node/overlay: the [overlay] section's validation, the kernel policy it implies, the yggdrasil plan,
and the metrics collector."""

from __future__ import annotations

import pytest

from x0node.daemon.config import ConfigError, validate
from x0node.overlay import policy
from x0node.overlay import yggdrasil_plan as plan
from x0node.overlay.service import MTU_MAX, OverlayService, _Collector, validate_config
from x0node.proto.identity import Identity, mesh_address_of
from x0node.proto.protocol import MESH_ULA_PREFIX
from x0node.proto.views import NeighbourView


def test_defaults_and_mesh_prefix():
    out = validate_config({})
    assert out["encrypt"] and out["drop_clear"] and out["destinations"] == [MESH_ULA_PREFIX]
    assert validate_config(out) == out  # idempotent: the daemon validates, then the service again


@pytest.mark.parametrize("section,key", [
    ({"mtu": 100}, "mtu"), ({"mtu": MTU_MAX + 1}, "mtu"), ({"cipher": "rot13"}, "cipher"),
    ({"destinations": ["fe80::/64"]}, "destinations[0]"), ({"destinations": ["nope"]}, "destinations[0]"),
    ({"bogus": 1}, "bogus"), ({"nat": {"rendezvous": ["example.org:1"]}}, "nat.rendezvous[0]"),
    ({"nat": {"mtu": 99999}}, "nat.mtu"), ({"yggdrasil": {"port": 0}}, "yggdrasil.port"),
    ({"yggdrasil": {"binary": "yggdrasil"}}, "yggdrasil.binary"), ({"encrypt": "yes"}, "encrypt"),
])
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError) as exc:
        validate_config(section)
    assert exc.value.key == key


def test_daemon_config_reports_overlay_keys_with_section_prefix():
    with pytest.raises(ConfigError) as exc:
        validate({"overlay": {"nat": {"keepalive_s": 0}}})
    assert exc.value.key == "overlay.nat.keepalive_s"
    assert validate({"overlay": {"nat": {}, "yggdrasil": {}}})["overlay"]["nat"]["interface"] == "x0nat"


def test_rules_divert_only_local_traffic_and_never_loop_the_socket():
    rs = policy.rules(990, 0x6B14, 6464, 6465)
    assert [r.priority for r in rs] == [990, 991, 992, 995]
    assert all(r.fwmark == 0x6B14 for r in rs[:3]) and rs[2].action == policy.FR_ACT_PROHIBIT
    assert rs[-1].iifname == "lo" and rs[-1].table == 6465 and rs[-1].fwmark is None
    ex = policy.rules(990, 1, 6464, 6465, exempt_tcp_port=6720)
    assert {(r.tcp_dport, r.tcp_sport) for r in ex if r.table == 6464 and r.fwmark is None} == {(6720, None), (None, 6720)}
    assert max(r.priority for r in ex) == 990 + policy.RULE_SPAN - 1


def test_nft_script_drops_clear_mesh_traffic_but_lets_overlay_fragments_and_errors_in():
    s = policy.nft_script("x0ov", [MESH_ULA_PREFIX], 6718)
    assert 'iifname "x0ov" accept' in s and "udp dport { 6718 }" in s and "frag frag-off != 0 accept" in s
    assert "packet-too-big" in s and s.rstrip().endswith("}") and "counter drop" in s
    assert "tcp dport 6720" in policy.nft_script("x0ov", [MESH_ULA_PREFIX], 6718, 6720)


def test_inner_packet_checks():
    me, peer = bytes(range(16)), bytes(range(16, 32))
    pkt = bytes([0x60]) + bytes(7) + peer + me + b"payload"
    assert policy.inbound_ok(pkt, peer, me) and not policy.inbound_ok(pkt, me, me)
    assert not policy.inbound_ok(bytes([0x40]) + pkt[1:], peer, me)  # IPv4 inside
    out = bytes([0x60]) + bytes(7) + me + peer
    assert policy.outbound_ok(out, me) and not policy.outbound_ok(out, peer) and not policy.outbound_ok(out[:39], me)


def test_yggdrasil_plan():
    ident = Identity.from_seed(bytes(32))
    other = Identity.from_seed(bytes([1]) * 32)
    revoked = Identity.from_seed(bytes([2]) * 32)
    keys = plan.allowed_keys([(other.node_id, other.public_key), (revoked.node_id, revoked.public_key)],
                             {revoked.node_id})
    assert keys == {other.public_key}
    conf = plan.render_config(ident.seed, ident.public_key, keys, ident.mesh_address, 6720, "/run/y.sock", "ygg0", 65535)
    assert conf["PrivateKey"] == (ident.seed + ident.public_key).hex() and conf["MulticastInterfaces"] == []
    assert set(conf["AllowedPublicKeys"]) == {other.public_key.hex(), ident.public_key.hex()}
    assert conf["Listen"] == [f"tcp://[{ident.mesh_address}]:6720"]
    nbrs = [NeighbourView(nid, "m0", "fe80::1", state, 1.0, 0.0, None, "good", 100, 0.1, None)
            for nid, state in ((other.node_id_hex, "up"), (revoked.node_id_hex, "init"), ("zz", "up"))]
    want = plan.desired_peers(nbrs, 6720)
    assert want == {f"tcp://[{mesh_address_of(other.node_id)}]:6720"}
    assert plan.reconcile(want, {"tcp://[fd00::9]:6720"}) == (sorted(want), ["tcp://[fd00::9]:6720"])


@pytest.mark.parametrize("answer", [None, [], {"status": "error"}, {"status": "success", "response": {"peers": 5}},
                                    {"status": "success", "response": {"peers": [{"key": "short"}, 7]}}])
def test_yggdrasil_bad_admin_answers_give_nothing(answer):
    assert plan.parse_peers(answer) == []


def test_yggdrasil_peers_parsed_both_shapes():
    entry = {"key": "ab" * 32, "bytes_recvd": 10, "bytes_sent": 20, "uptime": 3.5, "remote": "tcp://x"}
    as_list = plan.parse_peers({"status": "success", "response": {"peers": [dict(entry, address="200::1")]}})
    as_map = plan.parse_peers({"status": "success", "response": {"peers": {"200::1": entry}}})
    assert as_list == as_map and as_list[0]["bytes_sent"] == 20.0 and as_list[0]["address"] == "200::1"


def test_collector_exposes_sessions_peer_bytes_drops_and_datapath():
    svc = OverlayService({})
    svc.status = lambda: {  # type: ignore[method-assign]
        "failed": {},
        "e2e": {"datapath": "kernel-esp", "drops": {"replay": 2},
                "peers": [{"node_id": "aa", "established": True, "rx_bytes": 5, "tx_bytes": 7, "esp_tx_bytes": 100}]},
        "yggdrasil": {"running": True, "peers": [{"key": "k1", "bytes_recvd": 1.0, "bytes_sent": 2.0}]},
    }
    fams = {f.name: f for f in _Collector(svc).collect()}
    assert fams["x0node_overlay_sessions"].samples[0].value == 1.0
    got = {(s.labels["part"], s.labels["peer"], s.labels["direction"]): s.value
           for s in fams["x0node_overlay_peer_bytes"].samples}
    assert got[("e2e", "aa", "tx")] == 107.0 and got[("yggdrasil", "k1", "rx")] == 1.0  # userspace + kernel ESP
    live = {s.labels["path"]: s.value for s in fams["x0node_overlay_datapath"].samples}
    assert live == {"kernel-esp": 1.0, "userspace": 0.0}
    assert fams["x0node_overlay_drops"].samples[0].labels["reason"] == "replay"
    assert fams["x0node_overlay_yggdrasil_up"].samples[0].value == 1.0
