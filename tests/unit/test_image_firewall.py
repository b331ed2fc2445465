"""The device firewall's ruleset (rootfs/usr/lib/x0tta6bl4/firewall.py): roles from the daemon config and
the board, each enabled service's ports (from its own declaration, x0node.daemon.exposure) with the right
protocol on the right role, the closed ruleset on a config x0node would refuse.
The rules' effect on real traffic is tested in tests/integration/test_image_firewall.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from image.board import load_board
from image.overlay import firewall_policy
from tests.unit.rootfs_modules import load

fw = load("firewall")
BOARD = firewall_policy(load_board("x86_64"))
POLICY = fw.parse_policy(BOARD)
MESH = {"node": {"interfaces": ["eth1"]}}
CONFIG = {"node": {"interfaces": ["eth1", "x0t0"]}, "web": {"port": 443, "http_port": 80},
          "transport": {"tunnels": [{"role": "server", "listen": "[::]:8443", "tap": "x0t0"},
                                    {"role": "client", "server": "192.0.2.1:9999", "tap": "x0t1"}]}}
DROP = {"mesh": 'counter name "drop_mesh" drop', "lan": 'counter name "drop_lan" drop',
        "uplink": 'counter name "drop_other" drop'}


def _chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"  chain {name} {{")
    return [ln.strip() for ln in lines[start + 1: lines.index("  }", start)]]


def _rules(config: dict, policy=POLICY) -> dict[str, list[str]]:
    """The accept rules of each chain (the input chain's port rules, gotos) without the fixed lines."""
    text = fw.ruleset(policy, fw.exposure(config, policy))
    inp = _chain(text, "input")
    out = {"input": [r for r in inp if r.startswith(("udp dport", "tcp dport", "iifname"))]}
    for name in ("mesh", "lan", "uplink"):
        rules = _chain(text, name)
        assert rules[-1] == DROP[name]
        out[name] = [r for r in rules[:-1] if r != "udp sport 67 udp dport 68 accept"]
    return out


def test_roles_and_ports():
    exp = fw.exposure(CONFIG, POLICY)
    assert exp.mesh_interfaces == ("eth1", "x0t0") and exp.on(("ui",), "tcp") == (80, 443)
    assert exp.on(("any",), "tcp") == (8443,)
    text = fw.ruleset(POLICY, exp)
    inp = _chain(text, "input")
    assert inp[0].startswith("type filter hook input") and "policy drop" in inp[0]
    # mesh names are matched before the LAN globs, so a listed interface is mesh even if it matches one
    assert inp.index('iifname "eth1" goto mesh') < inp.index('iifname "eth0" goto lan')
    assert inp[-1] == "goto uplink" and "tcp dport 8443 accept" in inp
    assert _chain(text, "mesh") == ["udp dport 6717 accept", DROP["mesh"]]
    assert _chain(text, "lan") == ["udp sport 67 udp dport 68 accept", "tcp dport { 80, 443 } accept", DROP["lan"]]
    assert _chain(text, "uplink") == [DROP["uplink"]]
    on_mesh = fw.ruleset(dataclasses.replace(POLICY, web_on_mesh=True), exp)
    assert "tcp dport { 80, 443 } accept" in _chain(on_mesh, "mesh")
    # the table is replaced in one transaction
    assert text.splitlines()[1:4] == ["table inet x0tta6bl4", "delete table inet x0tta6bl4", "table inet x0tta6bl4 {"]


# (extra config sections, expected rules per chain). Only chains with rules beyond the fixed ones are named;
# the mesh chain always opens the routing port (UDP 6717).
COMBINATIONS = {
    "no services": ({}, {}),
    "state": ({"state": {}}, {"mesh": ["udp dport { 6717, 6718 } accept"]}),
    "state on its own port": ({"state": {"port": 7000}}, {"mesh": ["udp dport { 6717, 7000 } accept"]}),
    "state disabled": ({"state": {"enabled": False}}, {}),
    "coord": ({"coord": {}}, {"mesh": ["udp dport { 6717, 6722 } accept", "tcp dport 6723 accept"]}),
    "coord on its own ports": ({"coord": {"port": 7100, "raft_port": 7101}},
                               {"mesh": ["udp dport { 6717, 7100 } accept", "tcp dport 7101 accept"]}),
    "coord with DNS": ({"coord": {"dns_listen": ["0.0.0.0:53", "[::]:53"]}},
                       {"mesh": ["udp dport { 6717, 6722 } accept", "tcp dport 6723 accept"],
                        "lan": ["udp dport 53 accept", "tcp dport 53 accept"]}),
    "coord with DNS but no KV": ({"coord": {"kv": False, "dns_listen": ["[::]:53"]}},
                                 {"mesh": ["udp dport { 6717, 6722 } accept", "tcp dport 6723 accept"]}),
    "coord disabled": ({"coord": {"enabled": False, "dns_listen": ["[::]:53"]}}, {}),
    "ota": ({"ota": {}}, {"mesh": ["udp dport 6717 accept", "tcp dport 6724 accept"]}),
    "ota on its own port": ({"ota": {"port": 7124}}, {"mesh": ["udp dport 6717 accept", "tcp dport 7124 accept"]}),
    "ota disabled": ({"ota": {"enabled": False}}, {}),
    "overlay": ({"overlay": {}}, {"input": ['iifname "x0ov" goto mesh'], "mesh": ["udp dport { 6717, 6721 } accept"]}),
    "overlay without encryption": ({"overlay": {"encrypt": False}}, {}),
    "overlay with NAT links": ({"overlay": {"nat": {}}},
                               {"input": ['iifname "x0ov" goto mesh'], "mesh": ["udp dport { 6717, 6721 } accept"],
                                "uplink": ["udp dport 6719 accept"]}),
    "NAT links on their own port": ({"overlay": {"encrypt": False, "nat": {"listen": "[::]:7719"}}},
                                    {"uplink": ["udp dport 7719 accept"]}),
    "NAT links disabled": ({"overlay": {"encrypt": False, "nat": {"enabled": False}}}, {}),
    "overlay with yggdrasil": ({"overlay": {"encrypt": False, "yggdrasil": {}}}, {"mesh": ["udp dport 6717 accept", "tcp dport 6720 accept"]}),
    "yggdrasil disabled": ({"overlay": {"encrypt": False, "yggdrasil": {"enabled": False, "port": 1}}}, {}),
    "overlay disabled, its parts too": ({"overlay": {"enabled": False, "nat": {}, "yggdrasil": {}}}, {}),
    "web and tunnels": ({"web": {"port": 443, "http_port": 80},
                         "transport": {"tunnels": [{"role": "server", "listen": "[::]:8443"}]}},
                        {"input": ["tcp dport 8443 accept"], "lan": ["tcp dport { 80, 443 } accept"]}),
    "everything": ({"web": {"port": 443, "http_port": 80}, "state": {}, "coord": {"dns_listen": ["[::]:53"]},
                    "overlay": {"nat": {}, "yggdrasil": {}},
                    "transport": {"tunnels": [{"role": "server", "listen": "0.0.0.0:8443"}]}},
                   {"input": ["tcp dport 8443 accept", 'iifname "x0ov" goto mesh'],
                    "mesh": ["udp dport { 6717, 6718, 6721, 6722 } accept", "tcp dport { 6720, 6723 } accept"],
                    "lan": ["udp dport 53 accept", "tcp dport { 53, 80, 443 } accept"],
                    "uplink": ["udp dport 6719 accept"]}),
}


@pytest.mark.parametrize("name", COMBINATIONS)
def test_each_service_opens_its_ports_on_its_role_only(name):
    sections, want = COMBINATIONS[name]
    rules = _rules(MESH | sections)
    expected = {"input": ['iifname "eth1" goto mesh', 'iifname "eth0" goto lan'], "mesh": ["udp dport 6717 accept"],
                "lan": [], "uplink": []}
    for chain, extra in want.items():
        if chain == "input":
            expected["input"] = [r for r in extra if not r.startswith("iifname")] + ['iifname "eth1" goto mesh'] \
                + [r for r in extra if r.startswith("iifname")] + ['iifname "eth0" goto lan']
        else:
            expected[chain] = extra
    assert rules == expected


def test_lan_and_uplink_ports_never_reach_the_mesh_and_back():
    cfg = MESH | {"coord": {"dns_listen": ["[::]:53"]}, "overlay": {"nat": {}}}
    rules = _rules(cfg)
    assert not any("53" in r or "6719" in r for r in rules["mesh"])
    assert not any("6722" in r or "6723" in r or "6719" in r for r in rules["lan"])
    assert not any("53" in r or "672" in r for r in rules["uplink"])
    # the UI follows web_on_mesh; DNS (role lan) does not
    on_mesh = _rules(cfg | {"web": {"port": 443}}, dataclasses.replace(POLICY, web_on_mesh=True))
    assert "tcp dport { 443, 6723 } accept" in on_mesh["mesh"] and "53" not in " ".join(on_mesh["mesh"])


def test_ui_ports_follow_the_web_section():
    ui = lambda cfg: fw.exposure(cfg, POLICY).on(("ui",), "tcp")  # noqa: E731
    assert ui({"node": {"interfaces": []}}) == ()
    assert ui({"web": {}}) == (8080,)
    assert ui({"web": {"enabled": False, "port": 1}}) == ()
    assert ui({"web": {"port": 8443, "http_port": 0}}) == (8443,)


@pytest.mark.parametrize("config", [
    '[node]\ninterfaces = ["eth1; drop"]\n[web]\n',
    '[node]\ninterfaces = "eth1"\n[web]\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\nport = "443"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\nport = 70000\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[[transport.tunnels]]\nrole = "server"\nlisten = "nope"\n',
    '[node\ninterfaces = ["eth1"]\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[coord]\nraft_port = "6723"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[coord]\ndns_listen = "[::]:53"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[coord]\ndns_listen = ["[::]:dns"]\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[coord]\nkv = 1\ndns_listen = ["[::]:53"]\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[coord]\nenabled = "yes"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[overlay]\nifname = "x0ov; drop"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[overlay]\nnat = 5\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[overlay.nat]\nlisten = 6719\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[overlay.yggdrasil]\nport = 1e3\n',
])
def test_a_bad_config_gives_the_closed_ruleset(tmp_path, config):
    path = tmp_path / "config.toml"
    path.write_text(config)
    text, warnings = fw.build(POLICY, path)
    assert warnings and "goto mesh" not in text and "tcp dport" not in text.split("chain lan")[1]
    assert "goto mesh" in fw.build(POLICY, _good(tmp_path))[0]


def _good(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text('[node]\ninterfaces = ["eth1"]\n[web]\n')
    return path


def test_local_config_is_merged_like_the_daemon_does(tmp_path):
    (tmp_path / "config.toml").write_text(
        f'[node]\ndata_dir = "{tmp_path}"\ninterfaces = ["eth1"]\n[web]\nport = 443\n[coord]\n')
    (tmp_path / "config.local.toml").write_text('[web]\nport = 8443\n[node]\ninterfaces = ["eth2"]\n'
                                                '[coord]\ndns_listen = ["[::]:53"]\n')
    text, warnings = fw.build(POLICY, tmp_path / "config.toml")
    assert not warnings
    assert 'iifname "eth2" goto mesh' in text and 'iifname "eth1"' not in text
    assert "tcp dport { 53, 8443 } accept" in _chain(text, "lan")


def test_device_policy_may_open_the_ui_on_mesh_ports(tmp_path):
    board = tmp_path / "firewall.json"
    board.write_text(json.dumps(BOARD))
    assert fw.load_policy(board, tmp_path / "absent.toml") == POLICY and not POLICY.web_on_mesh
    dev = tmp_path / "fw.toml"
    dev.write_text("web_on_mesh = true\n")
    pol = fw.load_policy(board, dev)
    assert pol.web_on_mesh and pol.lan_interfaces == ("eth0",) and pol.mesh_udp_port == 6717
    dev.write_text("open_everything = true\n")
    with pytest.raises(fw.PolicyError, match="unknown key"):
        fw.load_policy(board, dev)


def test_the_board_policy_names_no_port_of_its_own():
    # ports come from the services' declarations: the image bakes only their defaults next to the key
    assert set(BOARD) == {"board", "lan_interfaces", "web_on_mesh", "mesh_udp_port", "services"}
    assert set(BOARD["services"]) == {"web", "state", "transport", "overlay", "coord", "ota"}
    assert BOARD["services"]["overlay"]["sub"]["nat"]["listen"][0]["role"] == "uplink"


@pytest.mark.parametrize("bad", [
    {"listen": [{"role": "everywhere", "proto": "udp", "key": "port", "form": "port", "default": 1}]},
    {"listen": [{"role": "mesh", "proto": "sctp", "key": "port", "form": "port", "default": 1}]},
    {"listen": [{"role": "mesh", "proto": "udp", "key": "port; drop", "form": "port", "default": 1}]},
    {"listen": [{"role": "mesh", "proto": "udp", "key": "port", "form": "tables", "default": []}]},
    {"interfaces": [{"role": "lan", "key": "ifname", "default": "x"}]},
    {"listen": ["port"]},
])
def test_a_bad_declaration_in_the_board_policy_is_refused(bad):
    with pytest.raises(fw.PolicyError, match="svc"):
        fw.parse_policy({"mesh_udp_port": 6717, "services": {"svc": bad}})


def test_lan_globs_must_be_nft_prefixes():
    with pytest.raises(fw.PolicyError, match="lan_interfaces"):
        fw.ruleset(fw.Policy(6717, ("e?h0",)), fw.Exposure())
