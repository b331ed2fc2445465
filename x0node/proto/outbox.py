"""What the core hands to the daemon, and what it counts: datagrams to send, events, drops, counters.

Rules:
- Outputs are pulled by the daemon (`Router.datagrams_to_send()`, `Router.next_event()`); both queues
  are bounded (MAX_PENDING_DATAGRAMS, MAX_PENDING_EVENTS). A datagram beyond the bound is not queued,
  an event beyond it evicts the oldest event; both are counted.
- Every refused input is counted in `drops` under one of DROP_REASONS, the labels `/metrics` shows,
  and nothing else: a refusal is never an event, so unauthenticated junk cannot push real events out
  of the bounded queues (here, and the daemon's event history after it).
- Counters only grow. Datagrams and bytes sent are also counted per interface (`sent_by_if`, one entry
  per interface the core sends on: bounded by MAX_INTERFACES) so traffic that is not ours can be told
  from the kernel's interface counters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from x0node.proto.events import Event
from x0node.proto.protocol import MAX_PENDING_DATAGRAMS, MAX_PENDING_EVENTS

DROP_REASONS = (
    "decode",
    "no_interface",
    "left",
    "self",
    "bad_signature",
    "uncertified",
    "expired",
    "revoked",
    "replay",
    "stale",
    "unknown_sender",
    "unknown_origin",
    "bad_mac",
    "bad_timestamp",
    "not_for_us",
    "limit_neighbours",
    "limit_lsdb",
    "limit_queue",
    "limit_probe_rate",
    "prefix_not_owned",
)
COUNTERS = (
    "rx",
    "tx",
    "tx_bytes",
    "lsa_installed",
    "lsa_duplicate",
    "lsa_originated",
    "lsa_retransmitted",
    "spf_runs",
    "neighbour_down",  # adjacencies lost (an UP neighbour gone, for any reason)
    "events_dropped",
    "datagrams_dropped",
    "revocations_applied",
    "revocations_refused",
    "probe_trains_sent",
    "probe_bytes_sent",
    "probe_trains_lost",
    "probe_trains_incomplete",
    "probe_reports_sent",
    "probe_reports_received",
    "commands_applied",  # routing commands (commands.py) that changed something
    "commands_renewed",  # issued again unchanged: only the expiry moved
    "commands_lifted",
    "commands_expired",
    "commands_refused",
    "steer_no_alternate",  # destinations a steer could not move (no loop-free alternate), per SPF run
)


@dataclass(frozen=True)
class Outgoing:
    ifname: str
    dst: str | None  # None = MESH_MCAST_GROUP on that interface
    payload: bytes


class Outbox:
    def __init__(self) -> None:
        self.datagrams: deque[Outgoing] = deque()
        self.events: deque[Event] = deque()
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.sent_by_if: dict[str, list[int]] = {}  # ifname -> [datagrams, payload bytes] (our interfaces)

    def send(self, ifname: str, dst: str | None, payload: bytes) -> None:
        if len(self.datagrams) >= MAX_PENDING_DATAGRAMS:
            self.counters["datagrams_dropped"] += 1
            return
        self.datagrams.append(Outgoing(ifname, dst, payload))
        self.counters["tx"] += 1
        self.counters["tx_bytes"] += len(payload)
        sent = self.sent_by_if.setdefault(ifname, [0, 0])
        sent[0] += 1
        sent[1] += len(payload)

    def wire_bytes_sent(self, ifname: str, overhead_bytes: int) -> int:
        """Bytes our datagrams on `ifname` took on the link so far, `overhead_bytes` of headers each."""
        count, payload = self.sent_by_if.get(ifname, (0, 0))
        return payload + count * overhead_bytes

    def emit(self, ev: Event) -> None:
        if len(self.events) >= MAX_PENDING_EVENTS:
            self.events.popleft()
            self.counters["events_dropped"] += 1
        self.events.append(ev)

    def drop(self, reason: str, ifname: str, src: str, now: float) -> None:
        """Count a refused input (interface, source and time are the caller's, for its own logs)."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def take_datagrams(self) -> list[Outgoing]:
        out = list(self.datagrams)
        self.datagrams.clear()
        return out

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None
