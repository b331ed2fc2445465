from __future__ import annotations

import pytest

from x0node.daemon import config as cfg
from x0node.daemon.config import ConfigError


def write(tmp_path, text):
    path = tmp_path / "x0node.toml"
    path.write_text(text)
    return path


def test_defaults_filled(tmp_path):
    conf = cfg.load(write(tmp_path, '[node]\ninterfaces = ["eth1"]\n'), data_dir=str(tmp_path / "d"))
    assert conf.node["interfaces"] == ["eth1"]
    assert conf.kernel["table"] == cfg.DEFAULTS["kernel"]["table"]
    assert conf.data_dir == tmp_path / "d"
    assert conf.node["watchdog_s"] == 6


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[node]\ninterfaces = ["eth1", "a b"]\n', "node.interfaces[1]"),
        ('[node]\ninterfaces = "eth1"\n', "node.interfaces"),
        ('[node]\nbogus = 1\n', "node.bogus"),
        ("[nosuch]\nx = 1\n", "nosuch"),
        ("[kernel]\ntable = 254\n", "kernel.table"),
        ("[kernel]\nprotocol = 42\n", "kernel.protocol"),
        ("[kernel]\nrule_priority = true\n", "kernel.rule_priority"),
        ('[node]\nprefixes = ["fe80::/64"]\n', "node.prefixes[0]"),
        ('[node]\nlog_level = "loud"\n', "node.log_level"),
        ("[node]\nwatchdog_s = 1\n", "node.watchdog_s"),
        ("[node]\nwatchdog_s = 6.5\n", "node.watchdog_s"),
        ('[node]\ninterfaces = ["lo"]\n', "node.interfaces"),
        ("[node]\nwatchdog_s = 5\n", "node.watchdog_s"),
        ("[node]\nwatchdog_s = 601\n", "node.watchdog_s"),
        ("node = 3\n", "node"),
    ],
)
def test_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        cfg.load(write(tmp_path, text))
    assert err.value.key == key
    assert key in str(err.value)


def test_syntax_error_is_config_error(tmp_path):
    with pytest.raises(ConfigError):
        cfg.load(write(tmp_path, "[node\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError):
        cfg.load(tmp_path / "absent.toml")


def test_local_overrides_persist(tmp_path):
    path = write(tmp_path, '[node]\ninterfaces = ["eth1"]\nlog_level = "info"\n')
    conf = cfg.load(path, data_dir=str(tmp_path / "d"))
    changed = conf.with_changes({"node.log_level": "debug", "kernel.route_priority": 7})
    changed.save_local()
    assert (tmp_path / "d" / cfg.LOCAL_CONFIG_NAME).stat().st_mode & 0o777 == 0o600
    again = cfg.load(path, data_dir=str(tmp_path / "d"))
    assert again.node["log_level"] == "debug"
    assert again.kernel["route_priority"] == 7
    assert "info" in path.read_text()  # the main file is untouched


def test_runtime_change_validated(tmp_path):
    conf = cfg.load(write(tmp_path, '[node]\ninterfaces = ["eth1"]\n'), data_dir=str(tmp_path))
    with pytest.raises(ConfigError) as err:
        conf.with_changes({"kernel.table": 0})
    assert err.value.key == "kernel.table"
    with pytest.raises(ConfigError):
        conf.with_changes({"node.data_dir": "/elsewhere"})
    with pytest.raises(ConfigError):
        conf.with_changes({"nodot": 1})


def test_dump_roundtrip():
    import tomllib

    doc = {"node": {"interfaces": ["a", "b"], "x": 1.5, "q": 'say "hi"\n'}, "web": {"port": 8080, "on": True}}
    assert tomllib.loads(cfg.dump_toml(doc)) == doc


def test_section_of_a_service_that_does_not_exist_is_refused(tmp_path):
    for name in ("mesh_vpn", "wireguard"):
        with pytest.raises(ConfigError) as err:
            cfg.load(write(tmp_path, f"[{name}]\nenabled = false\n"))
        assert err.value.key == name and "unknown section" in err.value.message


def test_disabled_service_is_not_validated(tmp_path):
    conf = cfg.load(write(tmp_path, "[anomaly]\nenabled = false\ninterval_s = -1\n"))
    assert conf.section("anomaly") == {"enabled": False, "interval_s": -1}


def test_interface_count_is_the_core_limit(tmp_path):
    """A config the core would refuse at start (17 interfaces, the core takes 16) is refused when it is
    validated, naming the key, not with a traceback at start."""
    import random

    from x0node.proto.identity import Identity
    from x0node.proto.protocol import MAX_INTERFACES
    from x0node.proto.router import Router
    from x0node.proto.trust import TrustStore

    names = [f"m{i}" for i in range(MAX_INTERFACES + 1)]
    with pytest.raises(ConfigError) as err:
        cfg.load(write(tmp_path, f"[node]\ninterfaces = {names!r}\n".replace("'", '"')))
    assert err.value.key == "node.interfaces" and f"at most {MAX_INTERFACES}" in err.value.message
    conf = cfg.load(write(tmp_path, f"[node]\ninterfaces = {names[:-1]!r}\n".replace("'", '"')))
    router = Router(Identity.generate(b"\x01" * 32), TrustStore(), None, random.Random(1))
    for name in conf.node["interfaces"]:
        router.add_interface(name, 0.0)  # every interface the config accepts, the core takes
    assert len(router.stats().interfaces) == MAX_INTERFACES
