"""Dashboards: generated files match the code, read back unchanged through Grafana's dashboard model,
and every expression (dashboards and rules) parses with Prometheus' parser. The metric names are checked
against a live scrape in tests/integration/test_fleet_scrape.py."""

from __future__ import annotations

import copy
import shutil

import pytest

from x0node.fleet import checks, dashboards


def test_committed_dashboards_are_the_generated_ones() -> None:
    files = {p.name: p.read_text() for p in checks.DASHBOARD_DIR.glob("*.json")}
    generated = {name: dashboards.render(d) for name, d in dashboards.dashboards().items()}
    assert files == generated, "run `x0node fleet dashboards` and commit the result"
    assert len(generated) == 5


def test_dashboards_read_back_unchanged_through_grafanas_model() -> None:
    for name, d in dashboards.dashboards().items():
        assert checks.dashboard_schema_problems(d) == [], name
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)) and d["panels"], name


def test_schema_check_finds_unknown_and_missing_fields() -> None:
    d = copy.deepcopy(dashboards.dashboards()["x0-errors.json"])
    d["panels"][0]["titel"] = "typo"
    del d["style"]
    problems = checks.dashboard_schema_problems(d)
    assert "/panels[0]/titel: not in Grafana's dashboard model" in problems
    assert "/style: required by Grafana's dashboard model, missing" in problems


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: make deps (mk/fleet.mk)")
def test_every_expression_parses_with_promtool() -> None:
    exprs = checks.rule_expressions() + [e for d in dashboards.dashboards().values() for e in dashboards.expressions(d)]
    assert len(exprs) > 30
    assert checks.promtool_problems(exprs) == []
    bad = checks.promtool_problems(["sum(rate(x0node_routes[5m])"])
    assert bad and "parse error" in " ".join(bad)


def test_metric_names_are_extracted_from_the_syntax_tree() -> None:
    assert checks.selected_metrics('sum by (le) (rate(a_bucket{job="x"}[5m])) / on() group_left b') == {"a_bucket", "b"}
    assert checks.selected_metrics('{__name__="c"} or vector(0)') == {"c"}
    assert checks.selected_metrics('{job="x0node"}') == {None}
    exported = {"a_bucket"}
    assert checks.unknown_metrics(["rate(a_bucket[1m])", "up == 0", "x0node:node_health_status:min"], exported) == {}
    assert checks.unknown_metrics(['rate(zz_total[1m]) + {job="x"}'], exported) == {'rate(zz_total[1m]) + {job="x"}': ["None", "zz_total"]}
