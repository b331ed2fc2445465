"""OTA step and API spans go through the healing service's tracing pipeline to a real OTLP/HTTP
receiver on loopback; without a pipeline nothing is recorded."""

from __future__ import annotations

import time
import types

import pytest

from tests.otlp_receiver import Receiver
from x0node.daemon import spans
from x0node.healing.tracing import CycleTracer

NODE = "ab" * 8


def _wait(recv: Receiver, n: int, timeout_s: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with recv.lock:
            if len(recv.spans) >= n:
                return list(recv.spans)
        time.sleep(0.1)
    return list(recv.spans)


def test_ota_steps_and_cycles_share_one_pipeline_to_otlp() -> None:
    recv = Receiver("127.0.0.1", 0).start()
    tracer = CycleTracer(NODE, 64, recv.url)
    extras = {"healing": types.SimpleNamespace(tracer=tracer)}
    try:
        with spans.step(extras, "rollout", rollout="2026.12-1"):
            with spans.step(extras, "download", bytes=1234):
                pass
            with pytest.raises(RuntimeError), spans.step(extras, "health_gate", detail="x" * 1000):
                raise RuntimeError("gate failed")
        tracer.cycle(time.time_ns(), [("monitor", 0.001), ("analyze", 0.002)], {"symptoms": 0})
        tracer.provider.force_flush()
        got = _wait(recv, 6)
    finally:
        tracer.shutdown()
        recv.shutdown()
    by_name = {s["name"]: s for s in got}
    assert {"ota.rollout", "ota.download", "ota.health_gate", "mape_k_cycle", "monitor", "analyze"} <= set(by_name)
    root = by_name["ota.rollout"]
    assert by_name["ota.download"]["parent_span_id"] == root["span_id"] == by_name["ota.health_gate"]["parent_span_id"]
    assert by_name["ota.download"]["trace_id"] == root["trace_id"]
    assert by_name["ota.download"]["attributes"] == {"bytes": 1234}
    assert len(by_name["ota.health_gate"]["attributes"]["detail"]) == spans.MAX_ATTRIBUTE_CHARS
    assert by_name["ota.health_gate"]["status"] == 2  # STATUS_CODE_ERROR
    assert root["resource"]["service.name"] == "x0node" and root["resource"]["service.instance.id"] == NODE
    assert {s["name"] for s in tracer.ring.recent()} >= {"ota.rollout", "mape_k_cycle"}  # on-device ring too


def test_no_pipeline_records_nothing() -> None:
    assert spans.tracer({}, "x") is None
    with spans.step({}, "download") as s:
        assert s is None
    with spans.step({"healing": types.SimpleNamespace()}, "download") as s:
        assert s is None
