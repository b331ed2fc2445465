"""x0lab.testbed.faults (the table, parameters, stamps) and x0lab.testbed.cgroups (paths, wrapping): pure
parts, no namespaces."""

from __future__ import annotations

import subprocess
import time

import pytest

from x0lab.testbed import cgroups, faults


@pytest.mark.parametrize(("text", "bps"), [
    ("4mbit", 4_000_000), ("500kbit", 500_000), ("1gbit", 1_000_000_000), ("2.5mbit", 2_500_000),
    ("64000", 64_000), (4_000_000, 4_000_000), ("4MBIT", 4_000_000),
])
def test_rates_in_tc_notation(text, bps):
    assert faults.parse_rate(text) == bps


@pytest.mark.parametrize("text", ["fast", "4mbps", "-1mbit", "1kbit", "20gbit", "", "1e9"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError):
        faults.parse_rate(text)


def test_validate_fills_defaults_and_converts():
    assert faults.validate("cpu-hog", {}) == {"cap_pct": 20.0}
    assert faults.validate("mem-pressure", {"mb": "32"}) == {"mb": 32}
    assert faults.validate("congest", {"rate": "2mbit"}) == {"rate": 2_000_000, "burst": 0}
    assert faults.validate("congest", {"rate": "2mbit", "burst": 1514}) == {"rate": 2_000_000, "burst": 1514}
    assert faults.replaces("congest", "congest") and faults.replaces("loss", "link-silent")
    assert not faults.replaces("congest", "loss") and not faults.replaces("link-down", "link-down")
    assert faults.validate("loss", {"percent": "25"}) == {"percent": 25.0}
    assert faults.validate("hang", {}) == {}


@pytest.mark.parametrize(("kind", "params", "named"), [
    ("loss", {}, "percent"),
    ("loss", {"percent": 0}, "percent"),
    ("loss", {"percent": 101}, "percent"),
    ("partial-blackhole", {"percent": "lots"}, "percent"),
    ("flap", {"period_s": 0.05}, "period_s"),
    ("congest", {"rate": "1kbit"}, "rate"),
    ("congest", {"rate": "1mbit", "burst": 1000}, "burst"),
    ("cpu-hog", {"cap_pct": 0}, "cap_pct"),
    ("mem-pressure", {"mb": 1}, "mb"),
    ("hang", {"percent": 3}, "percent"),
    ("meteor", {}, "meteor"),
])
def test_validate_names_the_bad_parameter(kind, params, named):
    with pytest.raises(ValueError, match=named):
        faults.validate(kind, params)


def test_every_kind_has_usage_and_a_target():
    for name, fk in faults.KINDS.items():
        assert fk.target in ("link", "node")
        assert fk.usage().startswith(f"{name} A")
        assert (" B" in fk.usage()) == (fk.target == "link")
    assert faults.KINDS["partial-blackhole"].usage() == "partial-blackhole A PERCENT"
    assert faults.KINDS["cpu-hog"].usage() == "cpu-hog A [CAP_PCT]"
    assert faults.target_key("loss", 3, 1) == "1-3" and faults.target_key("hang", 3, None) == "n3"


def test_stamp_brackets_the_change():
    t0 = time.monotonic()
    time.sleep(0.01)
    s = faults.stamp(t0)
    assert s["mono"] >= t0 + 0.01 and s["uncertainty_s"] >= 0.01
    assert abs(s["wall"] - time.time()) < 1.0


def test_own_group_from_proc_cgroup_text(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    for mount in ("cpu", "memory"):
        (tmp_path / mount).mkdir()
        (tmp_path / mount / "cgroup.procs").write_text("")
    text = "4:memory:/jobs/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n"
    assert cgroups.own_group("memory", text) == tmp_path / "memory" / "jobs" / "abc"
    assert cgroups.own_group("cpu", text) == tmp_path / "cpu"
    assert cgroups.own_group("freezer", text) is None
    assert cgroups.own_group("memory", "0::/user.slice\n") is None  # cgroup v2 only


def test_wrap_moves_the_process_before_exec(tmp_path):
    groups = [tmp_path / "a", tmp_path / "b"]
    for g in groups:
        g.mkdir()
    out = subprocess.run(cgroups.wrap(groups, ["sh", "-c", "echo $$"]), capture_output=True, text=True, check=True)
    pid = out.stdout.strip()
    assert all((g / "cgroup.procs").read_text().strip() == pid for g in groups)


def test_wrap_does_not_run_the_command_when_a_group_is_missing(tmp_path):
    marker = tmp_path / "ran"
    out = subprocess.run(cgroups.wrap([tmp_path / "missing"], ["touch", str(marker)]), capture_output=True)
    assert out.returncode != 0 and not marker.exists()
