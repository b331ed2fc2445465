"""Observe mode: a new detector only records its alarms until they have earned trust on this node.

What is judged is this node's *alarms* (what the router would act on, alarm.py), each against ground
truth that never comes from a detector: an operator's verdict on the alarm ("real fault" / "false
alarm", the Incidents page), a fault an operator confirmed on this node (a healing incident answered
"right": the alarms raised during it were right, and none raised means the fault was missed), or
the fault lab's schedule (source "schedule"; given only by the offline evaluation,
x0lab.anomaly.observe_replay, which replays recorded alarms through this class). An alarm
nobody judged is never counted: the rules firing or not is no evidence either way.

Phases (seed 6.2): OBSERVE -> VALIDATE -> CONFIDENCE -> ACTIVE.
- OBSERVE: evaluations are recorded, never acted on; lasts at least `min_observe_s` and
  `min_predictions` evaluations.
- VALIDATE: until `min_outcomes` alarms have a verdict.
- CONFIDENCE: precision = confirmed / judged over the last `window` judged alarms; recall = detected /
  known over the last `window` known faults. ACTIVE is entered when precision >= `min_precision` with
  at least `min_positive_outcomes` confirmed alarms in the window and, once at least `min_faults` faults
  are known, recall >= `min_recall`.
- ACTIVE: alarms are acted on (`acting` is true). Below `demote_precision`, or (with `min_faults`
  known) below `demote_recall`, the mode goes back to CONFIDENCE (hysteresis).
- A manual override ("active" or "observe") pins `acting` regardless of phase until cleared; the phase
  machine keeps running underneath.
Matching: an alarm belongs to a fault when it was raised in [start, end] of the fault (an alarm
already up when the fault began did not detect it); a fault is detected when one of this node's alarms
was raised in that window. Verdict precedence: an operator's verdict on the alarm itself is final
(never overwritten by a confirmed incident or the schedule); otherwise the latest verdict wins.
Invariants: alarms, the judged window and the fault window are bounded (MAX_ALARMS, `window`); unknown
alarm ids and malformed faults are refused and counted; the whole state round-trips through
`to_dict`/`from_dict` (persisted by the service, temp + fsync + rename). A state persisted before
alarms were judged this way (outcomes from the rules) keeps its observation time and counts but none
of its outcomes, and goes back to VALIDATE if it had passed it. Sans-I/O: wall-clock `now` is passed.
"""

from __future__ import annotations

import collections
import enum
import math
from dataclasses import dataclass
from typing import Any

MAX_ALARMS = 1024
"""Alarms kept (judged or not); the oldest go first. Operator feedback on an older one is refused."""
MAX_NOTE = 64
STATE_VERSION = 2
SOURCES = ("operator", "incident", "schedule")


class Phase(enum.Enum):
    OBSERVE = "observe"
    VALIDATE = "validate"
    CONFIDENCE = "confidence"
    ACTIVE = "active"


@dataclass(frozen=True)
class ObserveConfig:
    min_observe_s: float = 14 * 24 * 3600.0  # two weeks (seed: 2-4 weeks)
    min_predictions: int = 1000
    min_outcomes: int = 40  # judged alarms
    window: int = 500
    min_positive_outcomes: int = 20  # confirmed alarms in the window
    min_precision: float = 0.95
    demote_precision: float = 0.90
    min_faults: int = 10  # known faults before recall gates anything
    min_recall: float = 0.5
    demote_recall: float = 0.4


@dataclass(frozen=True)
class PhaseChanged:
    old: str
    new: str
    precision: float | None
    recall: float | None
    at_s: float
    reason: str


@dataclass
class Alarm:
    id: int
    raised: float  # wall-clock s
    cleared: float | None = None
    fault: bool | None = None  # the verdict: None = not judged
    source: str | None = None  # who judged: operator | incident | schedule


class ObserveMode:
    def __init__(self, config: ObserveConfig, now: float) -> None:
        self.config = config
        self.phase = Phase.OBSERVE
        self.started_s = now
        self.predictions = 0  # evaluations recorded
        self.unknown_outcomes = 0  # verdicts for alarms not (or no longer) held
        self.bad_faults = 0  # faults refused (non-finite or end before start)
        self.override: str | None = None
        self._alarms: collections.OrderedDict[int, Alarm] = collections.OrderedDict()
        self._current: int | None = None  # id of the alarm up now
        self._judged: collections.deque[tuple[int, bool]] = collections.deque(maxlen=config.window)
        self._faults: collections.deque[tuple[float, float, bool]] = collections.deque(maxlen=config.window)
        self._next_id = 1
        self._events: collections.deque[PhaseChanged] = collections.deque(maxlen=64)

    # ---- inputs
    def record_evaluation(self, alarm_up: bool, now: float) -> int | None:
        """One evaluation of this node with its alarm state; returns the id of the alarm up (a new id
        when it was raised now), None when no alarm is up."""
        self.predictions += 1
        if alarm_up and self._current is None:
            aid = self._next_id
            self._next_id += 1
            self._alarms[aid] = Alarm(aid, now)
            while len(self._alarms) > MAX_ALARMS:
                self._alarms.popitem(last=False)
            self._current = aid
        elif not alarm_up and self._current is not None:
            a = self._alarms.get(self._current)
            if a is not None:
                a.cleared = now
            self._current = None
        self._advance(now)
        return self._current

    def judge(self, alarm_id: int, fault: bool, source: str, now: float) -> bool:
        """A verdict on one alarm (`fault` true: it was a real fault). False for an unknown id, or when
        the operator already judged it and this verdict comes from elsewhere."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        a = self._alarms.get(alarm_id) if isinstance(alarm_id, int) and not isinstance(alarm_id, bool) else None
        if a is None:
            self.unknown_outcomes += 1
            return False
        if a.source == "operator" and source != "operator":
            return False
        a.fault, a.source = bool(fault), source
        self._rebuild_judged()
        self._advance(now)
        return True

    def fault(self, start: float, end: float, source: str, now: float) -> bool | None:
        """A fault known to have acted on this node in [start, end] (wall-clock s; confirmed by an
        operator or from the lab's schedule): the alarms raised in it are judged real faults, and the
        fault counts as detected when there was one. Returns detected, or None when refused."""
        if source not in SOURCES or source == "operator":
            raise ValueError("a fault comes from a confirmed incident or the schedule")
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            self.bad_faults += 1
            return None
        detected = False
        changed = False
        for a in self._alarms.values():
            if start <= a.raised <= end:
                detected = True
                if a.source != "operator" and (a.fault is not True or a.source != source):
                    a.fault, a.source = True, source
                    changed = True
        self._faults.append((start, end, detected))
        if changed:
            self._rebuild_judged()
        self._advance(now)
        return detected

    def set_override(self, mode: str | None, now: float) -> None:
        if mode not in (None, "active", "observe"):
            raise ValueError("override must be 'active', 'observe' or None")
        old = self.override
        self.override = mode
        if old != mode:
            self._events.append(PhaseChanged(self.phase.value, self.phase.value, *self.estimate(), now,
                                             f"override {old} -> {mode}"))

    def tick(self, now: float) -> None:
        self._advance(now)

    # ---- outputs
    @property
    def acting(self) -> bool:
        if self.override is not None:
            return self.override == "active"
        return self.phase is Phase.ACTIVE

    def estimate(self) -> tuple[float | None, float | None]:
        """(precision over the judged alarms, recall over the known faults); None when undefined."""
        confirmed = sum(1 for _, f in self._judged if f)
        precision = confirmed / len(self._judged) if self._judged else None
        recall = sum(1 for *_, d in self._faults if d) / len(self._faults) if self._faults else None
        return precision, recall

    def alarms(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest alarms first: id, raised, cleared, verdict (None = not judged) and its source."""
        out = []
        for a in reversed(self._alarms.values()):
            if len(out) >= limit:
                break
            out.append({"id": a.id, "raised": a.raised, "cleared": a.cleared, "fault": a.fault, "source": a.source})
        return out

    def alarm(self, alarm_id: int) -> Alarm | None:
        return self._alarms.get(alarm_id)

    def known_faults(self) -> list[tuple[float, float]]:
        """(start, end) wall-clock s of the faults known to have acted on this node (the last `window`)."""
        return [(start, end) for start, end, _ in self._faults]

    def next_event(self) -> PhaseChanged | None:
        return self._events.popleft() if self._events else None

    def _rebuild_judged(self) -> None:
        self._judged.clear()
        self._judged.extend((a.id, bool(a.fault)) for a in self._alarms.values() if a.fault is not None)

    def _advance(self, now: float) -> None:
        c = self.config
        for _ in range(4):  # at most one step per phase per call
            old = self.phase
            precision, recall = self.estimate()
            confirmed = sum(1 for _, f in self._judged if f)
            recall_known = len(self._faults) >= c.min_faults
            reason = ""
            if self.phase is Phase.OBSERVE:
                if now - self.started_s >= c.min_observe_s and self.predictions >= c.min_predictions:
                    self.phase, reason = Phase.VALIDATE, "observation period complete"
            elif self.phase is Phase.VALIDATE:
                if len(self._judged) >= c.min_outcomes:
                    self.phase, reason = Phase.CONFIDENCE, "enough judged alarms"
            elif self.phase is Phase.CONFIDENCE:
                if (
                    precision is not None
                    and confirmed >= c.min_positive_outcomes
                    and precision >= c.min_precision
                    and (not recall_known or (recall is not None and recall >= c.min_recall))
                ):
                    self.phase, reason = Phase.ACTIVE, "precision (and recall) within bounds"
            elif self.phase is Phase.ACTIVE:
                if (precision is not None and precision < c.demote_precision) or (
                    recall_known and recall is not None and recall < c.demote_recall
                ):
                    self.phase, reason = Phase.CONFIDENCE, "precision or recall degraded"
            if self.phase is old:
                return
            self._events.append(PhaseChanged(old.value, self.phase.value, precision, recall, now, reason))

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "phase": self.phase.value,
            "started_s": self.started_s,
            "predictions": self.predictions,
            "override": self.override,
            "alarms": [[a.id, a.raised, a.cleared, a.fault, a.source] for a in self._alarms.values()],
            "current": self._current,
            "faults": [list(f) for f in self._faults],
            "next_id": self._next_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: ObserveConfig, now: float) -> ObserveMode:
        """Restore a persisted state; anything malformed gives a fresh OBSERVE state."""
        m = cls(config, now)
        try:
            phase = Phase(d["phase"])
            override = d.get("override")
            if override not in (None, "active", "observe"):
                raise ValueError("bad override")
            started, predictions = float(d["started_s"]), int(d["predictions"])
            if not math.isfinite(started) or predictions < 0:
                raise ValueError("bad counts")
            alarms, faults, current = [], [], None
            if d.get("version") == STATE_VERSION:
                for aid, raised, cleared, fault, source in d.get("alarms", [])[-MAX_ALARMS:]:
                    if (not isinstance(aid, int) or isinstance(aid, bool) or fault not in (None, True, False)
                            or source not in (None, *SOURCES) or (fault is None) != (source is None)):
                        raise ValueError("bad alarm")
                    alarms.append(Alarm(aid, float(raised), None if cleared is None else float(cleared), fault, source))
                for start, end, detected in d.get("faults", [])[-config.window:]:
                    if not isinstance(detected, bool):
                        raise ValueError("bad fault")
                    faults.append((float(start), float(end), detected))
                current = d.get("current")
                if current is not None and current not in {a.id for a in alarms}:
                    current = None
            elif phase in (Phase.CONFIDENCE, Phase.ACTIVE):
                phase = Phase.VALIDATE  # its outcomes came from the rules: it has to earn them again
            m.phase, m.started_s, m.predictions, m.override = phase, started, predictions, override
            m._alarms.update((a.id, a) for a in alarms)
            m._faults.extend(faults)
            m._current = current
            m._rebuild_judged()
            m._next_id = max(int(d.get("next_id", 1)), max((a.id for a in alarms), default=0) + 1)
        except (KeyError, TypeError, ValueError):
            return cls(config, now)
        return m

    def status(self) -> dict[str, Any]:
        precision, recall = self.estimate()
        return {
            "phase": self.phase.value,
            "acting": self.acting,
            "override": self.override,
            "predictions": self.predictions,
            "alarms": len(self._alarms),
            "outcomes": len(self._judged),
            "confirmed": sum(1 for _, f in self._judged if f),
            "faults": len(self._faults),
            "missed": sum(1 for *_, d in self._faults if not d),
            "precision": None if precision is None else round(precision, 4),
            "recall": None if recall is None else round(recall, 4),
        }
