"""The OTA collector: the halted-rollout gauge the fleet alert X0RolloutHalted reads, phases, refusals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from x0node.fleet import checks
from x0node.ota.metrics import OtaCollector


class FakeOta:
    def __init__(self, rollout=None):
        self.rollout = rollout

    def status(self):
        return {"phase": "verified", "refusals": {"bad_signature": 2, "downgrade": 1},
                "counters": {"chunks_ok": 7, "chunks_bad": 1, "uplink_bytes": 0}, "server": {"bytes_sent": 4096}}

    def records(self):
        return {} if self.rollout is None else {"rollout": self.rollout}


def _scrape(svc):
    reg = CollectorRegistry()
    reg.register(OtaCollector(svc))
    text = generate_latest(reg).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def test_halted_rollout_is_one_and_a_running_one_zero():
    _, fam = _scrape(FakeOta({"id": "ab12cd34", "v": "2026.12-1", "state": "halted"}))
    assert [(s.labels, s.value) for s in fam["x0node_ota_rollout_halted"].samples] == [({"rollout": "2026.12-1"}, 1.0)]
    _, fam = _scrape(FakeOta({"id": "ab12cd34", "v": "2026.12-1", "state": "running"}))
    assert [s.value for s in fam["x0node_ota_rollout_halted"].samples] == [0.0]


def test_no_rollout_no_sample_but_the_family_is_declared():
    text, fam = _scrape(FakeOta())
    assert fam["x0node_ota_rollout_halted"].samples == []
    assert "# TYPE x0node_ota_rollout_halted gauge" in text


def test_phase_refusals_and_chunks():
    _, fam = _scrape(FakeOta())
    assert {s.labels["phase"]: s.value for s in fam["x0node_ota_phase"].samples}["verified"] == 1.0
    assert sum(s.value for s in fam["x0node_ota_phase"].samples) == 1.0
    assert {s.labels["reason"]: s.value for s in fam["x0node_ota_refusals"].samples if s.name.endswith("_total")} == \
        {"bad_signature": 2, "downgrade": 1}
    assert {s.labels["result"]: s.value for s in fam["x0node_ota_chunks"].samples if s.name.endswith("_total")} == \
        {"ok": 7, "bad": 1}


def test_the_fleet_checks_need_no_pending_name_for_the_rollout_alert():
    assert "x0node_ota_rollout_halted" not in checks.PENDING
    text, _ = _scrape(FakeOta())
    exported = {f.name for f in text_string_to_metric_families(text)}
    assert checks.unknown_metrics(["max by (instance, rollout) (x0node_ota_rollout_halted) == 1"], exported, {}) == {}
