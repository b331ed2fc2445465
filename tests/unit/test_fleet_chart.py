"""The Helm chart rendered without Helm: manifests valid against Kubernetes' strict JSON schemas, the
embedded daemon config valid for x0node, and every way a change could break them is caught."""

from __future__ import annotations

import copy

import pytest

from x0node.fleet import chart


def test_default_chart_renders_valid_manifests() -> None:
    docs = chart.render(chart.load_values())
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [("ConfigMap", "x0-gateway-config"), ("ConfigMap", "x0-node-config"), ("Service", "x0-mesh"),
                     ("StatefulSet", "x0-gateway"), ("StatefulSet", "x0-node")]
    configs = {d["metadata"]["name"]: d["data"]["config.toml"] for d in docs if d["kind"] == "ConfigMap"}
    assert 'prefixes = ["::/0"]' in configs["x0-gateway-config"] and "prefixes = []" in configs["x0-node-config"]
    assert chart.validate(docs) == []
    node = next(d for d in docs if d["metadata"]["name"] == "x0-node")
    assert node["spec"]["replicas"] == 3
    pod = node["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert chart.render(chart.load_values()) == docs  # deterministic


def test_values_overrides_reach_the_manifests() -> None:
    values = chart.load_values(sets=["mesh.replicaCount=5", "gateway.replicaCount=2", "healing.otlpEndpoint=http://jaeger:4318/v1/traces"])
    docs = chart.render(values)
    assert chart.validate(docs) == []
    reps = {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"}
    assert reps == {"x0-node": 5, "x0-gateway": 2}
    cfg = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"]
    assert 'otlp_endpoint = "http://jaeger:4318/v1/traces"' in cfg


def test_problems_are_found() -> None:
    bad_type = chart.validate(chart.render(chart.load_values(sets=["mesh.replicaCount=three"])))
    assert any("replicas" in p for p in bad_type), bad_type
    docs = chart.render(chart.load_values())
    unknown = copy.deepcopy(docs)
    unknown[-1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in p for p in chart.validate(unknown))
    wrong_port = copy.deepcopy(docs)
    wrong_port[-1]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 6696
    assert any("mesh port" in p for p in chart.validate(wrong_port))
    assert any("config.toml" in p and "node.prefixes" in p
               for p in chart.validate(chart.render(chart.load_values(sets=["gateway.prefixes=[\"10.0.0.0/8\"]"]))))
    assert any("config.toml" in p and "healing.mode" in p
               for p in chart.validate(chart.render(chart.load_values(sets=["healing.mode=reckless"]))))
    assert any("DNS-1123" in p for p in chart.validate(chart.render(chart.load_values(), {"Name": "X_0", "Namespace": "n"})))


def test_only_the_substitution_subset_is_rendered() -> None:
    scope = {"Values": {"a": {"b": 1, "l": [1, 2]}}, "Release": {}, "Chart": {}}
    assert chart.render_text("x: {{ .Values.a.b }}", scope, "t") == "x: 1"
    assert chart.render_text("x: {{ .Values.a.b | quote }}", scope, "t") == 'x: "1"'
    assert chart.render_text("x:\n  {{- toYaml .Values.a.l | nindent 2 }}\ny", scope, "t") == "x:\n  - 1\n  - 2\ny"
    for bad in ("{{ if .Values.a }}", "{{ range .Values.a.l }}", "{{ .Values.missing }}", "{{ .Values.a.l }}"):
        with pytest.raises(chart.ChartError):
            chart.render_text(bad, scope, "t")
