"""The anomaly decision core: one evaluation step over the locally known part of the mesh (sans-I/O).

Rules and invariants:
- Inputs per step: this node's raw feature vector, peers' raw vectors with the time they were
  received (bounded by MAX_PEERS, dropped after `peer_ttl_s`), the adjacency the router knows, `now`
  (monotonic s), `wall` (wall-clock s, only for the persisted observe mode) and a seeded
  `random.Random` (neighbour sampling, Isolation Forest fits). No clock, file or socket here.
- This node's own `links_down` (collector.py) goes to the tree models with its row; peers' rows get 0.
- Every node with a known vector is scored in one batch; a node's neighbour block holds at most
  K_NEIGHBOURS of its neighbours that have vectors, sampled with the rng when there are more.
- This node's own alarm state at every evaluation goes to observe mode, which numbers each raised
  alarm; the alarm is judged only by ground truth from outside the detector (`judge`: an operator's
  verdict; `fault`: a fault confirmed on this node or from the lab's schedule; observe.py), never by
  the rules. Only when observe mode is `acting` are `AnomalyDetected` events marked actionable;
  otherwise they are recorded only.
- Rows the live layer judged normal feed the Isolation Forest's buffer; the forest is (re)fitted
  every IFOREST_REFIT_S once enough rows exist. The GNN scores of this node's evaluations with no alarm
  up feed threshold recalibration (never below the shipped threshold, see calibration.py), run every
  RECALIBRATE_INTERVAL_S and after a drift event.
- Verdicts become alarms through the bundle's alarm policy (alarm.py: raise after `raise_ticks`
  anomalous evaluations in a row, clear after `clear_ticks` normal ones, nothing raised in the guard
  window after start), one AlarmState per scored node (this node and at most MAX_PEERS peers).
- Federated fine-tuning (optional, `federation`; federated.py): this node's own row, when a tree layer
  scored it, is kept (head inputs, shipped margin, wall time; at most FED_BUFFER_ROWS) and labelled by
  the faults observe mode knows (1 inside a known fault's window, 0 further than FED_LABEL_MARGIN_S
  from every one, else unlabelled; nothing is labelled before a fault is known). Rounds follow the
  shared schedule (federated.round_at of `wall`, `federated_round_s` long): `federated_step`, called
  each tick, closes the round in progress once it has ended (this node's update and the peers' held
  for it, offered with `offer_update` under their records' sequence numbers) through the acceptance
  gate on the node's newest labelled rows, then enters the schedule's current round and trains this
  node's update for it from the older ones, once per round; each round closed is one `FederatedRound`
  event (how many updates were averaged, and which peers' besides this node's own). While a head has passed the gate, it decides
  this node's own verdict in place of the shipped tree layer's (peers' rows keep the shipped verdict).
- Events are frozen dataclasses pulled with `next_event()`; the queue is bounded (oldest dropped).
  `AnomalyDetected` is raised when a node's alarm is raised (and again when observe mode starts
  acting while it still is), `AnomalyCleared` when it clears: transitions, not one event per
  evaluation. This node's alarm state at every evaluation is what observe mode records.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from x0node.anomaly import federated as fed
from x0node.anomaly.alarm import AlarmPolicy, AlarmState
from x0node.anomaly.calibration import recalibrate_threshold
from x0node.anomaly.chain import GBT, GBT_SELF, GNN, SELF, DetectorChain, probability
from x0node.anomaly.drift import DriftCleared, DriftDetected, DriftMonitor
from x0node.anomaly.features import (
    K_NEIGHBOURS,
    N_FEATURES,
    links_down_input,
    neighbour_aggregates,
    normalise,
)
from x0node.anomaly.observe import ObserveConfig, ObserveMode, PhaseChanged
from x0node.anomaly.rules import rule_reasons

MAX_PEERS = 256
MAX_EVENTS = 256
IFOREST_REFIT_S = 6 * 3600.0
RECALIBRATE_INTERVAL_S = 24 * 3600.0
CALIBRATION_ROWS = 2000
FED_BUFFER_ROWS = 4096
"""This node's own rows kept for federated fine-tuning (about 34 h at a 30 s tick)."""
FED_LABEL_MARGIN_S = 60.0
"""Rows this close to a known fault's window, outside it, are left unlabelled (its onset and aftermath)."""


@dataclass(frozen=True)
class AnomalyDetected:
    node_id: str
    layer: str
    score: float
    probability: float | None  # GNN only (sigmoid of the logit)
    actionable: bool  # False while observe mode only records
    reasons: tuple[str, ...]  # rule names the node trips (context for operators)
    alarm_id: int | None  # observe mode's id of this node's own alarm, for a verdict (None for peers)
    at_s: float


@dataclass(frozen=True)
class AnomalyCleared:
    node_id: str
    layer: str
    score: float
    at_s: float


@dataclass(frozen=True)
class LayerChanged:
    old: str
    new: str
    reason: str
    at_s: float


@dataclass(frozen=True)
class FederatedRound:
    round: int  # the round just closed
    updates: int  # updates averaged (this node's own included)
    in_use: bool  # the averaged head passed the gate and now decides this node's verdict
    at_s: float
    peers: tuple[str, ...] = ()  # the origins whose updates were averaged with this node's (sorted)


@dataclass(frozen=True)
class ThresholdRecalibrated:
    old: float
    new: float
    rows: int
    at_s: float


class AnomalyEngine:
    def __init__(
        self,
        node_id: str,
        chain: DetectorChain,
        drift: DriftMonitor | None,
        observe: ObserveMode,
        target_fpr: float = 0.01,
        peer_ttl_s: float = 120.0,
        alarm_policy: AlarmPolicy | None = None,
        federation: fed.Federation | None = None,
        federated_round_s: float = 3600.0,
    ) -> None:
        self.node_id = node_id
        self.chain = chain
        self.drift = drift
        self.observe = observe
        self.target_fpr = target_fpr
        self.peer_ttl_s = peer_ttl_s
        self._peers: dict[str, tuple[np.ndarray, float]] = {}
        self._events: collections.deque[Any] = collections.deque(maxlen=MAX_EVENTS)
        self._normal_scores: collections.deque[float] = collections.deque(maxlen=CALIBRATION_ROWS)
        self._last_fit_s: float | None = None
        self._last_recal_s: float | None = None
        self._live = chain.live_layer
        self.evaluations = 0
        self.last_scores: dict[str, dict[str, Any]] = {}
        self._flagged: dict[str, bool] = {}  # node id -> was the last AnomalyDetected actionable
        self.alarm_policy = alarm_policy or AlarmPolicy()
        self._alarms: dict[str, AlarmState] = {}
        self.federation = federation
        self._fed_rows: collections.deque[tuple[float, np.ndarray, float]] = collections.deque(maxlen=FED_BUFFER_ROWS)
        self.federated_round_s = federated_round_s
        self._fed_own: fed.Update | None = None
        self._fed_tried = 0  # the round this node last trained (or found nothing to train) for

    # ---- inputs
    def update_peer(self, node_id: str, raw: Sequence[float], now: float) -> bool:
        """A peer's raw feature vector (e.g. carried by the state layer). Bad vectors are refused."""
        try:
            vec = np.asarray(raw, dtype=np.float64).reshape(N_FEATURES)
        except (TypeError, ValueError):
            return False
        if not isinstance(node_id, str) or not node_id or len(node_id) > 128 or node_id == self.node_id:
            return False
        if node_id not in self._peers and len(self._peers) >= MAX_PEERS:
            oldest = min(self._peers, key=lambda k: self._peers[k][1])
            del self._peers[oldest]
        self._peers[node_id] = (vec, now)
        return True

    def peer_vectors(self) -> dict[str, tuple[np.ndarray, float]]:
        """node id -> (raw vector, received at) of the peers held (those the last step could use)."""
        return dict(self._peers)

    def judge(self, alarm_id: int, fault: bool, source: str, wall: float) -> bool:
        """A verdict on one of this node's alarms (observe.ObserveMode.judge); False when unknown."""
        ok = self.observe.judge(alarm_id, fault, source, wall)
        self._drain_observe()
        return ok

    def fault(self, start: float, end: float, source: str, wall: float) -> bool | None:
        """A fault known to have acted on this node (observe.ObserveMode.fault): detected or not."""
        detected = self.observe.fault(start, end, source, wall)
        self._drain_observe()
        return detected

    def _drain_observe(self) -> None:
        for e in iter(self.observe.next_event, None):
            self._events.append(e)

    def next_event(self) -> Any | None:
        return self._events.popleft() if self._events else None

    # ---- one evaluation
    def step(
        self,
        own_raw: np.ndarray,
        adjacency: Mapping[str, Sequence[str]],
        now: float,
        wall: float,
        rng: random.Random,
        links_down: float | None = None,
    ) -> dict[str, Any]:
        """One evaluation; `links_down` is this node's own count of neighbours down now (collector), for
        the tree models (peers' rows get 0: it is not in the vectors they share)."""
        for pid in [p for p, (_, t) in self._peers.items() if now - t > self.peer_ttl_s]:
            del self._peers[pid]
        ids = [self.node_id, *sorted(self._peers)]
        pos = {nid: i for i, nid in enumerate(ids)}
        raw = np.stack([np.asarray(own_raw, dtype=np.float64), *(self._peers[p][0] for p in ids[1:])])
        x = normalise(raw)
        idx = np.full((len(ids), K_NEIGHBOURS), -1, dtype=np.int64)
        for nid, i in pos.items():
            nbs = [pos[m] for m in adjacency.get(nid, ()) if m in pos and m != nid]
            if nid != self.node_id:  # a peer is adjacent to us when we list it
                if nid in adjacency.get(self.node_id, ()) and 0 not in nbs:
                    nbs.append(0)
            if len(nbs) > K_NEIGHBOURS:
                nbs = rng.sample(nbs, K_NEIGHBOURS)
            idx[i, : len(nbs)] = nbs
        mask = (idx >= 0).astype(np.float32)
        x_nbr = x[np.where(idx >= 0, idx, 0)] * mask[..., None]
        down = np.zeros(len(ids))
        down[0] = 0.0 if links_down is None else links_down
        ev = self.chain.evaluate(x, x_nbr.astype(np.float32), mask, links_down_input(down))
        self.evaluations += 1
        anomalous = np.array(ev.anomalous, dtype=bool)
        head_used = False
        if self.federation is not None and ev.layer_of(0) in (GBT, GBT_SELF):
            margin = float(ev.scores[0]) - self.chain.thresholds[ev.layer_of(0)]
            own_in = np.concatenate([x[:1], links_down_input(down[:1])], axis=1)
            hx = fed.head_inputs(np.array([margin]), own_in, neighbour_aggregates(x_nbr[:1], mask[:1]))[0]
            self._fed_rows.append((wall, hx.astype(np.float32), margin))
            if self.federation.in_use is not None:
                anomalous[0] = bool(fed.logits(self.federation.in_use, hx[None, :])[0] >= 0.0)
                head_used = True
        if ev.layer != self._live:
            reason = self.chain.layers[self._live].reason or "a better layer became available"
            self._events.append(LayerChanged(self._live, ev.layer, reason, now))
            self._live = ev.layer
        if self.drift is not None:
            self.drift.add(x[:1])
            d = self.drift.check(now)
            if d is not None:
                self._events.append(d)
                if isinstance(d, DriftDetected):
                    self._recalibrate(now)
        alarm_up = np.zeros(len(ids), dtype=bool)
        for nid, i in pos.items():
            st = self._alarms.get(nid)
            if st is None:
                st = self._alarms[nid] = AlarmState(self.alarm_policy)
            st.update(bool(anomalous[i]), now)
            alarm_up[i] = st.raised
        for nid in [n for n in self._alarms if n not in pos]:  # peer expired: its alarm state goes too
            del self._alarms[nid]
        # own alarm -> observe mode
        own_anom = bool(alarm_up[0])
        alarm_id = self.observe.record_evaluation(own_anom, wall)
        if not own_anom and ev.layer_of(0) == GNN:
            self._normal_scores.append(float(ev.scores[0]))
        self._drain_observe()
        acting = self.observe.acting
        self.last_scores = {}
        for nid, i in pos.items():
            score = float(ev.scores[i])
            row_layer = ev.layer_of(i)
            prob = float(probability(np.array([score]))[0]) if row_layer in (GNN, SELF) else None
            self.last_scores[nid] = {"score": round(score, 4), "anomalous": bool(anomalous[i]), "layer": row_layer,
                                     "probability": None if prob is None else round(prob, 4),
                                     "alarm": bool(alarm_up[i])}
            was = self._flagged.get(nid)
            if alarm_up[i] and was != acting:  # newly raised, or now actionable
                self._flagged[nid] = acting
                self._events.append(AnomalyDetected(nid, row_layer, score, prob, acting,
                                                    tuple(rule_reasons(x[i])), alarm_id if i == 0 else None, now))
            elif not alarm_up[i] and was is not None:
                del self._flagged[nid]
                self._events.append(AnomalyCleared(nid, row_layer, score, now))
        for nid in [n for n in self._flagged if n not in pos]:  # peer expired while flagged
            del self._flagged[nid]
        if head_used:
            self.last_scores[self.node_id]["federated"] = True
        normal_rows = x[~ev.anomalous]
        if len(normal_rows):
            self.chain.add_normal(normal_rows)
        if (self._last_fit_s is None or now - self._last_fit_s >= IFOREST_REFIT_S) and self.chain.fit_iforest(rng):
            self._last_fit_s = now
        if self._last_recal_s is None:
            self._last_recal_s = now
        elif now - self._last_recal_s >= RECALIBRATE_INTERVAL_S:
            self._recalibrate(now)
        return {"layer": ev.layer, "nodes": len(ids), "own_anomalous": own_anom, "acting": acting}

    # ---- federated fine-tuning (federated.py)
    def offer_update(self, origin: str, update: fed.Update, seq: int, wall: float) -> str | None:
        """A peer's head update (from the state layer) carried under its record's signed sequence number
        `seq`, offered at wall-clock `wall`: None when held for its round, else the reason it was refused."""
        if self.federation is None:
            return "disabled"
        if not isinstance(origin, str) or not origin or len(origin) > 128 or origin == self.node_id:
            return self.federation.refuse("bad_params")
        return self.federation.offer(origin.encode(), update, seq, fed.round_at(wall, self.federated_round_s))

    def _fed_labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This node's kept rows with a label from the known faults, oldest first: (x, y, margin)."""
        faults = self.observe.known_faults()
        xs, ys, ms = [], [], []
        if faults:
            starts = np.array([f[0] for f in faults])
            ends = np.array([f[1] for f in faults])
            for wall, hx, margin in self._fed_rows:
                if ((starts <= wall) & (wall <= ends)).any():
                    y = 1
                elif (np.maximum(starts - wall, wall - ends) > FED_LABEL_MARGIN_S).all():
                    y = 0
                else:
                    continue
                xs.append(hx)
                ys.append(y)
                ms.append(margin)
        if not xs:
            return np.zeros((0, fed.WIDTH)), np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.stack(xs).astype(np.float64), np.array(ys, dtype=np.int64), np.array(ms)

    def federated_step(self, now: float, wall: float, rng: random.Random) -> fed.Update | None:
        """One step of the shared round schedule at wall-clock `wall`: when the round in progress has
        ended, close it (this node's update and the peers' held for it, through the gate on the newest
        labelled rows); when a new round has begun, enter it and train this node's update for it from
        the older labelled rows. Returns the update to publish (None: nothing new to contribute). A
        node restarted inside a round trains again and publishes a newer update for the same round."""
        f = self.federation
        if f is None or f.done:
            return None
        k = fed.round_at(wall, self.federated_round_s)
        if k == 0 or k < f.round:  # no valid time, or the clock went back: wait for the schedule
            return None
        labelled = None
        if 0 < f.round < k and f.closed_round < f.round:
            labelled = self._fed_labelled()
            x, y, m = labelled
            _, ho = fed.holdout_split(len(y))
            closed = f.round
            own = self._fed_own if self._fed_own is not None and self._fed_own.round == closed else None
            peers = tuple(o.decode(errors="replace") for o in f.peers_of(closed))
            before = f.rounds_closed
            f.close_round(own, x[ho], y[ho], m[ho])
            if f.rounds_closed > before:
                self._events.append(FederatedRound(closed, len(peers) + (own is not None), f.in_use is not None,
                                                   now, peers))
        f.begin(k)
        if f.done or self._fed_tried == k:
            return None
        self._fed_tried = k
        self._fed_own = None
        x, y, _m = labelled or self._fed_labelled()
        tr, _ = fed.holdout_split(len(y))
        if not y[tr].any():
            return None
        self._fed_own = f.local(x[tr], y[tr], np.random.default_rng(rng.getrandbits(64)))
        return self._fed_own

    def _recalibrate(self, now: float) -> None:
        self._last_recal_s = now
        old = self.chain.gnn_threshold
        new = recalibrate_threshold(np.array(self._normal_scores), self.chain.shipped_gnn_threshold, old,
                                    self.target_fpr)
        if new != old:
            self.chain.gnn_threshold = new
            self._events.append(ThresholdRecalibrated(old, new, len(self._normal_scores), now))

    def status(self) -> dict[str, Any]:
        return {
            **self.chain.status(),
            "observe": self.observe.status(),
            "drift": None if self.drift is None else self.drift.status(),
            "peers": len(self._peers),
            "evaluations": self.evaluations,
            "scores": dict(list(self.last_scores.items())[:64]),
            "federated": None if self.federation is None else {
                "round": self.federation.round, "closed_round": self.federation.closed_round,
                "rounds_closed": self.federation.rounds_closed, "in_use": self.federation.in_use is not None,
                "accepted_rounds": self.federation.accepted_rounds, "pending": len(self.federation.pending),
                "replaced": self.federation.replaced,
                "rows": len(self._fed_rows), "refused": dict(self.federation.refused)},
        }


__all__ = [
    "AnomalyCleared",
    "AnomalyDetected",
    "AnomalyEngine",
    "DriftCleared",
    "DriftDetected",
    "FederatedRound",
    "LayerChanged",
    "ObserveConfig",
    "PhaseChanged",
    "ThresholdRecalibrated",
]
