"""OpenTelemetry spans for each MAPE-K cycle and its phases (adapter).

Rules and invariants:
- One span `mape_k_cycle` per cycle with one child span per phase (monitor, analyze, verify, plan,
  execute, knowledge), timed from the engine's phase durations; attributes carry the cycle's figures
  (symptoms, open incidents, requests, mode). Sampling is 100 %: a cycle a second is cheap.
- Spans always go to an on-device ring buffer (`RingBufferExporter`, at most `capacity` spans, oldest
  dropped) that the web UI reads with `recent()`. They go to an OTLP/HTTP collector only when an
  endpoint is configured (batched, in the SDK's worker thread; export failures are the SDK's to log
  and never reach the loop).
- A private TracerProvider: nothing global is installed, so two services in one process (tests) do
  not share or replace each other's pipelines.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode, set_span_in_context

MAX_RING_SPANS = 10_000
SERVICE_NAME = "x0node"


class RingBufferExporter(SpanExporter):
    """Keeps the last `capacity` finished spans as small dicts."""

    def __init__(self, capacity: int) -> None:
        self._spans: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(1, min(capacity, MAX_RING_SPANS)))
        self._lock = threading.Lock()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = []
        for s in spans:
            ctx = s.context
            rows.append({
                "name": s.name,
                "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
                "span_id": f"{ctx.span_id:016x}" if ctx else "",
                "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
                "start_ns": s.start_time,
                "end_ns": s.end_time,
                "attributes": dict(s.attributes or {}),
                "status": s.status.status_code.name,
            })
        with self._lock:
            self._spans.extend(rows)
            self.exported += len(rows)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)[-max(0, limit):]


class CycleTracer:
    def __init__(self, node_id: str, capacity: int, otlp_endpoint: str = "") -> None:
        self.ring = RingBufferExporter(capacity)
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME,
                                                                 "service.instance.id": node_id}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.ring))
        self.otlp = bool(otlp_endpoint)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, timeout=5)))
        self._tracer = self.provider.get_tracer("x0node.healing")

    def cycle(self, start_ns: int, phases: Sequence[tuple[str, float]], attributes: dict[str, Any],
              error: str | None = None) -> None:
        """Record one cycle that started at `start_ns` (epoch ns) with its phases' durations (s)."""
        total = sum(d for _, d in phases)
        root = self._tracer.start_span("mape_k_cycle", attributes=attributes, start_time=start_ns)
        ctx = set_span_in_context(root)
        t = start_ns
        for name, dur in phases:
            child = self._tracer.start_span(name, context=ctx, start_time=t)
            t += int(max(0.0, dur) * 1e9)
            child.end(end_time=t)
        if error is not None:
            root.set_status(Status(StatusCode.ERROR, error))
        root.end(end_time=start_ns + int(max(0.0, total) * 1e9))

    def shutdown(self) -> None:
        self.provider.shutdown()
