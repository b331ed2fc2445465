"""Incidents: one diagnosed fault's life from detection to recovery, and the events that record it.

Rules and invariants:
- An incident groups the symptoms one root cause explains (analyze.cover). It moves through
  OPEN -> (WAITING_LEASE) -> ACTING -> VERIFYING -> MITIGATED or CLOSED, back to OPEN on a failed
  rung (escalation), to EXHAUSTED when no rung of any confident candidate is left, to OBSERVED when
  observe mode planned an action it did not take. CLOSED is final.
- Every step is an event (frozen dataclass) with its reason; events are the knowledge base's records
  and the Incidents page's timeline. Times are the engine's monotonic seconds.
- At most one action of an incident is in flight and at most one mitigation is in force.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from x0node.healing.actions import ActionKind, ActionRequest
from x0node.healing.analyze import Candidate, Diagnosis
from x0node.healing.monitor import Element, SymptomKind
from x0node.healing.policy import Rung


class State(enum.StrEnum):
    OPEN = "open"
    WAITING_LEASE = "waiting_lease"
    ACTING = "acting"
    VERIFYING = "verifying"
    MITIGATED = "mitigated"
    OBSERVED = "observed"
    EXHAUSTED = "exhausted"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    RECOVERED = "recovered"  # a repair verified, or a mitigation held until the fault went away
    CLEARED = "cleared"  # the symptoms went away before any action was verified
    UNRESOLVED = "unresolved"  # every rung was tried or refused; the symptoms went away on their own later
    MERGED = "merged"  # re-diagnosed to the cause of an older incident, which took its symptoms


@dataclass
class Incident:
    id: int
    opened_s: float
    symptoms: set[tuple[SymptomKind, Element]]
    diagnosis: Diagnosis
    state: State = State.OPEN
    cand_index: int = 0
    rung_index: int = 0
    ladder: tuple[Rung, ...] | None = None  # frozen when the candidate is first planned
    failed: int = 0
    attempts: int = 0
    pending: ActionRequest | None = None  # in flight or being verified
    pending_since_s: float = 0.0
    deadline_s: float = 0.0
    lease_id: int | None = None
    in_force: ActionRequest | None = None  # a verified mitigation
    clear_since_s: float | None = None  # all symptoms clear since
    clean_since_s: float | None = None  # a mitigation's evidence clean since (engine._evidence_clean)
    not_before_s: float = float("-inf")
    exhausted_s: float | None = None
    recorded: set[tuple[object, ...]] = field(default_factory=set)  # decisions already recorded (no repeats)
    planned: object = None  # the plan waiting for its lease
    observe_deadline_s: float | None = None
    observe_judged: bool = False
    last_action_kind: ActionKind | None = None
    recovered_s: float | None = None  # first verified success (a repair, or a mitigation taking effect)

    @property
    def candidate(self) -> Candidate | None:
        c = self.diagnosis.candidates
        return c[self.cand_index] if self.cand_index < len(c) else None


# --- events (records) ----------------------------------------------------------------------------

@dataclass(frozen=True)
class IncidentOpened:
    incident_id: int
    symptoms: tuple[str, ...]
    at_s: float


@dataclass(frozen=True)
class Diagnosed:
    incident_id: int
    candidates: tuple[tuple[str, str, float], ...]  # (element, fault, confidence), best first
    evidence: tuple[str, ...]  # of the top candidate
    at_s: float


@dataclass(frozen=True)
class Decided:
    """One planning decision. outcome: requested | observe_only | skipped | waiting | exhausted."""

    incident_id: int
    action: str
    target: str
    outcome: str
    reason: str
    mode: str
    at_s: float


@dataclass(frozen=True)
class ActionDone:
    incident_id: int
    request_id: int
    action: str
    target: str
    undo: bool
    ok: bool
    detail: str
    at_s: float


@dataclass(frozen=True)
class Verified:
    incident_id: int
    request_id: int
    fault: str
    action: str
    target: str
    success: bool
    reason: str
    after_s: float
    at_s: float


@dataclass(frozen=True)
class IncidentClosed:
    incident_id: int
    outcome: str
    root_cause: str  # fault kind of the candidate acted on ("" if none)
    element: str
    confidence: float
    action: str  # the action that recovered it ("" if none)
    mttr_s: float  # detection (incident opened) to the first verified action, or to the symptoms clearing
    at_s: float
