"""Kernel ESP adapter: carries out esp_plan.py's actions through NETLINK_XFRM with pyroute2, and probes
whether this kernel can do ESP at all.

pyroute2 has no xfrm message classes, so the messages of include/uapi/linux/xfrm.h are declared here as
pyroute2 `nlmsg` structures (explicit padding: the layouts of a 64-bit kernel, xfrm_usersa_info = 224
bytes, xfrm_userpolicy_info = 168) and sent on a pyroute2 `NetlinkSocket(NETLINK_XFRM)`.

Rules and invariants:
- Only our objects: every state we add carries REQID (esp_plan.py), every policy one of our priorities;
  `remove_ours()` deletes exactly those (start removes an earlier run's leftovers, stop removes ours).
- States are transport mode, ESP, IPv6, replay window on (32 packets, the most the non-ESN window
  takes, RFC 4303 section 3.4.3), with the session's selector (/128 both ways) and a hard lifetime.
- Routes: `throw` routes for a peer's /128 in the overlay table with our protocol number.
- `probe()` adds and deletes a scratch state with the AEAD (the kernel loads esp6 and the algorithm's
  modules on demand); the answer names why ESP is unusable (no xfrm netlink, no ESP, no algorithm).
- A failed call raises `XfrmError` with the kernel's errno; the caller reports it to the plan.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
from collections.abc import Iterable
from typing import Any

from pyroute2.netlink import (
    NETLINK_XFRM,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nlsocket import NetlinkSocket

from x0node.overlay import handshake as hs
from x0node.overlay.esp_plan import (
    POLICY_PRIORITY_BYPASS,
    POLICY_PRIORITY_PEER,
    REQID,
    Action,
    PolicySpec,
    RouteSpec,
    StateSpec,
)

XFRM_MSG_NEWSA, XFRM_MSG_DELSA, XFRM_MSG_GETSA = 0x10, 0x11, 0x12
XFRM_MSG_NEWPOLICY, XFRM_MSG_DELPOLICY, XFRM_MSG_GETPOLICY = 0x13, 0x14, 0x15
XFRMA_TMPL, XFRMA_ALG_AEAD = 5, 18
XFRM_MODE_TRANSPORT = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_ALLOW = 0
XFRM_INF = (1 << 64) - 1
REPLAY_WINDOW_PACKETS = 32
RTN_THROW = 9
PROBE_SRC, PROBE_DST = "2001:db8::", "2001:db8::1"  # documentation prefix (RFC 3849): never a real peer
PROBE_SPI = 0xFF

_SELECTOR = (
    ("sel_daddr", "16s"), ("sel_saddr", "16s"),
    ("sel_dport", ">H"), ("sel_dport_mask", ">H"), ("sel_sport", ">H"), ("sel_sport_mask", ">H"),
    ("sel_family", "H"), ("sel_prefixlen_d", "B"), ("sel_prefixlen_s", "B"), ("sel_proto", "B"),
    ("sel_pad", "3x"), ("sel_ifindex", "i"), ("sel_user", "I"),
)  # struct xfrm_selector, 56 bytes
_LIFETIME_CFG = tuple((f"lft_{n}", "Q") for n in (
    "soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit",
    "soft_add_expires_seconds", "hard_add_expires_seconds", "soft_use_expires_seconds",
    "hard_use_expires_seconds"))
_LIFETIME_CUR = tuple((f"cur_{n}", "Q") for n in ("bytes", "packets", "add_time", "use_time"))


_ZERO_ADDRS = {n: bytes(16) for n in ("sel_daddr", "sel_saddr", "id_daddr", "saddr", "daddr")}
"""pyroute2 packs a missing field as 0, which "16s" refuses."""


class xfrm_usersa_info(nlmsg):  # noqa: N801 - the kernel's name
    defaults = _ZERO_ADDRS
    fields = (*_SELECTOR,
              ("id_daddr", "16s"), ("id_spi", ">I"), ("id_proto", "B"), ("id_pad", "3x"),
              ("saddr", "16s"), *_LIFETIME_CFG, *_LIFETIME_CUR,
              ("stats_replay_window", "I"), ("stats_replay", "I"), ("stats_integrity_failed", "I"),
              ("seq", "I"), ("reqid", "I"), ("family", "H"), ("mode", "B"), ("replay_window", "B"),
              ("flags", "B"), ("pad", "7x"))
    nla_map = ((XFRMA_TMPL, "XFRMA_TMPL", "cdata"), (XFRMA_ALG_AEAD, "XFRMA_ALG_AEAD", "cdata"))


class xfrm_usersa_id(nlmsg):  # noqa: N801 - the kernel's name
    defaults = _ZERO_ADDRS
    fields = (("daddr", "16s"), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("pad", "x"))
    nla_map = ()


class xfrm_userpolicy_info(nlmsg):  # noqa: N801 - the kernel's name
    defaults = _ZERO_ADDRS
    fields = (*_SELECTOR, *_LIFETIME_CFG, *_LIFETIME_CUR, ("priority", "I"), ("index", "I"), ("dir", "B"),
              ("action", "B"), ("flags", "B"), ("share", "B"), ("pad", "4x"))
    nla_map = ((XFRMA_TMPL, "XFRMA_TMPL", "cdata"),)


class xfrm_userpolicy_id(nlmsg):  # noqa: N801 - the kernel's name
    defaults = _ZERO_ADDRS
    fields = (*_SELECTOR, ("index", "I"), ("dir", "B"), ("pad", "3x"))
    nla_map = ()


_TMPL = struct.Struct("=16sIB3xH2x16sIBBBxIII")  # struct xfrm_user_tmpl, 64 bytes
_AEAD = struct.Struct("=64sII")  # struct xfrm_algo_aead without the key


MSG_MAP = {XFRM_MSG_NEWSA: xfrm_usersa_info, XFRM_MSG_NEWPOLICY: xfrm_userpolicy_info}
"""How the socket decodes what the kernel sends (dump answers)."""


class XfrmError(Exception):
    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: {errno.errorcode.get(code, code)} ({code})")
        self.code = code


def _packed(addr: bytes | str) -> bytes:
    return addr if isinstance(addr, bytes) else ipaddress.IPv6Address(addr).packed


def _selector(msg: nlmsg, src: bytes, dst: bytes, plen: int = 128, proto: int = 0, sport: int = 0) -> None:
    msg.update(sel_daddr=dst, sel_saddr=src, sel_family=socket.AF_INET6, sel_prefixlen_d=plen, sel_prefixlen_s=plen,
               sel_proto=proto, sel_sport=sport, sel_sport_mask=0xFFFF if sport else 0)


def _infinite(msg: nlmsg) -> None:
    for n in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        msg[f"lft_{n}"] = XFRM_INF


def state_message(st: StateSpec) -> xfrm_usersa_info:
    msg = xfrm_usersa_info()
    _selector(msg, st.src, st.dst)
    _infinite(msg)
    msg.update(id_daddr=st.dst, id_spi=st.spi, id_proto=socket.IPPROTO_ESP, saddr=st.src,
               lft_hard_add_expires_seconds=st.hard_expires_s, reqid=REQID, family=socket.AF_INET6,
               mode=XFRM_MODE_TRANSPORT, replay_window=REPLAY_WINDOW_PACKETS)
    aead = _AEAD.pack(st.algorithm.encode(), 8 * len(st.key), hs.ESP_ICV_BITS) + st.key
    msg["attrs"] = [("XFRMA_ALG_AEAD", aead)]
    return msg


def policy_message(src: bytes, dst: bytes, priority: int, template: bool, proto: int = 0, sport: int = 0,
                   plen: int = 128) -> xfrm_userpolicy_info:
    msg = xfrm_userpolicy_info()
    _selector(msg, src, dst, plen, proto, sport)
    _infinite(msg)
    msg.update(priority=priority, dir=XFRM_POLICY_OUT, action=XFRM_POLICY_ALLOW)
    if template:
        tmpl = _TMPL.pack(dst, 0, socket.IPPROTO_ESP, socket.AF_INET6, src, REQID, XFRM_MODE_TRANSPORT, 0, 0,
                          0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        msg["attrs"] = [("XFRMA_TMPL", tmpl)]
    return msg


def _policy_id(src: bytes, dst: bytes, proto: int = 0, sport: int = 0, plen: int = 128) -> xfrm_userpolicy_id:
    msg = xfrm_userpolicy_id()
    _selector(msg, src, dst, plen, proto, sport)
    msg["dir"] = XFRM_POLICY_OUT
    return msg


class Xfrm:
    """One NETLINK_XFRM socket (and an rtnetlink one for the throw routes) in the caller's namespace.
    pyroute2's sync API runs its own event loop: use it from a plain thread, never from the daemon's."""

    def __init__(self, overlay_table: int = 0, protocol: int = 0, bypass_ports: Iterable[tuple[int, int]] = ()) -> None:
        self.loop = asyncio.new_event_loop()
        self.sock = NetlinkSocket(family=NETLINK_XFRM, use_event_loop=self.loop)
        self.sock.asyncore.marshal.msg_map.update(MSG_MAP)
        self.overlay_table = overlay_table
        self.protocol = protocol
        self.bypass_ports = tuple(bypass_ports)  # (IP protocol, source port) of our own unencrypted traffic

    def close(self) -> None:
        self.sock.close()
        self.loop.close()

    def _request(self, msg: nlmsg, msg_type: int, flags: int, what: str) -> list[Any]:
        try:
            return list(self.sock.nlm_request(msg, msg_type=msg_type, msg_flags=flags))
        except NetlinkError as exc:
            raise XfrmError(exc.code, what) from None

    # --- states ------------------------------------------------------------------------------------------

    def add_state(self, st: StateSpec) -> None:
        self._request(state_message(st), XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                      f"add state spi {st.spi:#x}")

    def del_state(self, dst: bytes, spi: int) -> None:
        msg = xfrm_usersa_id()
        msg.update(daddr=dst, spi=spi, family=socket.AF_INET6, proto=socket.IPPROTO_ESP)
        self._request(msg, XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, f"delete state spi {spi:#x}")

    def states(self) -> list[dict[str, Any]]:
        """Our states: src, dst (packed), spi, bytes, packets, replay/integrity failures."""
        out = []
        for m in self._request(xfrm_usersa_info(), XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP, "dump states"):
            if m.get("reqid") != REQID or m.get("family") != socket.AF_INET6:
                continue
            out.append({"src": m["saddr"], "dst": m["id_daddr"], "spi": m["id_spi"], "bytes": m["cur_bytes"],
                        "packets": m["cur_packets"], "replay": m["stats_replay"],
                        "integrity_failed": m["stats_integrity_failed"]})
        return out

    # --- policies ----------------------------------------------------------------------------------------

    def add_policy(self, p: PolicySpec) -> None:
        self._request(policy_message(p.src, p.dst, POLICY_PRIORITY_PEER, True), XFRM_MSG_NEWPOLICY,
                      NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, "add policy")

    def del_policy(self, src: bytes, dst: bytes, proto: int = 0, sport: int = 0, plen: int = 128) -> None:
        self._request(_policy_id(src, dst, proto, sport, plen), XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK,
                      "delete policy")

    def add_bypass(self) -> None:
        """Out policies that keep our own handshake datagrams (and exempt ports) out of ESP."""
        zero = bytes(16)
        for proto, port in self.bypass_ports:
            self._request(policy_message(zero, zero, POLICY_PRIORITY_BYPASS, False, proto, port, 0),
                          XFRM_MSG_NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, "add bypass policy")

    def policies(self) -> list[dict[str, Any]]:
        out = []
        for m in self._request(xfrm_userpolicy_info(), XFRM_MSG_GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, "dump policies"):
            if m.get("priority") in (POLICY_PRIORITY_BYPASS, POLICY_PRIORITY_PEER) and m.get("sel_family") == socket.AF_INET6:
                out.append({"src": m["sel_saddr"], "dst": m["sel_daddr"], "proto": m["sel_proto"],
                            "sport": m["sel_sport"], "plen": m["sel_prefixlen_d"], "priority": m["priority"],
                            "dir": m["dir"]})
        return out

    # --- routes --------------------------------------------------------------------------------------------

    def _route(self, op: str, dst: bytes) -> None:
        from x0node.overlay.datapath import with_ipr

        def work(ipr: Any) -> None:
            ipr.route(op, family=socket.AF_INET6, dst=socket.inet_ntop(socket.AF_INET6, dst), dst_len=128,
                      table=self.overlay_table, type=RTN_THROW, proto=self.protocol)

        try:
            with_ipr(work)
        except NetlinkError as exc:
            raise XfrmError(exc.code, f"{op} route") from None

    # --- the plan's actions ----------------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        item = action.item
        add = action.op == "add"
        if isinstance(item, StateSpec):
            self.add_state(item) if add else self.del_state(item.dst, item.spi)
        elif isinstance(item, PolicySpec):
            self.add_policy(item) if add else self.del_policy(item.src, item.dst)
        elif isinstance(item, RouteSpec):
            self._route("replace" if add else "del", item.dst)

    def remove_ours(self) -> int:
        """Delete every state with our reqid and every out policy at our priorities. Returns how many."""
        n = 0
        for p in self.policies():
            try:
                self.del_policy(p["src"], p["dst"], p["proto"], p["sport"], p["plen"])
                n += 1
            except XfrmError:
                pass
        for st in self.states():
            try:
                self.del_state(st["dst"], st["spi"])
                n += 1
            except XfrmError:
                pass
        return n


def probe(cipher: int) -> str | None:
    """None if this kernel can carry ESP with `cipher`'s AEAD, else why not."""
    try:
        x = Xfrm()
    except OSError as exc:
        return f"no xfrm netlink: {exc}"
    try:
        st = StateSpec(False, _packed(PROBE_SRC), _packed(PROBE_DST), PROBE_SPI, hs.ESP_ALGORITHMS[cipher],
                       bytes(hs.ESP_KEY_BYTES), 1)
        try:
            x.add_state(st)
        except XfrmError as exc:
            if exc.code == errno.EEXIST:  # a crashed earlier probe: the kernel has what it needs
                x.del_state(st.dst, st.spi)
                return None
            why = {errno.EPROTONOSUPPORT: "the kernel has no ESP (esp6)",
                   errno.ENOSYS: f"the kernel has no {hs.ESP_ALGORITHMS[cipher]}"}.get(exc.code, str(exc))
            return why
        x.del_state(st.dst, st.spi)
        return None
    finally:
        x.close()
