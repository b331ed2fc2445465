"""The state service on namespace meshes of real daemons: partitions, revocations, settings, a damaged
store. Each test builds its own testbed and removes it; waits have generous deadlines, timings are
measured by bench/state.py, not asserted here."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.integration.state_mesh import ask, digests, heal, split, state_bed, wait_equal, wait_socket
from x0lab.testbed import measure, provision
from x0node.proto.trust import TrustAnchor

TIMEOUT_S = 30.0


@pytest.fixture
def ring6(tmp_path):
    bed = state_bed(tmp_path / "bed", "ring:6", {"mesh_settings": ["node.log_level"]})
    try:
        wait_socket(bed)
        assert measure.wait_converged(bed, TIMEOUT_S) is not None
        yield bed
    finally:
        bed.down()


def wait_for(pred, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_partition_writes_on_both_sides_heal_no_lost_update(ring6):
    bed = ring6
    side = {1, 2, 3}
    cut = split(bed, side)
    assert len(cut) == 2
    acked = []
    for k in bed.nodes:
        for i in range(3):
            value = {"node": k, "i": i}
            assert ask(bed, k, {"op": "put", "ns": "kv", "key": f"w{k}-{i}", "value": value})["ok"]
            acked.append((f"w{k}-{i}", value))
        assert ask(bed, k, {"op": "put", "ns": "g.writes", "key": "total", "incr": 2})["ok"]
        assert ask(bed, k, {"op": "put", "ns": "kv", "key": "conflict", "value": k})["ok"]
    assert wait_equal(bed, TIMEOUT_S, sorted(side)) is not None
    assert len(set(digests(bed).values())) == 2  # the halves differ while split
    heal(bed, cut)
    assert wait_equal(bed, TIMEOUT_S) is not None
    winners = set()
    for k in bed.nodes:
        for key, value in acked:
            assert ask(bed, k, {"op": "get", "ns": "kv", "key": key})["entry"]["value"] == value, (k, key)
        assert ask(bed, k, {"op": "get", "ns": "g.writes", "key": "total"})["entry"]["value"] == 12
        winners.add(ask(bed, k, {"op": "get", "ns": "kv", "key": "conflict"})["entry"]["value"])
    assert len(winners) == 1  # one deterministic LWW winner everywhere


def test_revocation_reaches_every_router_and_survives_restart(ring6):
    bed = ring6
    victim = bed.nodes[4]
    anchor = provision.mesh_anchor(bed.run_dir)
    # a list signed by another anchor is refused and counted, and changes nothing
    fake = TrustAnchor.from_seed(b"\x03" * 32).revoke([bytes.fromhex(victim.node_id)], serial=5, issued_at=1)
    answer = ask(bed, 1, {"op": "publish_crl", "crl_hex": fake.encode().hex()})
    assert not answer["ok"] and ask(bed, 1, {"op": "status"})["refused"]["bad_crl"] == 1
    crl = anchor.revoke([bytes.fromhex(victim.node_id)], serial=1, issued_at=int(time.time()))
    assert ask(bed, 1, {"op": "publish_crl", "crl_hex": crl.encode().hex()})["ok"]
    others = [k for k in bed.nodes if k != 4]
    assert wait_for(lambda: all(ask(bed, k, {"op": "digest"})["crl_serial"] == 1 for k in others))
    # the revoked node loses its adjacencies and routes on every node
    assert wait_for(lambda: all(victim.mesh_addr not in {r["dst"] for r in bed.routes(k)} for k in others))
    # kept across a restart (the state store holds the list)
    bed.stop(2)
    bed.start(2)
    wait_socket(bed)
    assert wait_for(lambda: ask(bed, 2, {"op": "digest"})["crl_serial"] == 1)
    assert wait_for(lambda: victim.mesh_addr not in {r["dst"] for r in bed.routes(2)})
    assert ask(bed, 2, {"op": "status"})["service"]["crl_applied"] == 1


def test_mesh_setting_reaches_every_node_with_its_origin(ring6):
    bed = ring6
    assert ask(bed, 3, {"op": "set_config", "key": "node.log_level", "value": "debug"})["ok"]

    def applied() -> bool:
        return all('log_level = "debug"' in (pathlib.Path(n.data_dir) / "config.local.toml").read_text()
                   for n in bed.nodes.values() if (pathlib.Path(n.data_dir) / "config.local.toml").exists()) \
            and all((pathlib.Path(n.data_dir) / "config.local.toml").exists() for n in bed.nodes.values())

    assert wait_for(applied)
    view = ask(bed, 6, {"op": "show"})
    setting = view["settings"]["node.log_level"]
    assert setting["value"] == "debug" and setting["origin"] == bed.nodes[3].node_id
    # a value a node cannot take is refused there, counted, and the config is left alone
    assert not ask(bed, 1, {"op": "set_config", "key": "node.log_level", "value": "loud"})["ok"]
    # the node directory: each node names itself (a local setting, republished at once) and every
    # node's directory lists every other node's name and version
    from x0node import __version__

    for k in bed.nodes:
        assert ask(bed, k, {"op": "set_config", "key": "state.node_name", "value": f"router-{k}"})["ok"]
    want = {n.node_id: f"router-{k}" for k, n in bed.nodes.items()}

    def listed() -> bool:
        for k in bed.nodes:
            nodes = {e["node_id"]: e for e in ask(bed, k, {"op": "directory"})["nodes"]}
            if {i: e["name"] for i, e in nodes.items()} != want:
                return False
            assert all(e["version"] == __version__ and e["roles"] == ["node"] for e in nodes.values())
        return True

    assert wait_for(listed)
    entry = next(e for e in ask(bed, 1, {"op": "directory"})["nodes"] if e["node_id"] == bed.nodes[4].node_id)
    assert entry["health"] == "ok" and entry["neighbours_up"] == 2 and 0 < entry["expires_in_s"] <= 1800


def test_damaged_store_is_rebuilt_from_peers(ring6):
    bed = ring6
    for k in (1, 4):
        assert ask(bed, k, {"op": "put", "ns": "kv", "key": f"x{k}", "value": k})["ok"]
    assert wait_equal(bed, TIMEOUT_S) is not None
    bed.stop(2)
    path = pathlib.Path(bed.nodes[2].data_dir) / "state.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    bed.start(2)
    wait_socket(bed)
    assert ask(bed, 2, {"op": "status"})["service"]["store_corrupt"] == 1
    assert wait_equal(bed, TIMEOUT_S) is not None
    assert ask(bed, 2, {"op": "get", "ns": "kv", "key": "x4"})["entry"]["value"] == 4
    assert list(path.parent.glob("state.bin.corrupt-*"))
