"""The device firewall's ruleset (rootfs/usr/lib/x0tta6bl4/firewall.py): roles from the daemon config and
the board, the UI and routing ports where they belong, the closed ruleset on a config x0node would refuse.
The rules' effect on real traffic is tested in tests/integration/test_image_firewall.py."""

from __future__ import annotations

import json

import pytest

from image.board import load_board
from image.overlay import firewall_policy
from tests.unit.rootfs_modules import load

fw = load("firewall")
POLICY = fw.Policy(mesh_udp_port=6717, web_default_port=8080, lan_interfaces=("eth0",))
CONFIG = {"node": {"interfaces": ["eth1", "x0t0"]}, "web": {"port": 443, "http_port": 80},
          "transport": {"tunnels": [{"role": "server", "listen": "[::]:8443", "tap": "x0t0"},
                                    {"role": "client", "server": "192.0.2.1:9999", "tap": "x0t1"}]}}


def _chain(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"  chain {name} {{")
    return [ln.strip() for ln in lines[start + 1: lines.index("  }", start)]]


def test_roles_and_ports():
    exp = fw.exposure(CONFIG, POLICY)
    assert exp.mesh_interfaces == ("eth1", "x0t0") and exp.web_ports == (80, 443) and exp.tunnel_ports == (8443,)
    text = fw.ruleset(POLICY, exp)
    inp = _chain(text, "input")
    assert inp[0].startswith("type filter hook input") and "policy drop" in inp[0]
    # mesh names are matched before the LAN globs, so a listed interface is mesh even if it matches one
    assert inp.index('iifname "eth1" goto mesh') < inp.index('iifname "eth0" goto lan')
    assert inp[-1] == 'counter name "drop_other" drop' and "tcp dport 8443 accept" in inp
    assert _chain(text, "mesh") == ["udp dport 6717 accept", 'counter name "drop_mesh" drop']
    assert _chain(text, "lan") == ["udp sport 67 udp dport 68 accept", "tcp dport { 80, 443 } accept",
                                   'counter name "drop_lan" drop']
    on_mesh = fw.ruleset(fw.Policy(6717, 8080, ("eth0",), web_on_mesh=True), exp)
    assert "tcp dport { 80, 443 } accept" in _chain(on_mesh, "mesh")
    # the table is replaced in one transaction
    assert text.splitlines()[1:4] == ["table inet x0tta6bl4", "delete table inet x0tta6bl4", "table inet x0tta6bl4 {"]


def test_mesh_services_open_their_port_on_mesh_ports_only():
    pol = fw.Policy(6717, 8080, ("eth0",), mesh_services=(("state", 6718),))
    assert fw.exposure({"node": {"interfaces": ["eth1"]}}, pol).mesh_service_ports == ()
    exp = fw.exposure({"node": {"interfaces": ["eth1"]}, "state": {}}, pol)
    text = fw.ruleset(pol, exp)
    assert _chain(text, "mesh")[0] == "udp dport { 6717, 6718 } accept" and "6718" not in text.split("chain lan")[1]
    assert fw.exposure({"state": {"port": 7000}}, pol).mesh_service_ports == (7000,)
    assert fw.exposure({"state": {"enabled": False}}, pol).mesh_service_ports == ()


def test_ui_ports_follow_the_web_section():
    assert fw.exposure({"node": {"interfaces": []}}, POLICY).web_ports == ()
    assert fw.exposure({"web": {}}, POLICY).web_ports == (8080,)
    assert fw.exposure({"web": {"enabled": False, "port": 1}}, POLICY).web_ports == ()
    assert fw.exposure({"web": {"port": 8443, "http_port": 0}}, POLICY).web_ports == (8443,)


@pytest.mark.parametrize("config", [
    '[node]\ninterfaces = ["eth1; drop"]\n[web]\n',
    '[node]\ninterfaces = "eth1"\n[web]\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\nport = "443"\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\nport = 70000\n',
    '[node]\ninterfaces = ["eth1"]\n[web]\n[[transport.tunnels]]\nrole = "server"\nlisten = "nope"\n',
    '[node\ninterfaces = ["eth1"]\n',
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
        f'[node]\ndata_dir = "{tmp_path}"\ninterfaces = ["eth1"]\n[web]\nport = 443\n')
    (tmp_path / "config.local.toml").write_text('[web]\nport = 8443\n[node]\ninterfaces = ["eth2"]\n')
    text, warnings = fw.build(POLICY, tmp_path / "config.toml")
    assert not warnings
    assert 'iifname "eth2" goto mesh' in text and 'iifname "eth1"' not in text and "tcp dport 8443 accept" in text


def test_device_policy_may_open_the_ui_on_mesh_ports(tmp_path):
    board = tmp_path / "firewall.json"
    board.write_text(json.dumps(firewall_policy(load_board("x86_64"))))
    assert fw.load_policy(board, tmp_path / "absent.toml").web_on_mesh is False
    dev = tmp_path / "fw.toml"
    dev.write_text("web_on_mesh = true\n")
    pol = fw.load_policy(board, dev)
    assert pol.web_on_mesh and pol.lan_interfaces == ("eth0",) and pol.mesh_udp_port == 6717
    assert dict(pol.mesh_services)["state"] == 6718 and "overlay" in dict(pol.mesh_services)
    # the overlay's own interface carries authenticated mesh traffic: a mesh role when it is enabled
    exp = fw.exposure({"node": {"interfaces": ["eth1"]}, "overlay": {}}, pol)
    assert exp.mesh_interfaces == ("eth1", pol.overlay_ifname)
    assert fw.exposure({"node": {"interfaces": ["eth1"]}, "overlay": {"enabled": False}}, pol).mesh_interfaces == ("eth1",)
    dev.write_text("open_everything = true\n")
    with pytest.raises(fw.PolicyError, match="unknown key"):
        fw.load_policy(board, dev)


def test_lan_globs_must_be_nft_prefixes():
    with pytest.raises(fw.PolicyError, match="lan_interfaces"):
        fw.ruleset(fw.Policy(6717, 443, ("e?h0",)), fw.Exposure())


def test_ota_tcp_port_on_mesh_ports_only():
    pol = fw.Policy(6717, 8080, ("eth0",), mesh_tcp_services=(("ota", 6724),))
    cfg = {"node": {"interfaces": ["eth1"]}, "ota": {}}
    text = fw.ruleset(pol, fw.exposure(cfg, pol))
    mesh = text.split("chain mesh {")[1].split("}")[0]
    lan = text.split("chain lan {")[1].split("}")[0]
    assert "tcp dport 6724 accept" in mesh and "6724" not in lan
    off = fw.ruleset(pol, fw.exposure({"node": {"interfaces": ["eth1"]}, "ota": {"enabled": False}}, pol))
    assert "6724" not in off
