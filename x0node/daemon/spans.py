"""Spans beyond the healing loop (web API requests, OTA steps), through the daemon's one tracing pipeline.

Rules and invariants:
- One pipeline per daemon: the healing service's tracer (x0node/healing/tracing.py) owns the
  TracerProvider, its on-device ring buffer and the OTLP/HTTP exporter configured by
  `[healing].otlp_endpoint`. Other parts take tracers from that provider and never build exporters, so
  every span of a node goes to the same ring buffer and the same collector under one resource
  (service.name "x0node", service.instance.id = node id).
- Where the healing service is not running there is no pipeline and these helpers record nothing; the
  lookup is one dict read per span.
- Span names and attributes are bounded: names are fixed strings or route templates (never raw paths or
  user input), attribute values are str/int/float/bool with strings cut to MAX_ATTRIBUTE_CHARS.
- The OTA hook: `step(extras, name, **attributes)` is the span of one OTA step ("ota.<name>": download,
  verify, install, health_gate, commit, rollback ...); nested steps become child spans. An exception
  inside marks the span as an error and goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

MAX_ATTRIBUTE_CHARS = 256


def tracer(extras: Mapping[str, Any] | None, name: str) -> Any | None:
    """A tracer from the healing service's provider, or None when there is no pipeline."""
    healing = (extras or {}).get("healing")
    provider = getattr(getattr(healing, "tracer", None), "provider", None)
    return None if provider is None else provider.get_tracer(name)


def clean(attributes: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for key, value in attributes.items():
        if isinstance(value, bool | int | float):
            out[key] = value
        elif value is not None:
            out[key] = str(value)[:MAX_ATTRIBUTE_CHARS]
    return out


@contextlib.contextmanager
def span(extras: Mapping[str, Any] | None, tracer_name: str, span_name: str, kind: str = "internal",
         **attributes: Any) -> Iterator[Any | None]:
    """Record `span_name` around the block when a pipeline exists; yields the span (or None)."""
    t = tracer(extras, tracer_name)
    if t is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with t.start_as_current_span(span_name, kind=SpanKind[kind.upper()], attributes=clean(attributes),
                                 record_exception=True, set_status_on_exception=False) as s:
        try:
            yield s
        except BaseException as exc:
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def step(extras: Mapping[str, Any] | None, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """The span of one OTA step, `ota.<name>` (the OTA service calls this around each step)."""
    return span(extras, "x0node.ota", f"ota.{name}", **attributes)
