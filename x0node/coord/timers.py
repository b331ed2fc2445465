"""Raft timers sized from measured round-trip times to the other members.

Rules and invariants:
- Heartbeat (pysyncobj `appendEntriesPeriod`) = HEARTBEAT_RTT_FACTOR x the high RTT estimate, clamped
  to [HEARTBEAT_MIN_S, HEARTBEAT_MAX_S]. The election timeout is drawn from [min, 2 x min] with
  min = max(ELECTION_HEARTBEATS x heartbeat, ELECTION_RTT_FACTOR x RTT, ELECTION_MIN_S): a follower
  misses several heartbeats, each a few RTTs apart, before it stands for election (Raft §5.6:
  broadcast time << election timeout << MTBF). The leader steps down after LEADER_FALLBACK_TIMEOUTS
  maximum election timeouts without hearing a majority.
- The RTT estimate is the largest of the members' medians over their last RTT_SAMPLES samples (missing
  samples: RTT_UNKNOWN_S). A median, not a high percentile: the samples are taken by the daemons, so on a
  busy router they include scheduling delay, and sizing timers from the spikes made a loaded group slow
  to notice a dead leader (tens of seconds in the bench). The election timeout is capped at
  ELECTION_MAX_S for the same reason. Pure: the caller feeds samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

HEARTBEAT_RTT_FACTOR = 2.0
HEARTBEAT_MIN_S = 0.05
HEARTBEAT_MAX_S = 1.0
ELECTION_HEARTBEATS = 6
ELECTION_RTT_FACTOR = 8.0
ELECTION_MIN_S = 0.4
ELECTION_MAX_S = 3.0
LEADER_FALLBACK_TIMEOUTS = 3.0
RTT_SAMPLES = 30
RTT_UNKNOWN_S = 0.05
RETIMING_CHANGE = 0.25
"""Timers change only when the new election minimum differs by more than this fraction."""


@dataclass(frozen=True)
class RaftTimers:
    heartbeat_s: float
    election_min_s: float
    election_spread: float = 2.0

    @property
    def election_max_s(self) -> float:
        return self.election_spread * self.election_min_s

    def pysyncobj(self) -> dict[str, float]:
        return {"appendEntriesPeriod": self.heartbeat_s, "raftMinTimeout": self.election_min_s,
                "raftMaxTimeout": self.election_max_s,
                "leaderFallbackTimeout": LEADER_FALLBACK_TIMEOUTS * self.election_max_s}


LIBRARY_TIMERS = RaftTimers(0.1, 0.4, 3.5)
"""pysyncobj's own defaults (heartbeat 0.1 s, election timeout 0.4-1.4 s): the baseline bench/coord.py
compares RTT-sized timers against (`[coord] timers = "library"`)."""


def timers_for(rtt_s: float) -> RaftTimers:
    hb = min(HEARTBEAT_MAX_S, max(HEARTBEAT_MIN_S, HEARTBEAT_RTT_FACTOR * rtt_s))
    emin = min(ELECTION_MAX_S, max(ELECTION_MIN_S, ELECTION_HEARTBEATS * hb, ELECTION_RTT_FACTOR * rtt_s))
    return RaftTimers(round(hb, 4), round(emin, 4))


@dataclass
class RttTable:
    samples: dict[str, deque[float]] = field(default_factory=dict)

    def add(self, peer: str, rtt_s: float) -> None:
        self.samples.setdefault(peer, deque(maxlen=RTT_SAMPLES)).append(max(0.0, rtt_s))

    def forget(self, keep: set[str]) -> None:
        for p in [p for p in self.samples if p not in keep]:
            del self.samples[p]

    def high(self, peers: list[str]) -> float:
        out = 0.0
        for p in peers:
            s = sorted(self.samples.get(p, ()))
            out = max(out, s[len(s) // 2] if s else RTT_UNKNOWN_S)
        return out if peers else RTT_UNKNOWN_S

    def timers(self, peers: list[str]) -> RaftTimers:
        return timers_for(self.high(peers))


def worth_changing(old: RaftTimers, new: RaftTimers) -> bool:
    return abs(new.election_min_s - old.election_min_s) > RETIMING_CHANGE * old.election_min_s
