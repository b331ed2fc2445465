"""The daemon's NodeStateProvider over a real (sans-I/O) Router: shapes match the web API schemas,
config changes are validated, persisted and reported with the dotted key."""

from __future__ import annotations

import random
import time
import tomllib
from dataclasses import dataclass

import pytest

from tests.ui import api_check
from x0node.daemon import config as cfg
from x0node.daemon.bus import EventBus
from x0node.daemon.provider import DaemonStateProvider
from x0node.proto.identity import Identity
from x0node.proto.router import Router
from x0node.proto.trust import TrustStore
from x0node.web.openapi import document
from x0node.web.provider import ConfigError


@dataclass
class FakeNetlink:
    installed: dict


class FakeTransport:
    drops = {"hop_limit": 2}


class NodeUnderTest:
    """The attributes of x0node.daemon.node.Node the provider reads, around a real Router."""

    def __init__(self, conf):
        self.config = conf
        self.identity = Identity.generate(bytes(range(32)))
        self.router = Router(self.identity, TrustStore(allowed_keys={self.identity.public_key}), None,
                             random.Random(1), 0.0)
        self.router.add_interface("m1", 0.0)
        self.router.tick(0.5)
        self.bus = EventBus()
        while (ev := self.router.next_event()) is not None:
            self.bus.publish("core", ev)
        self.bus.publish("daemon", {"kind": "ConfigChanged", "keys": ["node.log_level"]})
        self.interfaces = ["m1"]
        self.netlink = FakeNetlink({})
        self.transport = FakeTransport()
        self.services = None
        self.started_mono = time.monotonic()

    def now(self):
        return 0.5

    def set_config(self, changes):
        new = self.config.with_changes(changes)
        new.save_local()
        self.config = new
        return new


@pytest.fixture
def provider(tmp_path):
    p = tmp_path / "x0node.toml"
    p.write_text('[node]\ninterfaces = ["m1"]\n[routing]\nhello_interval_s = 0.5\n')
    return DaemonStateProvider(NodeUnderTest(cfg.load(p, data_dir=str(tmp_path / "data"))))


def test_shapes_match_the_web_schemas(provider):
    doc = document("test")
    api_check.check(doc, "/api/v1/status", provider.status())
    api_check.check(doc, "/api/v1/neighbours", provider.neighbours())
    api_check.check(doc, "/api/v1/routes", provider.routes())
    api_check.check(doc, "/api/v1/topology", provider.topology())
    api_check.check(doc, "/api/v1/events", provider.events(0, 100))
    api_check.check(doc, "/api/v1/config", provider.config_get())
    st = provider.stats()
    assert st["drops"]["udp_hop_limit"] == 2 and "routes" in st and "spf_seconds_total" in st
    topo = provider.topology()
    assert [n["self"] for n in topo["nodes"]].count(True) == 1


def test_events_since_and_limit(provider):
    all_events = provider.events(0, 500)
    assert [e["seq"] for e in all_events] == sorted(e["seq"] for e in all_events)
    last = all_events[-1]["seq"]
    assert provider.events(last, 10) == []
    assert len(provider.events(0, 1)) == 1


def test_config_set_validates_persists_and_names_the_key(provider, tmp_path):
    assert provider.config_get()["routing"]["hello_interval_s"] == 0.5
    new = provider.config_set({"routing": {"hello_interval_s": 0.4}})
    assert new["routing"]["hello_interval_s"] == 0.4
    local = tomllib.loads((tmp_path / "data" / cfg.LOCAL_CONFIG_NAME).read_text())
    assert local == {"routing": {"hello_interval_s": 0.4}}
    with pytest.raises(ConfigError) as err:
        provider.config_set({"routing": {"hello_interval_s": 99.0}})
    assert err.value.key == "routing.hello_interval_s"
    with pytest.raises(ConfigError) as err:
        provider.config_set({"kernel": {"table": 254}, "routing": {"hello_interval_s": 0.3}})
    assert err.value.key == "kernel.table"
    assert provider.config_get()["routing"]["hello_interval_s"] == 0.4  # all or nothing
    # unchanged values are not written as overrides
    provider.config_set({"node": {"interfaces": ["m1"]}})
    assert "node" not in tomllib.loads((tmp_path / "data" / cfg.LOCAL_CONFIG_NAME).read_text())


def test_health_says_why_and_events_read_as_news(provider):
    from x0node.anomaly.service import FeatureVector
    from x0node.healing.incident import Diagnosed, IncidentOpened

    st = provider.status()
    assert st["health"] == "degraded"  # an interface up, nobody answering
    assert st["health_reason"].startswith("no neighbour answers on m1")
    bus = provider.node.bus
    before = provider.events(0, 500)
    bus.publish("anomaly.features", FeatureVector("aa", {"cpu_util": 0.1}, 0.0))
    bus.publish("healing", IncidentOpened(4, ("link_loss@link:aa~bb",), 1.0))
    bus.publish("healing", Diagnosed(4, (("link:aa~bb", "link_lossy", 0.82),), (), 1.0))
    new = provider.events(before[-1]["seq"], 500)
    assert [e["kind"] for e in new] == ["IncidentOpened", "Diagnosed"]  # no feature vector
    assert new[0]["message"] == "incident 4 opened: link_loss@link:aa~bb"
    assert new[1]["message"] == "incident 4: root cause link_lossy at link:aa~bb (82%)"
    api_check.check(document("test"), "/api/v1/events", new)


def test_topology_nodes_carry_the_directory_entry_when_held(provider):
    from x0node.state import directory

    node = provider.node
    me = node.identity.node_id.hex()
    plain = provider.topology()
    assert "version" not in plain["nodes"][0]  # no state service: the existing keys only

    class State:
        gossip = object()

        def directory_by_id(self):
            return {me: {"node_id": me, "name": "roof-1", "roles": ["node"], "version": "0.1.0", "health": "ok",
                         "health_reason": None, "neighbours_up": 3, "uptime_s": 42, "age_s": 1.0,
                         "expires_in_s": directory.TTL_S - 1}}

    node.ctx = type("Ctx", (), {"extras": {"state": State()}})()
    topo = provider.topology()
    (mine,) = [n for n in topo["nodes"] if n["node_id"] == me]
    assert {k: mine[k] for k in ("name", "roles", "version", "health", "neighbours_up")} == \
        {"name": "roof-1", "roles": ["node"], "version": "0.1.0", "health": "ok", "neighbours_up": 3}
    assert set(plain["nodes"][0]) <= set(mine) and "age_s" not in mine
    api_check.check(document("test"), "/api/v1/topology", topo)
