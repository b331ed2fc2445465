"""The fleet's Prometheus and Alertmanager files, checked by the real tools (promtool, amtool).

Every alert in the rules has a `promtool test rules` case that makes it fire; every severity the rules
use routes to a receiver that exists.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml

FLEET = pathlib.Path(__file__).resolve().parents[2] / "fleet"
RULES = FLEET / "prometheus" / "rules" / "x0node.rules.yml"
RULE_TESTS = FLEET / "prometheus" / "tests" / "x0node.test.yml"
AM_CONFIG = FLEET / "alertmanager" / "alertmanager.yml"

pytestmark = pytest.mark.skipif(not (shutil.which("promtool") and shutil.which("amtool")),
                                reason="promtool/amtool missing: `make deps` installs them (mk/fleet.mk)")


def run(*cmd: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_rules_parse_and_pass_their_unit_tests() -> None:
    check = run("promtool", "check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    tested = run("promtool", "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired = {case["alertname"] for t in doc["tests"] for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    names = {a["alert"] for a in alerts()}
    assert names == fired, f"alerts without a firing test: {names - fired}"


def test_rule_unit_tests_can_fail(tmp_path: pathlib.Path) -> None:
    """A broken expectation is reported as a failure (the check above is not vacuous)."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    doc["rule_files"] = [str(RULES)]
    case = doc["tests"][0]["alert_rule_test"][-1]
    case["exp_alerts"][0]["exp_labels"]["severity"] = "info"
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(doc))
    out = run("promtool", "test", "rules", str(broken))
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def test_prometheus_config_is_valid() -> None:
    out = run("promtool", "check", "config", str(FLEET / "prometheus" / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_config_and_routes() -> None:
    out = run("amtool", "check-config", str(AM_CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    receivers = {r["name"] for r in yaml.safe_load(AM_CONFIG.read_text())["receivers"]}
    want = {"critical": "fleet-page", "warning": "fleet-log"}
    for alert in alerts():
        sev = alert["labels"]["severity"]
        routed = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}",
                     f"--verify.receivers={want[sev]}", f"alertname={alert['alert']}", f"severity={sev}")
        assert routed.returncode == 0, (alert["alert"], routed.stdout, routed.stderr)
        assert routed.stdout.strip() in receivers
