"""The state service's pure parts: config validation, the router read, settings decisions, the offline CLI."""

from __future__ import annotations

import json

import pytest

from tests.sim.state_mesh import StateSim
from x0node.cli import main
from x0node.daemon.config import ConfigError
from x0node.state import persist, settings
from x0node.state.service import _op_args, router_neighbours, validate_config


def test_validate_config_defaults_and_errors():
    assert validate_config({}) == {"enabled": True, "port": 6718, "mesh_settings": [], "node_name": ""}
    assert validate_config({"node_name": "roof-3.north"})["node_name"] == "roof-3.north"
    for section, key in (({"bogus": 1}, "bogus"), ({"port": 80}, "port"), ({"port": True}, "port"),
                         ({"mesh_settings": "node.log_level"}, "mesh_settings"),
                         ({"mesh_settings": ["Node"]}, "mesh_settings[0]"),
                         ({"mesh_settings": ["node.data_dir"]}, "mesh_settings[0]"),
                         ({"mesh_settings": ["trust.anchors"]}, "mesh_settings[0]"),
                         ({"node_name": "has space"}, "node_name"), ({"node_name": 3}, "node_name")):
        with pytest.raises(ConfigError) as exc:
            validate_config(section)
        assert exc.value.key == key


def test_router_neighbours_reads_up_neighbours_only():
    from x0node.proto.views import NeighbourView

    class R:
        def neighbours(self):
            return (NeighbourView("aa" * 16, "m1", "fe80::1", "up", 1.0, 0.0, None, "good", 100, 0.1, 5.0),
                    NeighbourView("bb" * 16, "m2", "fe80::2", "init", None, 0.0, None, "good", 0, 0.1, None))

    (n,) = router_neighbours(R())
    assert (n.ifname, n.node_id, n.address) == ("m1", b"\xaa" * 16, "fe80::1")


def test_op_args_validates_types():
    assert _op_args({"value": {"a": 1}}) == {"value": b'{"a":1}'}
    assert _op_args({"incr": -2, "ttl_s": 5}) == {"incr": -2, "ttl_s": 5}
    for bad in ({"incr": "1"}, {"incr": True}, {"add": 1}, {"ttl_s": 1.5}):
        with pytest.raises(ValueError):
            _op_args(bad)


def test_settings_apply_and_publish_without_echo():
    sim = StateSim(2, [(0, 1)], seed=3)
    sim.run_for(0.3)
    sim.write(0, "settings", "node.log_level", value=settings.encode("debug"))
    sim.run_until_converged(2.0)
    store = sim.nodes[1].gossip.store
    config = {"node.log_level": "info"}
    assert settings.to_apply(store, ["node.log_level"], config.get) == {"node.log_level": "debug"}
    config["node.log_level"] = "debug"  # applied
    assert settings.to_apply(store, ["node.log_level"], config.get) == {}
    assert settings.to_publish(store, ["node.log_level"], config.get) == {}  # no echo
    config["node.log_level"] = "warning"
    assert settings.to_publish(store, ["node.log_level"], config.get) == {"node.log_level": "warning"}


def test_cli_reads_the_store_offline(tmp_path, capsys):
    sim = StateSim(2, [(0, 1)], seed=4)
    sim.run_for(0.3)
    sim.write(0, "kv", "colour", value=b'"blue"')
    sim.write(1, "g.hits", "all", incr=3)
    sim.run_until_converged(2.0)
    for i in (0, 1):
        persist.write_atomic(tmp_path / f"n{i}" / persist.STORE_NAME, sim.nodes[i].gossip.snapshot())
    assert main(["state", "--data-dir", str(tmp_path / "n0"), "get", "kv", "colour"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == "blue"
    assert main(["state", "--data-dir", str(tmp_path / "n0"), "diff", str(tmp_path / "n0"), str(tmp_path / "n1")]) == 0
    sim.write(1, "kv", "colour", value=b'"red"')
    persist.write_atomic(tmp_path / "n1" / persist.STORE_NAME, sim.nodes[1].gossip.snapshot())
    capsys.readouterr()
    assert main(["state", "diff", str(tmp_path / "n0"), str(tmp_path / "n1")]) == 1
    assert "kv/colour" in capsys.readouterr().out


def test_quarantine_keeps_a_bounded_number(tmp_path):
    path = tmp_path / persist.STORE_NAME
    for i in range(5):
        path.write_bytes(b"junk%d" % i)
        assert persist.quarantine(path) is not None
    assert not path.exists() and len(list(tmp_path.glob("state.bin.corrupt-*"))) == persist.QUARANTINE_KEEP


def test_peers_head_updates_reach_the_anomaly_service_once_each():
    from types import SimpleNamespace

    from x0node.anomaly.federated import Update, initial_params
    from x0node.state import federated
    from x0node.state.record import Scope
    from x0node.state.service import StateService

    sim = StateSim(2, [(0, 1)], seed=5)
    for n in sim.nodes:
        n.gossip.validators[federated.FED_NS] = federated.validator
    sim.run_for(0.3)
    up = Update(1, tuple(float(v) for v in initial_params()), 40)
    sim.write(0, federated.FED_NS, federated.FED_KEY, value=federated.encode_update(up), ttl_s=600, scope=Scope.MESH)
    sim.write(1, federated.FED_NS, federated.FED_KEY, value=federated.encode_update(up), ttl_s=600, scope=Scope.MESH)
    sim.run_until_converged(2.0)
    got = []

    class Anomaly:
        def offer_update(self, node_id, update, seq):
            got.append((node_id, update, seq))
            return None if len(got) == 1 else "replay"

    svc = StateService({})
    svc.gossip = sim.nodes[1].gossip
    svc.ctx = SimpleNamespace(extras={"anomaly": Anomaly()})
    svc._feed_heads()
    svc._feed_heads()  # nothing newer: not handed over again
    version = sim.nodes[1].gossip.store.origins[sim.nodes[0].gossip.me].records[(federated.FED_NS, federated.FED_KEY)].version
    assert got == [(sim.nodes[0].gossip.me.hex(), up, version)]  # never its own; with its signed version
    assert svc.counters["fed_fed"] == 1 and svc.counters["fed_refused"] == 0
