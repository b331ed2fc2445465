"""Checks of the fleet files against the tools and schemas that define them (used by tests and
`x0node fleet check`).

What each check proves, and what it does not:
- `dashboard_schema_problems`: the dashboard read through the Grafana foundation SDK's dashboard model
  (generated from Grafana's own schema) and written back is identical. That catches every key the
  model does not know (misspelled or invented fields are dropped on the way through) and every required
  field left out (the model adds its default). It does not check value types or ranges beyond what the
  model's constructors enforce, nor panel plugin options (we set none).
- `promtool_problems`: each expression goes through Prometheus' own parser (`promtool check rules` on
  a rules file with one recording rule per expression), so what Grafana sends Prometheus parses.
- `unknown_metrics`: the metric names an expression selects (PromQL AST via promql-parser) must each be
  exported by x0node (names taken from a live scrape), a recording rule of the fleet rules, or a series
  Prometheus makes itself (`up`, ...). A selector without a metric name is refused (it could match
  anything). PENDING lists names whose exporter is not in this build yet, with the reason.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess  # promtool with a fixed argv, never a shell # nosec B404
import tempfile
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
FLEET_DIR = REPO / "fleet"
RULES_FILE = FLEET_DIR / "prometheus" / "rules" / "x0node.rules.yml"
DASHBOARD_DIR = FLEET_DIR / "grafana" / "dashboards"
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                               "scrape_samples_post_metric_relabeling", "scrape_series_added"})
# Metric names the rules use before their exporter exists in this build: name -> why.
PENDING: dict[str, str] = {}


def dashboard_schema_problems(d: dict[str, Any]) -> list[str]:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    back = json.loads(json.dumps(Dashboard.from_json(d), cls=JSONEncoder))
    problems: list[str] = []

    def diff(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in b:
                    problems.append(f"{path}/{k}: not in Grafana's dashboard model")
                elif k not in a:
                    problems.append(f"{path}/{k}: required by Grafana's dashboard model, missing")
                else:
                    diff(a[k], b[k], f"{path}/{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                diff(x, y, f"{path}[{i}]")
        elif a != b:
            problems.append(f"{path}: {a!r} reads back as {b!r}")

    diff(d, back, "")
    return problems


def promtool_problems(exprs: list[str]) -> list[str]:
    """Parse every expression with Prometheus' parser; returns promtool's complaints (empty when all parse)."""
    import yaml

    from x0node.io.atomicfile import write_atomic

    if shutil.which("promtool") is None:
        return ["promtool is not installed (make deps installs it, mk/fleet.mk)"]
    rules = {"groups": [{"name": "expressions", "rules": [{"record": f"fleet_check:expr_{i}", "expr": e}
                                                          for i, e in enumerate(exprs)]}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "exprs.yml"
        write_atomic(path, yaml.safe_dump(rules).encode(), 0o644)
        out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True,  # fixed argv, no shell; promtool from PATH # nosec B603 B607
                             timeout=60)
    if out.returncode == 0:
        return []
    return [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip() and "Checking" not in line]


def selected_metrics(expr: str) -> set[str | None]:
    import promql_parser

    names: set[str | None] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            if name is None:
                name = next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            names.add(name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every family and sample name in a scrape (histograms give _bucket, _sum and _count)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        out.add(family.name)
        out.update(s.name for s in family.samples)
        if family.type == "counter":
            out.add(family.name + "_total")
        elif family.type == "histogram":
            out.update(family.name + x for x in ("_bucket", "_sum", "_count"))
    return out


def recording_rules(path: pathlib.Path = RULES_FILE) -> dict[str, str]:
    import yaml

    doc = yaml.safe_load(path.read_text())
    return {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def rule_expressions(path: pathlib.Path = RULES_FILE) -> list[str]:
    import yaml

    doc = yaml.safe_load(path.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def unknown_metrics(exprs: list[str], exported: set[str], rules: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Expression -> the names it selects that nobody produces (empty dict when all are known)."""
    known = set(exported) | set(PROMETHEUS_SERIES) | set(PENDING) | set(recording_rules() if rules is None else rules)
    bad: dict[str, list[str]] = {}
    for e in exprs:
        names = selected_metrics(e)
        missing = sorted(str(n) for n in names if n is None or n not in known)
        if missing:
            bad[e] = missing
    return bad
