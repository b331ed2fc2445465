from __future__ import annotations

from x0node.healing import knowledge as kn
from x0node.healing.actions import ActionKind
from x0node.healing.analyze import FaultKind
from x0node.healing.incident import IncidentOpened
from x0node.healing.knowledge import Knowledge, record_dict


def test_counts_learn_and_survive_a_reload_of_good_rows_only():
    k = Knowledge()
    k.outcome(FaultKind.LINK_LOSSY, ActionKind.PENALISE_LINK, True)
    k.outcome(FaultKind.LINK_LOSSY, ActionKind.PENALISE_LINK, False)
    assert k.stats(FaultKind.LINK_LOSSY, ActionKind.PENALISE_LINK) == (1, 2)
    assert k.stats(FaultKind.LINK_LOSSY, ActionKind.DRAIN_LINK) == (0, 0)
    k2 = Knowledge()
    good = [(f, a, ok, n) for (f, a), (ok, n) in k.all_stats().items()]
    k2.load(good + [("nope", "penalise_link", 1, 1), ("link_lossy", "drain_link", 5, 2),
                    ("link_lossy", "drain_link", "x", 1), (1, 2)])
    assert k2.stats(FaultKind.LINK_LOSSY, ActionKind.PENALISE_LINK) == (1, 2)
    assert k2.stats(FaultKind.LINK_LOSSY, ActionKind.DRAIN_LINK) == (0, 0) and k2.bad_rows == 4


def test_records_queue_is_bounded_and_feedback_is_a_record(monkeypatch):
    monkeypatch.setattr(kn, "MAX_PENDING_RECORDS", 3)
    k = Knowledge()
    for i in range(5):
        k.record(IncidentOpened(i, (), 0.0))
    fb = k.feedback(4, True, "x" * 900, 1.0)
    assert len(fb.note) == 500 and k.dropped_records == 3
    kinds = [type(r).__name__ for r in iter(k.next_record, None)]
    assert kinds == ["IncidentOpened", "IncidentOpened", "Feedback"]
    assert record_dict(fb)["type"] == "Feedback" and record_dict(fb)["right"] is True
