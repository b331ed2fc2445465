"""What the kernel knows of a mesh interface's rate and traffic: the link speed of an Ethernet NIC, the
per-station rates of a Wi-Fi interface (nl80211, through pyroute2), the transmit byte counter, and the
length of the link-layer header.

Rules:
- Read-only: files under /sys/class/net/<if>/ and nl80211 station dumps; nothing is written.
- A speed is taken only from hardware: an interface with a bus device (the `device` link in sysfs) that
  is not wireless. Virtual interfaces report made-up speeds (veth says 10 Gbit/s, tun 10 Mbit/s,
  virtio often nothing) and are left to the routing core's probe trains. An unknown or invalid value
  (-1, 0, EINVAL on a link without carrier) is None.
- Wi-Fi (the interface has `phy80211`): per station, the driver's expected throughput
  (NL80211_STA_INFO_EXPECTED_THROUGHPUT, kbit/s: the rate control's estimate of what the station gets,
  what batman-adv's B.A.T.M.A.N. V uses), else the last transmit bitrate (NL80211_STA_INFO_TX_BITRATE:
  BITRATE32, else BITRATE, in 100 kbit/s). A station is matched to a neighbour through the kernel's
  IPv6 neighbour table (the neighbour's link-local address -> its link-layer address).
- Rates are bits per second. A read that fails gives None (the core then keeps probing), never an
  exception to the caller. Reads may block briefly (a file read, a netlink dump): the daemon makes them
  from one worker thread (`LinkRates`, which owns its netlink sockets).
"""

from __future__ import annotations

import logging
import pathlib
import socket
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("x0node.io.linkrate")

SYSFS_NET = pathlib.Path("/sys/class/net")
ARPHRD_ETHER = 1
ETHERNET_HEADER_BYTES = 14
MAX_SYSFS_BYTES = 64
MAX_LINK_SPEED_MBPS = 1_000_000  # 1 Tbit/s: anything above is a driver's placeholder
AF_INET6 = socket.AF_INET6


def _read(path: pathlib.Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SYSFS_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def link_header_bytes(ifname: str, sysfs: pathlib.Path = SYSFS_NET) -> int:
    """The link layer's header per frame: 14 on Ethernet (veth, TAP, Wi-Fi in station/mesh mode), else 0."""
    return ETHERNET_HEADER_BYTES if _int(_read(sysfs / ifname / "type")) == ARPHRD_ETHER else 0


def tx_bytes(ifname: str, sysfs: pathlib.Path = SYSFS_NET) -> int | None:
    """The interface's transmit byte counter (link-layer bytes), None if unreadable."""
    v = _int(_read(sysfs / ifname / "statistics" / "tx_bytes"))
    return v if v is not None and v >= 0 else None


def is_wireless(ifname: str, sysfs: pathlib.Path = SYSFS_NET) -> bool:
    return (sysfs / ifname / "phy80211").exists() or (sysfs / ifname / "wireless").exists()


def ethernet_speed_bps(ifname: str, sysfs: pathlib.Path = SYSFS_NET) -> float | None:
    """The NIC's negotiated link speed (bits/s), or None: no hardware device, wireless, or unknown."""
    base = sysfs / ifname
    if not (base / "device").exists() or is_wireless(ifname, sysfs):
        return None
    mbps = _int(_read(base / "speed"))
    if mbps is None or not 0 < mbps <= MAX_LINK_SPEED_MBPS:
        return None
    return mbps * 1e6


def station_rate_bps(sta_info: Any) -> float | None:
    """A station's rate from its nl80211 STA_INFO attributes (pyroute2 nla): expected throughput
    first, else the transmit bitrate; None when the driver gives neither."""
    if sta_info is None:
        return None
    expected = sta_info.get_attr("NL80211_STA_INFO_EXPECTED_THROUGHPUT")
    if expected:
        return float(expected) * 1000.0  # kbit/s
    rate = sta_info.get_attr("NL80211_STA_INFO_TX_BITRATE")
    if rate is None:
        return None
    units = rate.get_attr("NL80211_RATE_INFO_BITRATE32") or rate.get_attr("NL80211_RATE_INFO_BITRATE")
    return float(units) * 100e3 if units else None


@dataclass
class LinkFacts:
    """One reading of one interface."""

    tx_bytes: int | None = None
    speed_bps: float | None = None  # Ethernet: every neighbour on the link
    stations: dict[str, float] = field(default_factory=dict)  # Wi-Fi: link-layer address -> rate
    lladdr: dict[str, str] = field(default_factory=dict)  # Wi-Fi: neighbour link-local -> link-layer address

    def rate_for(self, neighbour_addr: str) -> float | None:
        """The kernel's rate of our link to the neighbour using `neighbour_addr`, if it knows one."""
        if self.speed_bps is not None:
            return self.speed_bps
        mac = self.lladdr.get(neighbour_addr.lower())
        return None if mac is None else self.stations.get(mac)


class LinkRates:
    """Reads LinkFacts for the mesh interfaces. Call `read` from one worker thread only: it owns the
    netlink sockets it opens (only when an interface is wireless)."""

    def __init__(self, sysfs: pathlib.Path = SYSFS_NET) -> None:
        self.sysfs = sysfs
        self._iw: Any = None
        self._ipr: Any = None
        self.errors = 0

    def read(self, interfaces: list[str]) -> dict[str, LinkFacts]:
        out: dict[str, LinkFacts] = {}
        for ifname in interfaces:
            facts = LinkFacts(tx_bytes=tx_bytes(ifname, self.sysfs), speed_bps=ethernet_speed_bps(ifname, self.sysfs))
            if facts.speed_bps is None and is_wireless(ifname, self.sysfs):
                self._read_wifi(ifname, facts)
            out[ifname] = facts
        return out

    def _read_wifi(self, ifname: str, facts: LinkFacts) -> None:
        try:
            from pyroute2 import IW, IPRoute

            idx = socket.if_nametoindex(ifname)
            if self._iw is None:
                self._iw = IW()
            if self._ipr is None:
                self._ipr = IPRoute()
            for msg in self._iw.get_stations(idx):
                mac = msg.get_attr("NL80211_ATTR_MAC")
                bps = station_rate_bps(msg.get_attr("NL80211_ATTR_STA_INFO"))
                if mac and bps:
                    facts.stations[str(mac).lower()] = bps
            for nb in self._ipr.get_neighbours(family=AF_INET6, ifindex=idx):
                dst, ll = nb.get_attr("NDA_DST"), nb.get_attr("NDA_LLADDR")
                if dst and ll and str(dst).lower().startswith("fe80:"):
                    facts.lladdr[str(dst).lower()] = str(ll).lower()
        except Exception as exc:  # noqa: BLE001 - a failed read only means "not known": probes go on
            self.errors += 1
            if self.errors <= 3:
                log.warning("cannot read Wi-Fi station rates of %s: %s", ifname, exc)

    def close(self) -> None:
        for sock in (self._iw, self._ipr):
            if sock is not None:
                try:
                    sock.close()
                except Exception:  # noqa: BLE001 -- closing at shutdown: nothing left to do with an error # nosec B110
                    pass
        self._iw = self._ipr = None
