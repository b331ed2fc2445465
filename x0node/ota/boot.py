"""After a boot: confirm the slot, judge a freshly installed one, or record a fall-back (sans-I/O).

Boot counter (GRUB, image/assemble.py; RAUC's grub backend variables ORDER, <slot>_OK, <slot>_TRY):
GRUB boots the first slot in ORDER with OK=1 and TRY below BOOT_TRIES_MAX, raising TRY before it
boots; `rauc status mark-good` sets TRY=0; `mark-bad` sets OK=0. A slot that never gets confirmed is
tried BOOT_TRIES_MAX times, then the other slot boots. More than one try, so a power cut during the
boot of a confirmed slot costs one try and never moves the device to the older slot for good; if no
slot qualifies GRUB resets the counters rather than boot nothing.

Rules and invariants:
- An install writes a pending record (slot, manifest id, version, serial, neighbours and routes seen
  before) to /data before RAUC switches the boot order. While it exists no other install starts.
- On boot (`on_boot`): no pending record: mark the booted slot good at once (resets its counter).
  Pending and booted the new slot: run the health gate. Pending but booted the other slot: the new
  slot fell back (crash, hang, power cut before the gate): record `rolled_back`, mark the booted slot
  good, clear the record.
- The health gate (`Gate`) passes when the daemon is up, enough neighbours are back, routes are
  converged and the UI answers — all of them continuously for STABLE_S — before DEADLINE_S after boot;
  else it fails: mark the new slot bad and reboot into the old one. The daemon being up is implied
  (this code runs in it); if the daemon never comes up a boot-time guard on the device does the same
  at the deadline (rootfs/usr/libexec/x0node/ota-deadline).
- Config migrations run on the first boot of a new version, before the gate: numbered scripts,
  each idempotent; the ones done are recorded on /data so each runs once (`migrations_to_run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOOT_TRIES_MAX = 3
DEADLINE_S = 600.0
"""From daemon start to a passed health gate on a freshly installed slot (TCG boots are slow)."""
STABLE_S = 15.0
"""Every check must hold this long without a break."""
MIGRATION_RE = re.compile(r"^(\d{3,6})-[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Pending:
    slot: str
    manifest_id: str
    version: str
    serial: int
    neighbours_before: int
    routes_before: int
    rollout: str = ""


@dataclass(frozen=True)
class BootDecision:
    action: str  # "confirm" | "gate" | "fell_back"
    reason: str


def on_boot(pending: Pending | None, booted_slot: str) -> BootDecision:
    if pending is None:
        return BootDecision("confirm", "no update pending: the booted slot is the confirmed one")
    if pending.slot == booted_slot:
        return BootDecision("gate", f"first boot of {pending.version} in slot {booted_slot}: health gate")
    return BootDecision("fell_back", f"slot {pending.slot} with {pending.version} did not come up; "
                        f"booted slot {booted_slot} instead")


def may_install(pending: Pending | None) -> str | None:
    """None when an install may start, else why not."""
    if pending is not None:
        return f"an update to {pending.version} is waiting for its health gate (slot {pending.slot})"
    return None


@dataclass(frozen=True)
class Health:
    neighbours: int
    routes: int
    routes_changed_at: float  # monotonic time of the last change to the route set
    ui_ok: bool


def neighbours_needed(before: int) -> int:
    """At least half of the neighbours seen before the update, at least one if there were any."""
    return 0 if before <= 0 else max(1, (before + 1) // 2)


class Gate:
    def __init__(self, pending: Pending, started: float, deadline_s: float = DEADLINE_S,
                 stable_s: float = STABLE_S) -> None:
        self.pending = pending
        self.started = started
        self.deadline = started + deadline_s
        self.stable_s = stable_s
        self.ok_since: float | None = None
        self.result: str | None = None  # "good" | "bad"
        self.reason = "waiting"

    def failing(self, h: Health, now: float) -> str | None:
        need = neighbours_needed(self.pending.neighbours_before)
        if h.neighbours < need:
            return f"{h.neighbours} neighbours up, {need} needed"
        if self.pending.routes_before > 0 and h.routes == 0:
            return "no routes"
        if now - h.routes_changed_at < self.stable_s / 2:
            return "routes still changing"
        if not h.ui_ok:
            return "web UI not answering"
        return None

    def step(self, h: Health, now: float) -> str | None:
        """'good', 'bad' or None (keep waiting). Final once decided."""
        if self.result is not None:
            return self.result
        why = self.failing(h, now)
        if why is None:
            if self.ok_since is None:
                self.ok_since = now
            if now - self.ok_since >= self.stable_s:
                self.result, self.reason = "good", "daemon up, neighbours back, routes converged, UI answering"
                return self.result
        else:
            self.ok_since = None
            self.reason = why
        if now >= self.deadline:
            self.result, self.reason = "bad", f"health gate not passed within {self.deadline - self.started:.0f} s: {self.reason}"
            return self.result
        return None


def migrations_to_run(available: list[str], done: set[str]) -> list[str]:
    """Numbered migration scripts not yet recorded as done, in numeric order; bad names are skipped."""
    good = [n for n in available if MIGRATION_RE.match(n)]
    return sorted((n for n in good if n not in done), key=lambda n: (int(n.split("-", 1)[0]), n))
