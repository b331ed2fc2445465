"""The kernel's link facts (x0node/io/linkrate.py): sysfs files laid out as the kernel does, and nl80211
station messages encoded and decoded by pyroute2 itself."""

import pathlib

import pytest
from pyroute2.netlink.nl80211 import nl80211cmd

from x0node.io import linkrate
from x0node.io.linkrate import LinkFacts, LinkRates


def _iface(root: pathlib.Path, name: str, *, speed: str | None = None, device: bool = False, wireless: bool = False,
           arphrd: int = 1, tx: str = "12345") -> None:
    d = root / name
    (d / "statistics").mkdir(parents=True)
    (d / "type").write_text(f"{arphrd}\n")
    (d / "statistics" / "tx_bytes").write_text(tx + "\n")
    if speed is not None:
        (d / "speed").write_text(speed + "\n")
    if device:
        (d / "device").mkdir()
    if wireless:
        (d / "phy80211").mkdir()


def test_speed_only_from_hardware_ethernet(tmp_path):
    _iface(tmp_path, "eth0", speed="1000", device=True)
    _iface(tmp_path, "veth0", speed="10000")  # a virtual driver's made-up speed
    _iface(tmp_path, "eth1", speed="-1", device=True)  # no carrier / unknown
    _iface(tmp_path, "eth2", speed="garbage", device=True)
    _iface(tmp_path, "wlan0", speed="0", device=True, wireless=True)
    _iface(tmp_path, "tun0", arphrd=65534, tx="-3")
    assert linkrate.ethernet_speed_bps("eth0", tmp_path) == 1e9
    for name in ("veth0", "eth1", "eth2", "wlan0", "tun0", "missing"):
        assert linkrate.ethernet_speed_bps(name, tmp_path) is None, name
    assert linkrate.link_header_bytes("eth0", tmp_path) == 14 and linkrate.link_header_bytes("tun0", tmp_path) == 0
    assert linkrate.tx_bytes("eth0", tmp_path) == 12345
    assert linkrate.tx_bytes("tun0", tmp_path) is None and linkrate.tx_bytes("missing", tmp_path) is None
    facts = LinkRates(tmp_path).read(["eth0", "veth0"])
    assert facts["eth0"].rate_for("fe80::1") == 1e9 and facts["veth0"].rate_for("fe80::1") is None
    assert facts["veth0"].tx_bytes == 12345


def _station(attrs: list) -> object:
    msg = nl80211cmd()
    msg["cmd"] = 0
    msg["attrs"] = [["NL80211_ATTR_MAC", "02:00:00:00:01:00"], ["NL80211_ATTR_STA_INFO", {"attrs": attrs}]]
    msg.encode()
    back = nl80211cmd(msg.data)
    back.decode()
    return back.get_attr("NL80211_ATTR_STA_INFO")


@pytest.mark.parametrize("attrs, bps", [
    ([["NL80211_STA_INFO_EXPECTED_THROUGHPUT", 54_000],
      ["NL80211_STA_INFO_TX_BITRATE", {"attrs": [["NL80211_RATE_INFO_BITRATE32", 1300]]}]], 54e6),
    ([["NL80211_STA_INFO_TX_BITRATE", {"attrs": [["NL80211_RATE_INFO_BITRATE32", 1300]]}]], 130e6),
    ([["NL80211_STA_INFO_TX_BITRATE", {"attrs": [["NL80211_RATE_INFO_BITRATE", 540]]}]], 54e6),
    ([["NL80211_STA_INFO_INACTIVE_TIME", 10]], None),
])
def test_wifi_station_rate_prefers_expected_throughput(attrs, bps):
    assert linkrate.station_rate_bps(_station(attrs)) == bps


def test_wifi_neighbour_is_matched_through_its_link_layer_address():
    facts = LinkFacts(stations={"02:00:00:00:01:00": 54e6}, lladdr={"fe80::1": "02:00:00:00:01:00"})
    assert facts.rate_for("FE80::1") == 54e6
    assert facts.rate_for("fe80::2") is None
