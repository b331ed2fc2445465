"""The quorum KV, sans-I/O: replicas and the coordinator of puts and gets (Dynamo-style: N=3, W=2, R=2).

Rules and invariants:
- A key's replicas are its preference list (ring.py) over the nodes the router knows, alive ones first
  (sloppy quorum with hints). The coordinator sends the signed record to all N and answers the caller
  once W distinct replicas acknowledged it (each acknowledgement is a signed datagram naming the
  request nonce, so it cannot be forged or replayed onto another request); a get asks all N and answers
  once R replied, with the newest record (record.py order) — at once when those R agree, otherwise after
  waiting up to GET_SETTLE_S more for the remaining replicas (one still waiting for its hinted copy
  answers "none" first). W + R > N, so a get overlaps every
  acknowledged put's replica set as long as the preference lists agree.
- A replica acknowledges a put only after the record is durable (the adapter persists, then sends the
  ACK). A replica keeps a record only if it is newer than what it holds (LWW); an older or equal record
  is acknowledged without change (idempotent retries).
- Read repair: every replica that answered a get with an older record (or none) is sent the winner;
  answers that arrive after the caller was answered still trigger repair until the op expires.
- Hinted handoff: a stand-in stores the record and a hint naming the intended node; while that node is
  alive the stand-in re-sends the record every HANDOFF_RETRY_S until it acknowledges, then drops the hint.
- Retransmission: unanswered requests are re-sent every `resend_s` until the op's deadline (loss up to
  30 % is absorbed this way). Everything bounded: MAX_OPS pending ops, MAX_KEYS records, MAX_HINTS hints.
- Pure: time comes in as `now`; outputs are pulled from `outbox` and `results`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from x0node.coord.record import Record
from x0node.coord.wire import Type

N_REPLICAS = 3
WRITE_QUORUM = 2
READ_QUORUM = 2
RESEND_S = 0.04
OP_TIMEOUT_S = 3.0
REPAIR_LINGER_S = 1.0
GET_SETTLE_S = 0.25
HANDOFF_RETRY_S = 1.0
MAX_OPS = 1024
MAX_KEYS = 65536
MAX_HINTS = 8192

Out = tuple[bytes, Type, dict[str, Any], tuple[bytes, ...]]


@dataclass
class Op:
    nonce: int
    kind: str  # "put" | "get"
    key: str
    record: Record | None
    targets: dict[bytes, bytes | None]  # replica -> intended node (hint) or None
    deadline: float
    next_send: float
    answered: dict[bytes, Record | None] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    linger_until: float | None = None
    settle_until: float | None = None


class Replica:
    """One node's share of the KV: the newest record per key, and hints for absent replicas."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.hints: dict[tuple[bytes, str], tuple[int, float]] = {}  # (intended, key) -> (version, next send)
        self.refused = 0

    def store(self, rec: Record, hint_for: bytes | None, now: float) -> bool:
        """Keep `rec` if newer; note a hint. True when the record changed (the adapter persists it)."""
        cur = self.records.get(rec.key)
        changed = rec.newer_than(cur)
        if changed:
            if cur is None and len(self.records) >= MAX_KEYS:
                self.refused += 1
                return False
            self.records[rec.key] = rec
        if hint_for is not None and len(self.hints) < MAX_HINTS:
            self.hints[(hint_for, rec.key)] = (max(rec.version, self.hints.get((hint_for, rec.key), (0, 0))[0]), now)
        return changed

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def handoffs(self, alive: set[bytes], now: float) -> list[tuple[bytes, Record]]:
        out = []
        for (node, key), (version, due) in list(self.hints.items()):
            rec = self.records.get(key)
            if rec is None:
                del self.hints[(node, key)]
                continue
            if node in alive and due <= now:
                self.hints[(node, key)] = (version, now + HANDOFF_RETRY_S)
                out.append((node, rec))
        return out

    def handed_off(self, node: bytes, key: str, version: int) -> None:
        hint = self.hints.get((node, key))
        if hint is not None and version >= hint[0]:
            del self.hints[(node, key)]


class Coordinator:
    def __init__(self, me: bytes, resend_s: float = RESEND_S, timeout_s: float = OP_TIMEOUT_S) -> None:
        self.me = me
        self.resend_s = resend_s
        self.timeout_s = timeout_s
        self.ops: dict[int, Op] = {}
        self.outbox: list[Out] = []
        self.results: list[tuple[int, dict[str, Any]]] = []
        self._nonces = itertools.count(1)
        self.repairs = 0

    def _start(self, kind: str, key: str, record: Record | None, prefs: list[tuple[bytes, bytes | None]],
               now: float) -> int:
        nonce = next(self._nonces)
        if len(self.ops) >= MAX_OPS:
            self.results.append((nonce, {"ok": False, "error": "too many operations in flight"}))
            return nonce
        quorum = WRITE_QUORUM if kind == "put" else READ_QUORUM
        if len(prefs) < quorum:
            self.results.append((nonce, {"ok": False, "error": f"only {len(prefs)} replicas reachable"}))
            return nonce
        op = Op(nonce, kind, key, record, dict(prefs), now + self.timeout_s, now)
        self.ops[nonce] = op
        self._send(op, now)
        return nonce

    def start_put(self, record: Record, prefs: list[tuple[bytes, bytes | None]], now: float) -> int:
        return self._start("put", record.key, record, prefs, now)

    def start_get(self, key: str, prefs: list[tuple[bytes, bytes | None]], now: float) -> int:
        return self._start("get", key, None, prefs, now)

    def _send(self, op: Op, now: float) -> None:
        for node, hint in op.targets.items():
            if node in op.answered:
                continue
            if op.kind == "put":
                hdr: dict[str, Any] = {"n": op.nonce}
                if hint is not None:
                    hdr["h"] = hint.hex()
                self.outbox.append((node, Type.KV_PUT, hdr, (op.record.encode(),)))  # type: ignore[union-attr]
            else:
                self.outbox.append((node, Type.KV_GET, {"n": op.nonce, "k": op.key}, ()))
        op.next_send = now + self.resend_s

    def on_ack(self, sender: bytes, nonce: int, now: float) -> None:
        op = self.ops.get(nonce)
        if op is None or op.kind != "put" or sender not in op.targets:
            return
        op.answered[sender] = None
        if op.result is None and len(op.answered) >= WRITE_QUORUM:
            self._finish(op, {"ok": True, "acks": len(op.answered), "version": op.record.version}, now)  # type: ignore[union-attr]

    def on_value(self, sender: bytes, nonce: int, record: Record | None, now: float) -> None:
        op = self.ops.get(nonce)
        if op is None or op.kind != "get" or sender not in op.targets or (record is not None and record.key != op.key):
            return
        op.answered[sender] = record
        if op.result is None and len(op.answered) >= READ_QUORUM:
            agree = len({None if r is None else r.order() for r in op.answered.values()}) == 1
            if agree and record is not None or len(op.answered) == len(op.targets):
                self._finish(op, {"ok": True, "record": self.winner(op), "replies": len(op.answered)}, now)
            elif op.settle_until is None:
                op.settle_until = now + GET_SETTLE_S
        if op.result is not None:
            self._repair(op)

    @staticmethod
    def winner(op: Op) -> Record | None:
        best: Record | None = None
        for rec in op.answered.values():
            if rec is not None and rec.newer_than(best):
                best = rec
        return best

    def _repair(self, op: Op) -> None:
        best = self.winner(op)
        if best is None:
            return
        for node, rec in list(op.answered.items()):
            if best.newer_than(rec):
                op.answered[node] = best
                self.repairs += 1
                self.outbox.append((node, Type.KV_PUT, {"n": 0}, (best.encode(),)))

    def _finish(self, op: Op, result: dict[str, Any], now: float) -> None:
        op.result = result
        self.results.append((op.nonce, result))
        op.linger_until = now + REPAIR_LINGER_S if op.kind == "get" else now

    def tick(self, now: float) -> None:
        for op in list(self.ops.values()):
            if op.result is not None:
                if op.linger_until is not None and now >= op.linger_until or len(op.answered) == len(op.targets):
                    del self.ops[op.nonce]
                continue
            if op.settle_until is not None and now >= op.settle_until:
                self._finish(op, {"ok": True, "record": self.winner(op), "replies": len(op.answered)}, now)
                self._repair(op)
                continue
            if now >= op.deadline:
                del self.ops[op.nonce]
                need = WRITE_QUORUM if op.kind == "put" else READ_QUORUM
                self.results.append((op.nonce, {"ok": False, "error": f"{len(op.answered)} of {need} replicas answered"}))
            elif now >= op.next_send:
                self._send(op, now)

    def next_timer(self) -> float | None:
        times = [op.linger_until if op.result is not None else
                 min(op.next_send, op.deadline, op.settle_until or op.deadline) for op in self.ops.values()]
        return min((t for t in times if t is not None), default=None)
