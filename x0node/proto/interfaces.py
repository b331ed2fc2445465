"""Our mesh interfaces and what each one sends: signed HELLOs and slot-scheduled keepalives.

Rules:
- At most MAX_INTERFACES interfaces; adding one more is local misuse (ValueError).
- Every interface that is up sends a signed HELLO when it comes up, every full-hello interval
  (+-25 %), and early (at most every TRIGGERED_HELLO_MIN_INTERVAL_S) when a neighbour needs it.
- Keepalives go out in the interface's beacon slot (slots.py), one entry per neighbour on the link
  (at most MAX_HELLO_NEIGHBOURS), each echoing that neighbour's last timestamp and carrying a MAC under
  our pairwise key with it.
- Each interface numbers its HELLOs and keepalives with one 32-bit control sequence counter (`ka_seq`,
  from 1 in every session epoch): the HELLO carries it whole, a keepalive its low 16 bits, and the
  keepalive MAC covers the whole (neighbour.py). When a counter reaches REKEY_SEQ, `rekey_wanted` asks
  for a new epoch before anything more is sent under the old keys. All interfaces share one beacon grid and a keepalive due within one slot
  length goes out with the one that is due, so a node wakes once per keepalive interval to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from x0node.proto import messages as m
from x0node.proto.basis import Basis, Part
from x0node.proto.neighbour import ms
from x0node.proto.protocol import (
    MAX_HELLO_NEIGHBOURS,
    MAX_INTERFACES,
    REKEY_SEQ,
    TRIGGERED_HELLO_MIN_INTERVAL_S,
)
from x0node.proto.slots import SlotScheduler
from x0node.proto.timers import jittered

if TYPE_CHECKING:
    from x0node.proto.hello import HelloSessions

NeighbourKey = tuple[str, bytes]  # (our interface, neighbour node id)
MAX_LINK_HEADER_BYTES = 64
"""Largest link-layer header an adapter may declare for an interface (local misuse beyond)."""


@dataclass
class Interface:
    name: str
    up: bool
    slots: SlotScheduler
    next_keepalive_s: float
    next_full_hello_s: float
    last_hello_sent_s: float = -1e9
    hello_wanted: bool = False
    ka_seq: int = 0  # the control sequence counter (32 bits) of this interface's HELLOs and keepalives
    last_keepalive_s: float = -1e9  # when the last keepalive went out (probe trains follow it)
    link_header_bytes: int = 0  # the link layer's header per frame (14 on Ethernet), from the adapter


class Interfaces(Part):
    def __init__(
        self,
        basis: Basis,
        slot_origin_s: float,
        sessions: HelloSessions,
    ) -> None:
        super().__init__(basis)
        self._slot_origin_s = slot_origin_s
        self._sessions = sessions  # its neighbour table and our session epoch
        self.table: dict[str, Interface] = {}
        self.rekey_wanted = False
        self._ka_coalesce_s = self.config.hello_interval_s / self.config.slots_per_frame

    def get(self, ifname: str) -> Interface | None:
        return self.table.get(ifname)

    def add(self, ifname: str, now: float, up: bool, link_header_bytes: int = 0) -> None:
        if ifname in self.table:
            return
        if not 0 <= link_header_bytes <= MAX_LINK_HEADER_BYTES:
            raise ValueError(f"link_header_bytes must be within [0, {MAX_LINK_HEADER_BYTES}]")
        if len(self.table) >= MAX_INTERFACES:
            raise ValueError(f"at most {MAX_INTERFACES} interfaces")
        cfg = self.config
        slots = SlotScheduler(
            self.me,
            cfg.hello_interval_s,
            now,
            self.rng,
            cfg.slots_per_frame,
            cfg.slot_jitter_fraction,
            origin_s=self._slot_origin_s,
        )
        first_keepalive_s = slots.next_send(now)
        full = now + jittered(cfg.full_hello_interval_s, self.rng)
        iface = Interface(ifname, up, slots, first_keepalive_s, full, link_header_bytes=link_header_bytes)
        iface.hello_wanted = up
        self.table[ifname] = iface
        self._arm(iface)

    def remove(self, ifname: str) -> None:
        self.table.pop(ifname, None)

    def set_up(self, ifname: str, now: float) -> bool:
        """Carrier back: hello at once, keepalives from the next slot. False if nothing changed."""
        iface = self.table.get(ifname)
        if iface is None or iface.up:
            return False
        iface.up = True
        iface.hello_wanted = True
        iface.next_keepalive_s = iface.slots.next_send(now)
        self._arm(iface)
        return True

    def set_down(self, ifname: str) -> bool:
        iface = self.table.get(ifname)
        if iface is None or not iface.up:
            return False
        iface.up = False
        return True

    def _deadlines(self, iface: Interface) -> list[float]:
        if not iface.up:
            return []
        out = [iface.next_keepalive_s, iface.next_full_hello_s]
        if iface.hello_wanted:
            out.append(iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S)
        return out

    def _arm(self, iface: Interface) -> None:
        for t in self._deadlines(iface):
            self.wake.arm(t)

    def want_hello(self, ifname: str) -> None:
        iface = self.table.get(ifname)
        if iface is not None and iface.up:
            iface.hello_wanted = True
            self.wake.arm(iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S)

    # ------------------------------------------------------------------------------ send
    def _hello_neighbours(self, ifname: str, now: float) -> tuple[m.HelloNeighbour, ...]:
        out = []
        for key, n in self._sessions.nbrs.items():
            if key[0] == ifname:
                ts, delay = n.echo(now)
                out.append(m.HelloNeighbour(n.node_id, ts, delay))
        return tuple(out[:MAX_HELLO_NEIGHBOURS])

    def _next_seq(self, iface: Interface) -> int:
        iface.ka_seq += 1
        if iface.ka_seq >= REKEY_SEQ:
            self.rekey_wanted = True
        return iface.ka_seq

    def restart_counters(self) -> None:
        """A new session epoch: every interface counts from 1 again, and says so in a HELLO at once."""
        for iface in self.table.values():
            iface.ka_seq = 0
            self.want_hello(iface.name)
        self.rekey_wanted = False

    def _send_full_hello(self, iface: Interface, now: float) -> None:
        cfg = self.config
        hello = m.Hello(
            self.credential,
            self._next_seq(iface),
            self._sessions.epoch,
            ms(now),
            max(1, min(65535, round(cfg.hello_interval_s * 1000))),
            self._hello_neighbours(iface.name, now),
        )
        self.out.send(iface.name, None, m.sign(hello, self.identity))
        iface.last_hello_sent_s = now
        iface.hello_wanted = False
        iface.next_full_hello_s = now + jittered(cfg.full_hello_interval_s, self.rng)

    def _send_keepalive(self, iface: Interface, now: float) -> None:
        seq = self._next_seq(iface)
        ts = ms(now)
        nbrs = [n for k, n in self._sessions.nbrs.items() if k[0] == iface.name][:MAX_HELLO_NEIGHBOURS]
        head = m.keepalive_header(seq & 0xFFFF, ts, len(nbrs))
        entries = []
        for n in nbrs:
            ets, delay = n.echo(now)
            entries.append(
                m.KeepaliveEntry(ets, delay, m.keepalive_mac(n.key, self.me, n.node_id, seq, head, ets, delay))
            )
        self.out.send(iface.name, None, m.Keepalive(seq & 0xFFFF, ts, tuple(entries)).encode())
        iface.last_keepalive_s = now

    def send_due(self, now: float) -> None:
        """Send the HELLOs and keepalives due at `now` on every interface that is up."""
        for iface in self.table.values():
            if not iface.up:
                continue
            if now >= iface.next_full_hello_s or (
                iface.hello_wanted and now >= iface.last_hello_sent_s + TRIGGERED_HELLO_MIN_INTERVAL_S
            ):
                self._send_full_hello(iface, now)
            if now + self._ka_coalesce_s >= iface.next_keepalive_s:
                self._send_keepalive(iface, now)
                iface.next_keepalive_s = iface.slots.next_send(now)

    def deadlines(self) -> list[float]:
        return [t for iface in self.table.values() for t in self._deadlines(iface)]
