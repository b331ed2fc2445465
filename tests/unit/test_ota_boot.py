"""Boot decisions and the health gate."""

from __future__ import annotations

from x0node.ota import boot

P = boot.Pending("B", "m" * 64, "2.0", 20, neighbours_before=3, routes_before=5)


def test_on_boot():
    assert boot.on_boot(None, "A").action == "confirm"
    assert boot.on_boot(P, "B").action == "gate"
    assert boot.on_boot(P, "A").action == "fell_back"


def test_no_install_while_pending():
    assert boot.may_install(None) is None
    assert "health gate" in boot.may_install(P)


def healthy(t=0.0):
    return boot.Health(neighbours=2, routes=5, routes_changed_at=t, ui_ok=True)


def test_gate_passes_after_stable_period():
    g = boot.Gate(P, 0.0, deadline_s=100.0, stable_s=10.0)
    assert g.step(healthy(), 8.0) is None
    assert g.step(healthy(), 12.0) is None
    assert g.step(healthy(), 22.0) == "good"
    assert g.step(boot.Health(0, 0, 0.0, False), 23.0) == "good"  # final


def test_gate_resets_on_a_break_and_fails_at_deadline():
    g = boot.Gate(P, 0.0, deadline_s=50.0, stable_s=10.0)
    g.step(healthy(), 6.0)
    g.step(boot.Health(1, 5, 0.0, True), 12.0)  # one neighbour, two needed
    assert g.step(healthy(), 14.0) is None
    assert g.step(boot.Health(2, 5, 0.0, False), 49.0) is None
    assert g.step(boot.Health(2, 5, 0.0, False), 50.0) == "bad"
    assert "UI" in g.reason


def test_neighbours_needed():
    assert boot.neighbours_needed(0) == 0
    assert boot.neighbours_needed(1) == 1
    assert boot.neighbours_needed(4) == 2


def test_migrations_order_and_once():
    avail = ["010-b", "002-a", "bad name", "100-c", "002-a.sh"]
    assert boot.migrations_to_run(avail, {"010-b"}) == ["002-a", "002-a.sh", "100-c"]
