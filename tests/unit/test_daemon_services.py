from __future__ import annotations

import sys
import types

import pytest

from x0node.daemon import config as cfg
from x0node.daemon import services
from x0node.daemon.config import ConfigError


class Recorder:
    def __init__(self, log, name, fail=False):
        self.log, self.name, self.fail = log, name, fail

    async def start(self, ctx):
        if self.fail:
            raise RuntimeError("boom")
        self.log.append(("start", self.name, ctx))

    async def stop(self):
        self.log.append(("stop", self.name))

    def status(self):
        return {"name": self.name}


@pytest.fixture
def fake_services(monkeypatch):
    log = []

    def module(name, fail=False, validate=None):
        mod = types.ModuleType(f"fake_{name}")
        mod.create_service = lambda section: Recorder(log, name, fail)
        if validate:
            mod.validate_config = validate
        monkeypatch.setitem(sys.modules, f"fake_{name}", mod)
        return f"fake_{name}"

    def check_b(section):
        if not isinstance(section.get("port", 1), int):
            raise ConfigError("port", "expected an integer")
        return {"port": 1, **section}

    table = {"a": module("a"), "b": module("b", validate=check_b), "c": module("c", fail=True)}
    monkeypatch.setattr(services, "SERVICES", table)
    return log


def load(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return cfg.load(p, data_dir=str(tmp_path))


async def test_enabled_services_start_in_order_and_stop_in_reverse(tmp_path, fake_services):
    conf = load(tmp_path, "[a]\n[b]\nport = 5\n[c]\n")
    assert conf.section("b") == {"port": 5}
    mgr = services.ServiceManager(conf)
    assert mgr.enabled() == ["a", "b", "c"]
    await mgr.start_all("CTX")
    assert [e[:2] for e in fake_services] == [("start", "a"), ("start", "b")]
    st = mgr.status()
    assert st["a"] == {"running": True, "name": "a"}
    assert st["c"]["running"] is False and "boom" in st["c"]["error"]
    await mgr.stop_all()
    assert [e[:2] for e in fake_services[2:]] == [("stop", "b"), ("stop", "a")]


def test_disabled_and_absent_sections(tmp_path, fake_services):
    conf = load(tmp_path, "[a]\nenabled = false\n")
    assert services.ServiceManager(conf).enabled() == []


def test_service_errors_name_the_section_key(tmp_path, fake_services):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[b]\nport = "x"\n')
    assert err.value.key == "b.port"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[a]\nenabled = "yes"\n')
    assert err.value.key == "a.enabled"


async def test_restart_replaces_a_running_service_and_keeps_the_stop_order(tmp_path, fake_services):
    conf = load(tmp_path, "[a]\n[b]\n[c]\n")
    mgr = services.ServiceManager(conf)
    await mgr.start_all("CTX")
    first_a = mgr.running["a"]
    await mgr.restart("a", "CTX")
    assert mgr.running["a"] is not first_a and list(mgr.running) == ["a", "b"]
    assert [e[:2] for e in fake_services[2:]] == [("stop", "a"), ("start", "a")]
    with pytest.raises(RuntimeError, match="boom"):
        await mgr.restart("c", "CTX")
    assert "boom" in mgr.status()["c"]["error"]
    await mgr.stop_all()
    assert [e[:2] for e in fake_services[4:]] == [("stop", "b"), ("stop", "a")]
