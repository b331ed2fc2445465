"""Services' declarations of what they open (x0node/daemon/exposure.py): every declared key is one the
service's own validator reads, with the default the daemon applies, and a value set in the config is the
value the firewall opens — so the firewall and the daemon agree without a port written twice."""

from __future__ import annotations

import importlib

import pytest

from tests.unit.rootfs_modules import load
from x0node.daemon import exposure
from x0node.daemon.config import validate
from x0node.daemon.services import SERVICES

fw = load("firewall")
POLICY = fw.parse_policy({"mesh_udp_port": 6717, "services": exposure.policy()})


def _declared(module_name: str, path: tuple[str, ...] = ()):
    """(config path of the section, module, Exposure) for a module and its subsections."""
    module = importlib.import_module(module_name)
    exp = getattr(module, "EXPOSURE", None)
    if exp is None:
        return
    yield path, module, exp
    for key, sub in exp.subsections:
        yield from _declared(sub, (*path, key))


DECLARED = [(name, *d) for name, mod in SERVICES.items() for d in _declared(mod)]


def test_the_firewall_speaks_the_same_roles_and_forms():
    assert fw.ROLES == exposure.ROLES and fw.FORMS == exposure.FORMS


def test_services_that_listen_declare_it():
    assert {n for n, *_ in DECLARED} == {"web", "state", "transport", "overlay", "coord", "ota"}
    assert {(n, p) for n, p, *_ in DECLARED} >= {("overlay", ("nat",)), ("overlay", ("yggdrasil",))}


@pytest.mark.parametrize("name,path,module,exp", DECLARED, ids=lambda v: v if isinstance(v, str) else None)
def test_declared_defaults_are_the_validators(name, path, module, exp):
    defaults = dict(exp.defaults) | module.validate_config({})
    decl = exposure.declaration(module.__name__)
    for item, d in zip(exp.listens, decl["listen"], strict=True):
        assert d["default"] == defaults[item.key]
        if item.when:
            assert isinstance(defaults[item.when], bool) and d["when_default"] == defaults[item.when]
    assert decl["enabled"] is defaults.get("enabled", True)


def _nest(name: str, path: tuple[str, ...], section: dict) -> dict:
    doc = section
    for key in reversed(path):
        doc = {key: doc}
    return {name: doc}


@pytest.mark.parametrize("name,path,module,exp", DECLARED, ids=lambda v: v if isinstance(v, str) else None)
def test_a_port_set_in_the_config_is_the_port_the_daemon_uses_and_the_firewall_opens(name, path, module, exp):
    values = {
        "port": lambda port: port, "endpoint": lambda port: f"0.0.0.0:{port}",
        "endpoints": lambda port: [f"[::]:{port}"],
        "tables": lambda port: [{"role": "server", "listen": f"[::]:{port}", "tap": "x0t9", "password": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}],
    }
    section: dict = {}
    want = set()
    ports: dict[str, int] = {}
    for item in exp.listens:
        port = ports.setdefault(item.key, 20000 + len(ports))  # one key on both transports: one port (DNS)
        section[item.key] = values[item.form](port)
        want.add((item.role, item.proto, port))
    if name == "web" and "http_port" in section:
        section |= {"tls_cert": "/c", "tls_key": "/k"}  # a redirect listener needs TLS
    daemon = validate({"node": {"interfaces": ["eth1"]}} | _nest(name, path, section))
    got = set(fw.exposure({"node": {"interfaces": ["eth1"]}} | _nest(name, path, section), POLICY).ports)
    assert want <= got
    validated = daemon[name]
    for key in path:
        validated = validated[key]
    for item in exp.listens:  # the daemon reads the value the firewall opened
        if item.form == "tables":
            assert [t[item.field] for t in validated[item.key]] == [t[item.field] for t in section[item.key]]
        else:
            assert validated[item.key] == section[item.key], item.key
